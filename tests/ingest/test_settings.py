"""Ingest settings: read from the environment and secret files, brand list from JSON or a
file, and no placeholder webhook secret in production."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from socialzone_common.settings import load_settings
from socialzone_ingest.settings import IngestSettings


def test_settings_come_from_the_environment_and_secret_files(monkeypatch, tmp_path):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "meta_app_secret").write_text("from-a-secret-file")
    brands = tmp_path / "brands.json"
    brands.write_text(json.dumps([{"name": "Globex", "kind": "competitor", "handles": ["@globex"]}]))
    monkeypatch.setenv("SOCIALZONE_SECRETS_DIR", str(secrets))
    monkeypatch.setenv("SOCIALZONE_BRANDS", json.dumps([{"name": "Acme", "aliases": ["acme corp"]}]))
    monkeypatch.setenv("SOCIALZONE_BRANDS_FILE", str(brands))
    monkeypatch.setenv("SOCIALZONE_MASTODON_HASHTAGS", '["#acme", "acmesupport"]')
    monkeypatch.setenv("SOCIALZONE_INGEST_BACKLOG_LIMIT", "250")

    settings = load_settings(IngestSettings)

    assert settings.meta_app_secret.get_secret_value() == "from-a-secret-file"
    assert [(b.name, b.kind) for b in settings.brand_list()] == [("Acme", "brand"), ("Globex", "competitor")]
    assert settings.mastodon_hashtags == ["acme", "acmesupport"]
    assert settings.ingest_backlog_limit == 250
    assert "from-a-secret-file" not in repr(settings)


def test_production_refuses_a_placeholder_webhook_secret():
    with pytest.raises(ValidationError, match="meta_app_secret"):
        IngestSettings(environment="production", admin_key="a-real-operator-key", meta_app_secret="change-me")
    IngestSettings(environment="production", admin_key="a-real-operator-key", meta_app_secret="s3cr3t-from-vault")


def test_a_misspelled_brand_field_is_refused_rather_than_ignored(tmp_path):
    with pytest.raises(ValidationError, match="handle"):
        IngestSettings(brands=[{"name": "Acme", "handle": ["@acme"]}])

    brands = tmp_path / "brands.json"
    brands.write_text(json.dumps([{"name": "Globex", "kind": "competitor", "product": ["Omega"]}]))
    with pytest.raises(ValidationError, match="product"):
        IngestSettings(brands_file=brands).brand_list()


def test_a_brands_file_saved_with_a_byte_order_mark_is_read(tmp_path):
    brands = tmp_path / "brands.json"
    brands.write_bytes(b"\xef\xbb\xbf" + json.dumps([{"name": "Globex", "handles": ["@globex"]}]).encode())

    assert [(b.name, b.handles) for b in IngestSettings(brands_file=brands).brand_list()] == [("Globex", ["@globex"])]
