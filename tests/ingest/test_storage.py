"""Storage: the hand-written migrations match the models (SQLite and PostgreSQL), and on
PostgreSQL the (source, external_id) uniqueness holds when the same post arrives through
concurrent requests: one interaction, one event."""

from __future__ import annotations

import asyncio

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from socialzone_common import db
from socialzone_ingest.service import SERVICE

from tests.ingest.conftest import WRITER, outbox_events, serving, stored

PLATFORM_TABLES = {"outbox", "inbox", "idempotency_keys", "platform_alembic_version", "alembic_version"}


def differences(engine) -> list:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        found = compare_metadata(context, SERVICE.metadata)
    platform = lambda d: any(getattr(x, "name", None) in PLATFORM_TABLES  # noqa: E731
                             or getattr(getattr(x, "table", None), "name", None) in PLATFORM_TABLES
                             for x in (d if isinstance(d, tuple) else (d,)))
    return [d for d in found if not platform(d)]


def test_the_migrations_create_exactly_the_models_on_sqlite(tmp_path):
    engine = db.create_db_engine(f"sqlite:///{tmp_path}/ingest.db")
    db.run_migrations(engine, SERVICE.migrations)
    assert differences(engine) == []
    engine.dispose()


@pytest.mark.postgres
def test_the_migrations_create_exactly_the_models_on_postgresql(pg_settings):
    engine = db.create_db_engine(pg_settings.database_url_for("ingest"),
                                 schema=pg_settings.database_schema_for("ingest"))
    db.run_migrations(engine, SERVICE.migrations)
    assert differences(engine) == []
    engine.dispose()


@pytest.mark.postgres
async def test_the_same_post_sent_concurrently_is_recorded_once_on_postgresql(ingest_settings, pg_settings):
    settings = ingest_settings.model_copy(update={"database_url": pg_settings.database_url,
                                                  "database_schema_prefix": pg_settings.database_schema_prefix})
    post = {"source": "x", "kind": "post", "external_id": "1860000000000000777",
            "occurred_at": "2026-11-20T09:30:00Z", "author": {"identifiers": [{"type": "x", "value": "31337"}]},
            "text": "posted once, delivered by webhook retries and two pollers at the same time"}
    batch = [post, {**post, "external_id": "1860000000000000778"}]
    async with serving(settings) as client:
        responses = await asyncio.gather(*[client.post("/ingest/v1/interactions", json=batch, headers=WRITER)
                                           for _ in range(12)])
        assert all(r.status_code == 202 for r in responses), [r.text for r in responses]
        statuses = [r.json()["results"][0]["status"] for r in responses]
        assert statuses.count("accepted") == 1 and statuses.count("duplicate") == 11
        assert len({r.json()["results"][0]["interaction_id"] for r in responses}) == 1
        assert len(stored(client)) == 2
        assert len(outbox_events(client, "ingest.interaction.recorded")) == 2


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_a_post_deleted_at_the_source_before_it_arrived_is_not_recorded(ingest_settings, backend, request):
    """A delete notice that overtook its post leaves a tombstone: the post, when it comes
    (alone or in a batch beside new posts), is answered "ignored", stored nowhere, published never."""
    settings = ingest_settings
    if backend == "postgres":
        pg = request.getfixturevalue("pg_settings")
        settings = settings.model_copy(update={"database_url": pg.database_url,
                                               "database_schema_prefix": pg.database_schema_prefix})
    notice = {"data": {"delete": {"tweet": {"id": "1860000000000000901", "author_id": "4242"},
                                  "event_at": "2026-11-20T09:00:00Z"}}}
    post = {"source": "x", "kind": "post", "occurred_at": "2026-11-20T08:59:00Z",
            "author": {"identifiers": [{"type": "x", "value": "4242"}]}, "text": "soon deleted"}
    async with serving(settings) as client:
        assert (await client.post("/ingest/v1/sources/x", json=notice, headers=WRITER)).json()["ignored"] == 1
        batch = [{**post, "external_id": "1860000000000000902"}, {**post, "external_id": "1860000000000000901"}]
        response = await client.post("/ingest/v1/interactions", json=batch, headers=WRITER)
        assert response.status_code == 202, response.text
        first, second = response.json()["results"]
        assert first["status"] == "accepted"
        assert second["status"] == "ignored" and second["errors"][0]["field"] == "external_id"
        assert [row.external_id for row in stored(client)] == ["1860000000000000902"]
        assert [e.data["interaction"]["external_id"]
                for e, _ in outbox_events(client, "ingest.interaction.recorded")] == ["1860000000000000902"]
