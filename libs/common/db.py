"""Database helpers: one database (SQLite file) or one PostgreSQL schema per service,
sessions, and Alembic migrations (the platform's history, then the service's own).
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import DateTime, Engine, MetaData, create_engine, event, text
from sqlalchemy.orm import registry, sessionmaker
from sqlalchemy.pool import NullPool
from sqlmodel import Session, SQLModel

PLATFORM_MIGRATIONS = Path(__file__).parent / "migrations"
PLATFORM_VERSION_TABLE = "platform_alembic_version"


def new_table_base(name: str) -> type[SQLModel]:
    """A SQLModel base with its own metadata, so that each service's tables (and
    the platform's) stay apart even when every service runs in one process."""
    return type(name, (SQLModel,), {"__module__": __name__}, registry=registry())


PlatformTable = new_table_base("PlatformTable")
# Every time is stored with its zone (UTC) on PostgreSQL.
UtcDateTime = DateTime(timezone=True)


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def normalize_url(url: str) -> str:
    # One PostgreSQL driver for the whole project: psycopg 3.
    return re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql+psycopg://", url)


def _dump_json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


# JSON columns through orjson: several times faster than the json module, and columns
# such as a case's SLA clocks are written for every event a department handles.
_JSON = {"json_serializer": _dump_json, "json_deserializer": orjson.loads}


_BUSY_TIMEOUT_S = 30
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER")


def _writer_turns(lock: threading.Lock) -> type[sqlite3.Connection]:
    """SQLite connections of one database that take turns at writing through ``lock``.

    SQLite has one writer per file. A connection that finds another one writing waits in
    SQLite's busy handler, which polls with sleeps of up to 100 ms: under load the relay's
    "mark published" waited most of a second behind consumers' transactions (measured:
    up to 840 ms for 500 rows), and a writer that polls can miss its turn again and again.
    Inside one process this lock hands the turn over at once instead: a connection takes
    it before its transaction's first write and gives it back when the transaction ends
    (commit, rollback or close). Readers never take it (WAL). Other processes still meet
    the busy handler, as before."""

    class Cursor(sqlite3.Cursor):
        def execute(self, sql, parameters=()):
            self.connection._before(sql)
            return super().execute(sql, parameters)

        def executemany(self, sql, parameters):
            self.connection._before(sql)
            return super().executemany(sql, parameters)

    class Connection(sqlite3.Connection):
        _writing = False

        def cursor(self, factory=Cursor):
            return super().cursor(factory)

        def _before(self, sql: str) -> None:
            if self._writing or not sql.lstrip()[:7].upper().startswith(_WRITES):
                return
            if not lock.acquire(timeout=_BUSY_TIMEOUT_S):
                raise sqlite3.OperationalError(f"database is locked: no turn to write in {_BUSY_TIMEOUT_S} s")
            self._writing = True

        def _done(self) -> None:
            if self._writing:
                self._writing = False
                lock.release()

        # Every way a transaction ends gives the turn back, even when ending it fails.
        def commit(self) -> None:
            self._end(super().commit)

        def rollback(self) -> None:
            self._end(super().rollback)

        def close(self) -> None:
            self._end(super().close)

        def _end(self, finish) -> None:
            try:
                finish()
            finally:
                self._done()

    return Connection


def create_db_engine(url: str, *, schema: str | None = None, sqlite_synchronous: str = "NORMAL") -> Engine:
    """An engine for one service. On PostgreSQL every connection works in ``schema``."""
    url = normalize_url(url)
    if is_sqlite(url):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": _BUSY_TIMEOUT_S,
                                                  "factory": _writer_turns(threading.Lock())}, **_JSON)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # pragma: no branch - runs per connection
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA page_size=16384")  # only on a new file; rows of events are ~1 KiB
            cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
            # NORMAL in WAL mode survives a killed process; FULL also survives power loss.
            cursor.execute(f"PRAGMA synchronous={sqlite_synchronous}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA cache_size=-65536")  # 64 MiB of pages per connection
            cursor.execute("PRAGMA temp_store=MEMORY")
            cursor.execute("PRAGMA wal_autocheckpoint=10000")
            cursor.close()

        return engine
    if schema:
        # Create the schema before the service's engine first connects, so that the
        # engine sees its own schema as the default one from its first connection on.
        bootstrap = create_engine(url, poolclass=NullPool)
        with bootstrap.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        bootstrap.dispose()
    connect_args = {"options": f"-csearch_path={schema},public"} if schema else {}
    return create_engine(url, connect_args=connect_args, pool_pre_ping=True, pool_size=10, max_overflow=10, **_JSON)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, class_=Session, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work commits on success and rolls back on any error."""
    with factory() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def _alembic_config(script_location: Path, version_table: str, connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.attributes["connection"] = connection
    config.attributes["version_table"] = version_table
    return config


def run_migrations(engine: Engine, service_migrations: Path | None) -> None:
    """Bring a service's database to head: the platform tables, then the service's own."""
    histories = [(PLATFORM_MIGRATIONS, PLATFORM_VERSION_TABLE)]
    if service_migrations is not None:
        histories.append((service_migrations, "alembic_version"))
    for location, version_table in histories:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Several pods may start at once: one migrates, the others wait for it and
                # then find nothing to do. The lock ends with this transaction.
                connection.execute(text(
                    "SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.socialzone-migrations'))"))
            command.upgrade(_alembic_config(location, version_table, connection), "head")


def run_alembic_env(target_metadata: MetaData) -> None:
    """The body of every ``migrations/env.py``: online migrations on the given connection."""
    from alembic import context

    connection = context.config.attributes["connection"]
    # On PostgreSQL the version table lives in the service's own schema (the first on
    # the search path): found by visibility alone, one left in ``public`` would pass
    # for this service's and leave its schema without tables.
    version_table_schema = (connection.execute(text("SELECT current_schema()")).scalar()
                            if connection.dialect.name == "postgresql" else None)
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table=context.config.attributes.get("version_table", "alembic_version"),
        version_table_schema=version_table_schema,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def ping(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
