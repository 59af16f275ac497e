"""Every service's Alembic history (the platform's, then its own) builds exactly the
tables its models describe, on SQLite and on the real PostgreSQL, and running it
again changes nothing."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, MetaData, create_engine, event, inspect, text
from sqlalchemy.engine import make_url

from socialzone_common import db, idempotency, inbox, outbox  # noqa: F401  (register the platform tables)
from socialzone_common.service import ServiceSpec, load_services

SERVICES = load_services()
PLATFORM_TABLES = {"outbox", "inbox", "idempotency_keys"}
SERVICE_VERSION_TABLE = "alembic_version"
VERSION_TABLES = {db.PLATFORM_VERSION_TABLE, SERVICE_VERSION_TABLE}


def _head(location: Path) -> str | None:
    config = Config()
    config.set_main_option("script_location", str(location))
    return ScriptDirectory.from_config(config).get_current_head()


def _diff(engine: Engine, metadata: MetaData, *, version_table: str, expected: set[str]) -> list:
    """What autogenerate would still change so the database matches ``metadata``.

    Tables of the other history (and both version tables) are not this metadata's
    business; any other table the database holds is reported as one to remove.
    """
    def include_name(name, type_, parent_names) -> bool:
        return type_ != "table" or name not in (expected | VERSION_TABLES) - set(metadata.tables)

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={
            "version_table": version_table, "compare_type": True, "include_name": include_name})
        return compare_metadata(context, metadata)


def _versions(engine: Engine) -> dict[str, str | None]:
    with engine.connect() as conn:
        return {table: MigrationContext.configure(conn, opts={"version_table": table}).get_current_revision()
                for table in sorted(VERSION_TABLES)}


def _ddl_statements(engine: Engine):
    """A list that fills with every schema-changing statement run on ``engine``."""
    seen: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _record(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().split(" ", 1)[0].upper() in {"CREATE", "ALTER", "DROP", "INSERT", "UPDATE",
                                                           "DELETE"}:
            seen.append(statement)

    return seen


def _assert_matches_models(engine: Engine, spec: ServiceSpec) -> None:
    service_tables = set(spec.metadata.tables)
    assert not service_tables & (PLATFORM_TABLES | VERSION_TABLES), (
        f"{spec.name} declares a table the platform owns: {service_tables & (PLATFORM_TABLES | VERSION_TABLES)}")
    expected = PLATFORM_TABLES | service_tables

    assert _diff(engine, db.PlatformTable.metadata, version_table=db.PLATFORM_VERSION_TABLE,
                 expected=expected) == []
    assert _diff(engine, spec.metadata, version_table=SERVICE_VERSION_TABLE, expected=expected) == []
    assert _versions(engine) == {db.PLATFORM_VERSION_TABLE: _head(db.PLATFORM_MIGRATIONS),
                                 SERVICE_VERSION_TABLE: _head(spec.migrations)}


def _assert_second_run_is_a_no_op(engine: Engine, spec: ServiceSpec) -> None:
    before = _versions(engine)
    statements = _ddl_statements(engine)
    db.run_migrations(engine, spec.migrations)
    assert statements == []
    assert _versions(engine) == before
    _assert_matches_models(engine, spec)


def test_platform_metadata_holds_the_platform_tables():
    # Guards the comparison below: an empty platform metadata would match anything.
    assert PLATFORM_TABLES <= set(db.PlatformTable.metadata.tables)
    assert _head(db.PLATFORM_MIGRATIONS) is not None


def test_every_registered_service_has_its_own_history_and_metadata():
    assert set(SERVICES) == {"ingest", "identity", "care", "marketing", "sales", "insights"}
    for spec in SERVICES.values():
        assert (spec.migrations / "env.py").is_file(), spec.name
        assert spec.metadata is not db.PlatformTable.metadata, spec.name
    metadatas = [spec.metadata for spec in SERVICES.values()]
    assert len({id(m) for m in metadatas}) == len(metadatas), "two services share one metadata"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_migrations_build_the_models_on_a_fresh_sqlite_database(name, tmp_path):
    spec = SERVICES[name]
    engine = db.create_db_engine(f"sqlite:///{tmp_path / f'{name}.db'}")
    try:
        db.run_migrations(engine, spec.migrations)

        assert PLATFORM_TABLES | set(spec.metadata.tables) | VERSION_TABLES <= set(inspect(engine).get_table_names())
        _assert_matches_models(engine, spec)
        _assert_second_run_is_a_no_op(engine, spec)
    finally:
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("name", sorted(SERVICES))
def test_migrations_build_the_models_in_the_service_schema_on_postgresql(name, pg_settings):
    spec = SERVICES[name]
    schema = pg_settings.database_schema_for(name)
    engine = db.create_db_engine(pg_settings.database_url_for(name), schema=schema)
    try:
        db.run_migrations(engine, spec.migrations)

        with engine.connect() as conn:
            assert conn.execute(text("SELECT current_schema()")).scalar() == schema
            located = dict(conn.execute(text(
                "SELECT tablename, schemaname FROM pg_tables WHERE schemaname = :s"), {"s": schema}).all())
        assert {table: schema for table in PLATFORM_TABLES | set(spec.metadata.tables) | VERSION_TABLES} \
            == located, f"tables of {name} outside its schema {schema}"
        _assert_matches_models(engine, spec)
        _assert_second_run_is_a_no_op(engine, spec)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_tables_left_in_public_do_not_pass_for_a_service_schema(pg_url):
    """search_path is "<schema>,public": a history already applied in public (another
    tool, an older layout) must not make a service's own schema look migrated."""
    name = f"sz_migrations_{uuid.uuid4().hex[:10]}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    url = make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        in_public = db.create_db_engine(url)
        db.run_migrations(in_public, None)
        in_public.dispose()

        engine = db.create_db_engine(url, schema="care")
        try:
            db.run_migrations(engine, None)
            tables = set(inspect(engine).get_table_names(schema="care"))
            assert PLATFORM_TABLES | {db.PLATFORM_VERSION_TABLE} <= tables
        finally:
            engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_pods_migrating_one_postgresql_schema_at_once_all_succeed(pg_settings):
    # Several replicas start together: the advisory lock lets one migrate, the others wait
    # and then find nothing to do (without it, the losers fail on "already exists").
    from concurrent.futures import ThreadPoolExecutor

    spec = load_services()["identity"]
    url, schema = pg_settings.database_url_for("identity"), pg_settings.database_schema_for("identity")
    engines = [db.create_db_engine(url, schema=schema) for _ in range(3)]
    try:
        with ThreadPoolExecutor(3) as pool:
            results = list(pool.map(lambda engine: db.run_migrations(engine, spec.migrations), engines))
        with engines[0].connect() as conn:
            tables = set(inspect(conn).get_table_names(schema=schema))
    finally:
        for engine in engines:
            engine.dispose()
    assert results == [None, None, None]
    assert {"outbox", "inbox", "alembic_version"} <= tables
