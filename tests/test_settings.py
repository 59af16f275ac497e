"""Settings as an operator sets them: environment variables (``SOCIALZONE_...``, ``__``
for nesting) and secret files, with production refusing to start on default secrets."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
from pydantic import ValidationError

from socialzone_common.auth import KeyRing
from socialzone_common.settings import ServiceSettings, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    """Only what a test sets: no SOCIALZONE_* from the machine, no /run/secrets, cwd in tmp."""
    for name in list(os.environ):
        if name.upper().startswith("SOCIALZONE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SOCIALZONE_SECRETS_DIR", str(tmp_path / "no-secrets-here"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def secrets_dir(monkeypatch, tmp_path):
    path = tmp_path / "secrets"
    path.mkdir()
    monkeypatch.setenv("SOCIALZONE_SECRETS_DIR", str(path))
    return path


def test_defaults_need_no_configuration(tmp_path):
    settings = load_settings()
    assert settings.environment == "development"
    assert settings.bus == "local"
    assert settings.data_dir.resolve() == tmp_path / "data"
    assert settings.admin_key is None and settings.api_keys == []


def test_nested_settings_come_from_double_underscore_variables(monkeypatch):
    monkeypatch.setenv("SOCIALZONE_BUS", "kafka")
    monkeypatch.setenv("SOCIALZONE_KAFKA__BOOTSTRAP_SERVERS", "kafka-0:9093,kafka-1:9093")
    monkeypatch.setenv("SOCIALZONE_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("SOCIALZONE_LOCAL_BUS__RETENTION_HOURS", "12")
    monkeypatch.setenv("SOCIALZONE_CONSUMER__MAX_ATTEMPTS", "3")
    settings = load_settings()
    assert settings.bus == "kafka"
    assert settings.kafka.bootstrap_servers == "kafka-0:9093,kafka-1:9093"
    assert settings.kafka.security_protocol == "SASL_SSL"
    assert settings.kafka.client_id == "socialzone"  # the rest of the group keeps its defaults
    assert settings.local_bus.retention_hours == 12.0
    assert settings.consumer.max_attempts == 3


def test_an_invalid_value_is_refused_naming_the_setting(monkeypatch):
    monkeypatch.setenv("SOCIALZONE_KAFKA__SECURITY_PROTOCOL", "TLS-PLEASE")
    with pytest.raises(ValidationError, match="kafka.security_protocol"):
        load_settings()


def test_data_dir_and_port_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SOCIALZONE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("SOCIALZONE_PORT", "9090")
    settings = load_settings()
    assert settings.data_dir == tmp_path / "var"
    assert settings.port == 9090
    assert settings.admin_key_file == tmp_path / "var" / "admin.key"
    assert settings.local_bus_path() == tmp_path / "var" / "bus.db"


def test_api_keys_come_from_json_and_authenticate(monkeypatch):
    monkeypatch.setenv("SOCIALZONE_API_KEYS", json.dumps([
        {"name": "care-desk", "key": "care-secret", "scopes": ["care:write"]},
        {"name": "bi", "sha256": hashlib.sha256(b"bi-secret").hexdigest(), "scopes": ["insights:read"]},
    ]))
    keyring = KeyRing.from_settings(load_settings())
    care, bi = keyring.authenticate("care-secret"), keyring.authenticate("bi-secret")
    assert care.name == "care-desk" and care.allows("care:read")
    assert bi.name == "bi" and bi.allows("insights:read") and not bi.allows("care:read")
    assert keyring.authenticate("care-desk") is None


@pytest.mark.parametrize("key", [
    {"name": "both", "key": "k", "sha256": "a" * 64, "scopes": []},
    {"name": "neither", "scopes": []},
    {"name": "short-digest", "sha256": "abc123", "scopes": []},
])
def test_a_malformed_api_key_is_refused(monkeypatch, key):
    monkeypatch.setenv("SOCIALZONE_API_KEYS", json.dumps([key]))
    with pytest.raises(ValidationError, match="api_keys"):
        load_settings()


def test_a_refused_setting_does_not_repeat_the_secrets_in_the_error(monkeypatch):
    # The error is what start-up logs: it names the setting, never the input holding keys.
    monkeypatch.setenv("SOCIALZONE_API_KEYS", json.dumps([
        {"name": "care-desk", "scopes": [], "sha256": "a" * 64, "key": "hunter2-care-secret"}]))
    monkeypatch.setenv("SOCIALZONE_ADMIN_KEY", "hunter2-admin-secret")
    with pytest.raises(ValidationError, match="api_keys") as refused:
        load_settings()
    assert "hunter2" not in str(refused.value)
    monkeypatch.setenv("SOCIALZONE_ENVIRONMENT", "production")
    monkeypatch.setenv("SOCIALZONE_API_KEYS", json.dumps([{"name": "care-desk", "key": "change-me", "scopes": []}]))
    with pytest.raises(ValidationError, match="api_keys: 'care-desk'") as refused:
        load_settings()
    assert "hunter2" not in str(refused.value)


def test_admin_key_comes_from_a_secret_file_named_after_the_field(secrets_dir):
    (secrets_dir / "admin_key").write_text("from-a-mounted-secret")
    settings = load_settings()
    assert settings.admin_key.get_secret_value() == "from-a-mounted-secret"
    assert KeyRing.from_settings(settings).authenticate("from-a-mounted-secret").allows("identity:pii")


def test_a_secret_file_named_like_the_variable_works_too(secrets_dir):
    (secrets_dir / "SOCIALZONE_ADMIN_KEY").write_text("prefixed")
    assert load_settings().admin_key.get_secret_value() == "prefixed"


def test_api_keys_come_from_a_secret_file(secrets_dir):
    (secrets_dir / "api_keys").write_text(json.dumps([{"name": "ops", "key": "ops-key", "scopes": ["admin"]}]))
    assert [k.name for k in load_settings().api_keys] == ["ops"]


def test_the_environment_wins_over_a_secret_file(secrets_dir, monkeypatch):
    (secrets_dir / "admin_key").write_text("from-file")
    monkeypatch.setenv("SOCIALZONE_ADMIN_KEY", "from-env")
    assert load_settings().admin_key.get_secret_value() == "from-env"


def test_explicit_overrides_win_over_the_environment(monkeypatch):
    monkeypatch.setenv("SOCIALZONE_PORT", "9090")
    assert load_settings(port=7000).port == 7000


def test_a_service_subclass_reads_its_own_fields_from_the_environment(monkeypatch):
    class CareSettings(ServiceSettings):
        first_response_sla_minutes: int = 60

    monkeypatch.setenv("SOCIALZONE_FIRST_RESPONSE_SLA_MINUTES", "15")
    monkeypatch.setenv("SOCIALZONE_PORT", "8123")
    settings = load_settings(CareSettings)
    assert isinstance(settings, CareSettings)
    assert (settings.first_response_sla_minutes, settings.port) == (15, 8123)


# --- production refuses default secrets ---

def test_production_starts_with_a_real_key(monkeypatch):
    monkeypatch.setenv("SOCIALZONE_ENVIRONMENT", "production")
    monkeypatch.setenv("SOCIALZONE_ADMIN_KEY", "a-long-random-secret")
    assert load_settings().environment == "production"


@pytest.mark.parametrize("admin_key", ["change-me", ""])
def test_production_refuses_a_placeholder_admin_key(monkeypatch, admin_key):
    monkeypatch.setenv("SOCIALZONE_ENVIRONMENT", "production")
    monkeypatch.setenv("SOCIALZONE_API_KEYS", json.dumps([{"name": "ok", "key": "real-secret", "scopes": ["admin"]}]))
    monkeypatch.setenv("SOCIALZONE_ADMIN_KEY", admin_key)
    with pytest.raises(ValidationError, match="admin_key"):
        load_settings()


@pytest.mark.parametrize("api_key", [
    {"name": "care-desk", "key": "change-me", "scopes": ["care:write"]},
    {"name": "care-desk", "sha256": hashlib.sha256(b"change-me").hexdigest(), "scopes": ["care:write"]},
])
def test_production_refuses_a_placeholder_api_key(monkeypatch, api_key):
    monkeypatch.setenv("SOCIALZONE_ENVIRONMENT", "production")
    monkeypatch.setenv("SOCIALZONE_API_KEYS", json.dumps([api_key]))
    with pytest.raises(ValidationError, match="api_keys: 'care-desk'"):
        load_settings()


def test_production_refuses_to_start_without_any_key(monkeypatch):
    monkeypatch.setenv("SOCIALZONE_ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="api_keys"):
        load_settings()


def test_production_ignores_an_admin_key_file_left_in_the_data_folder(monkeypatch, tmp_path):
    # ``make run`` writes <data_dir>/admin.key for development; in production a file left
    # in the data volume must not be an admin key nobody configured.
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "admin.key").write_text("left-over-dev-key\n")
    monkeypatch.setenv("SOCIALZONE_API_KEYS", json.dumps([{"name": "ops", "key": "ops-key", "scopes": ["care:read"]}]))
    assert KeyRing.from_settings(load_settings()).authenticate("left-over-dev-key").name == "admin"
    monkeypatch.setenv("SOCIALZONE_ENVIRONMENT", "production")
    keyring = KeyRing.from_settings(load_settings())
    assert keyring.authenticate("left-over-dev-key") is None
    assert keyring.authenticate("ops-key").name == "ops"


def test_development_accepts_the_placeholder_and_no_keys(monkeypatch):
    monkeypatch.setenv("SOCIALZONE_ADMIN_KEY", "change-me")
    assert load_settings().admin_key.get_secret_value() == "change-me"


# --- where each service's data lives ---

def test_each_service_gets_a_sqlite_file_under_the_data_dir_by_default(monkeypatch, tmp_path):
    monkeypatch.setenv("SOCIALZONE_DATA_DIR", "relative/data")
    settings = load_settings()
    assert settings.database_url_for("care") == f"sqlite:///{tmp_path / 'relative' / 'data' / 'care.db'}"
    assert settings.database_url_for("sales") == f"sqlite:///{tmp_path / 'relative' / 'data' / 'sales.db'}"
    assert settings.database_schema_for("care") == "care"


def test_a_database_url_is_shared_and_a_per_service_url_overrides_it(monkeypatch):
    monkeypatch.setenv("SOCIALZONE_DATABASE_URL", "postgresql://db.internal/socialzone")
    monkeypatch.setenv("SOCIALZONE_DATABASE_URLS", json.dumps({"insights": "postgresql://olap.internal/insights"}))
    monkeypatch.setenv("SOCIALZONE_DATABASE_SCHEMA_PREFIX", "staging_")
    settings = load_settings()
    assert settings.database_url_for("care") == "postgresql://db.internal/socialzone"
    assert settings.database_url_for("insights") == "postgresql://olap.internal/insights"
    assert settings.database_schema_for("care") == "staging_care"
