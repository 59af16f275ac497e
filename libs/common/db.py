"""Database helpers: one database (SQLite file) or one PostgreSQL schema per service,
sessions, and Alembic migrations (the platform's history, then the service's own).
"""

from __future__ import annotations

import fcntl
import os
import re
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import JSON, DateTime, Engine, MetaData, create_engine, event, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import registry, sessionmaker
from sqlalchemy.pool import NullPool
from sqlmodel import Session, SQLModel

from socialzone_common import telemetry

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


class FairLock:
    """A lock given in the order it was asked for. ``threading.Lock`` is not: a thread that
    gives it back and asks again at once usually gets it again, so a writer in a loop (the
    ingest API's request threads in the all-in-one process) can keep another (ingest's
    consumer) from its database's writer turn (measured in tests/test_sqlite_writer_turns.py:
    1.75 s for a turn behind a loop of 2 ms transactions; in order, under 1 ms). Released,
    it is handed straight to the first waiter."""

    def __init__(self, name: str | None = None) -> None:
        self._mutex = threading.Lock()
        self._waiters: deque[threading.Lock] = deque()
        self._held = False
        self._since = 0.0
        # with a name: the waits and holds are counted (telemetry.SQLITE_WRITER_*)
        self._waited = telemetry.SQLITE_WRITER_WAIT.labels(database=name) if name else None
        self._held_for = telemetry.SQLITE_WRITER_HELD.labels(database=name) if name else None

    def acquire(self, timeout: float = -1) -> bool:
        with self._mutex:
            if not self._held:
                self._held = True
                self._since = time.monotonic()
                return True
            waiter = threading.Lock()
            waiter.acquire()
            self._waiters.append(waiter)
        asked = time.monotonic()
        got = waiter.acquire(timeout=timeout)
        if not got:
            with self._mutex:
                try:
                    self._waiters.remove(waiter)
                except ValueError:
                    got = True  # handed over just as the wait ran out
        now = time.monotonic()
        if self._waited is not None:
            self._waited.inc(now - asked)
        if got:
            self._since = now  # handed over: still held, now by this thread
        return got

    def release(self) -> None:
        if self._held_for is not None:
            self._held_for.inc(time.monotonic() - self._since)
        with self._mutex:
            if self._waiters:
                self._waiters.popleft().release()
            else:
                self._held = False


class ProcessTurn:
    """The writer turn of one SQLite file among processes: ``flock`` on ``<file>.writer``,
    taken through a second lock, ``<file>.queue``.

    Processes sharing a database (the all-in-one's API and its consumer child, two consumer
    processes of one group) would otherwise meet in SQLite's busy handler, which retries
    after sleeps of 1, 2, 5 ... 100 ms: the turn sits unused while a waiter sleeps. These
    locks are polled every 0.1 to 0.25 ms instead. The queue makes it fair: the next writer
    holds it while it waits for the turn, so a process that gives the turn back and asks again
    at once (a consumer committing batch after batch) queues behind it instead of taking the
    turn again before the waiter's next poll. ``flock`` belongs to the open file, so the kernel
    drops both when their process dies."""

    def __init__(self, path: str) -> None:
        self._writer = os.open(f"{path}.writer", os.O_RDWR | os.O_CREAT, 0o600)
        self._queue = os.open(f"{path}.queue", os.O_RDWR | os.O_CREAT, 0o600)

    def acquire(self, deadline: float) -> bool:
        if not _flock(self._queue, deadline):
            return False
        try:
            return _flock(self._writer, deadline)
        finally:
            fcntl.flock(self._queue, fcntl.LOCK_UN)

    def release(self) -> None:
        fcntl.flock(self._writer, fcntl.LOCK_UN)

    def __del__(self) -> None:  # the engine (and the connection class holding this) is gone
        for fd in (self._writer, self._queue):
            try:
                os.close(fd)
            except OSError:
                pass


def _flock(fd: int, deadline: float) -> bool:
    pause = 0.0001
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(pause)
            pause = min(pause * 2, 0.00025)


class WriterTurn:
    """One SQLite file's writer turn: this process's threads in the order they asked
    (:class:`FairLock`, counted for metrics under ``name``), then the other processes that
    share the file (:class:`ProcessTurn`; none for an in-memory database). A context manager,
    or ``acquire``/``release``; a turn not had within 30 s raises ``sqlite3.OperationalError``."""

    def __init__(self, path: str, name: str | None = None) -> None:
        self._threads = FairLock(name)
        self._processes = ProcessTurn(path) if path and path != ":memory:" else None

    def acquire(self) -> None:
        timeout = _BUSY_TIMEOUT_S
        deadline = time.monotonic() + timeout
        if not self._threads.acquire(timeout=timeout):
            raise sqlite3.OperationalError(f"database is locked: no turn to write in {timeout} s")
        if self._processes is not None and not self._processes.acquire(deadline):
            self._threads.release()
            raise sqlite3.OperationalError(f"database is locked by another process: no turn to write in {timeout} s")

    def release(self) -> None:
        if self._processes is not None:
            self._processes.release()
        self._threads.release()

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()


def _writer_turns(turn: WriterTurn) -> type[sqlite3.Connection]:
    """SQLite connections of one database that take turns at writing through ``turn``.

    SQLite has one writer per file. A connection that finds another one writing waits in
    SQLite's busy handler, which polls with sleeps of up to 100 ms: under load the relay's
    "mark published" waited most of a second behind consumers' transactions (measured:
    up to 840 ms for 500 rows), and a writer that polls can miss its turn again and again.
    :class:`WriterTurn` hands the turn over at once instead, in the order it was asked for,
    and among processes within a fraction of a millisecond. A connection takes the turn
    before its transaction's first write (or at :func:`begin_writing`) and gives it back when
    the transaction ends (commit, rollback or close). Readers never take it (WAL). Only statements through a cursor take it
    (SQLAlchemy's way): ``Connection.execute``/``executescript`` of the raw sqlite3 connection
    bypass the overrides (CPython calls its own cursor), so nothing here uses them to write."""

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
            turn.acquire()
            self._writing = True

        def begin_writing(self) -> None:
            """Open the transaction now as a writing one (``BEGIN IMMEDIATE``), with the turn:
            what it reads from here on stays as read until it ends. (sqlite3 begins a
            transaction only at its first write, so reads before it see each commit as it
            comes, and a write can then overwrite another writer's change unseen.)"""
            if self.in_transaction:
                return  # begun by a write, which took the turn
            if not self._writing:
                turn.acquire()
                self._writing = True
            try:
                sqlite3.Cursor(self).execute("BEGIN IMMEDIATE")  # the plain cursor: the turn is taken
            except BaseException:
                self._done()
                raise

        def _done(self) -> None:
            if self._writing:
                self._writing = False
                turn.release()

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


def begin_writing(session_or_connection) -> None:
    """What this transaction reads from here on is not changed by another writer before it
    ends. On SQLite: the database's writer turn is taken and the transaction begun now
    (``BEGIN IMMEDIATE``) instead of at its first write; call it before the reads a write
    depends on (a read-modify-write, a batch that reads first). On PostgreSQL nothing: there
    the caller locks what it reads (``FOR UPDATE``, advisory locks), as it must anyway."""
    connection = session_or_connection.connection() if hasattr(session_or_connection, "get_bind") \
        else session_or_connection
    if connection.dialect.name != "sqlite":
        return
    begin = getattr(connection.connection.driver_connection, "begin_writing", None)
    if begin is not None:  # a connection of create_db_engine's (else: one of a test's own engines)
        begin()


def lock_keys(session, namespace: str, keys) -> None:
    """Serialize this transaction with every other that locks one of ``keys`` in ``namespace``,
    until it ends: on PostgreSQL transaction-scoped advisory locks, taken in one global order
    (two transactions never wait on each other in a cycle); on SQLite the writer turn
    (:func:`begin_writing`), which serializes every writer anyway."""
    if session.get_bind().dialect.name != "postgresql":
        begin_writing(session)
        return
    ordered = sorted({f"{namespace}:{k}" for k in keys})
    if ordered:
        session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) "
                             "FROM unnest(CAST(:keys AS text[])) AS k ORDER BY k"), {"keys": ordered})


# --- many rows in few statements ------------------------------------------------------------------
#
# sqlite3 lets go of the interpreter lock around every step of a statement, and executemany
# steps once per row (so does reading a result, once per row). Alone that costs little; in the
# all-in-one process, where other threads want the lock, every step's return waits for it,
# and a writer holds its database's one writer turn meanwhile. Measured with two busy Python
# threads beside it: 500 rows by executemany took 1,170 ms (1.7 ms alone), the same rows as
# two multi-row INSERT statements 26 ms (1.1 ms alone). So the hot writes go as multi-row
# statements: one step per statement.

ROWS_PER_STATEMENT = 500
SQLITE_CACHED_STATEMENTS = 512
"""Compiled statements sqlite3 keeps per connection (its default, 128, is short for a service's
tables times the ~10 statement lengths of :func:`_chunks`)."""
_MAX_PARAMETERS = 30_000  # SQLite allows 32,766 bound parameters per statement, psycopg 65,535


def _chunks(rows: Sequence[Sequence[Any]]) -> Iterator[Sequence[Sequence[Any]]]:
    """Consecutive pieces of ``rows`` in sizes that recur from call to call: whole statements,
    then the rest in powers of two (360 rows: 256, 64, 32, 8). SQLite compiles each statement
    text it has not seen before (sqlite3 keeps compiled statements by their text), at about
    0.45 us per bound value: a multi-row statement of a new length every batch cost several
    times what running it did (3 ms for 360 timeline rows). PostgreSQL's driver likewise
    prepares only the statements it sees again."""
    per = max(1, min(ROWS_PER_STATEMENT, _MAX_PARAMETERS // max(1, len(rows[0]))))
    start, total = 0, len(rows)
    while start < total:
        left = total - start
        size = per if left >= per else 1 << (left.bit_length() - 1)
        yield rows[start:start + size]
        start += size


def multirow_statements(head: str, row: str, rows: Sequence[Sequence[Any]],
                        tail: str = "") -> Iterator[tuple[str, tuple]]:
    """(statement, parameters) pairs: ``head`` (``INSERT INTO t (a, b) VALUES``) with ``row``
    (``(?, ?)``, in the driver's paramstyle, casts allowed) once per row, up to
    ``ROWS_PER_STATEMENT`` rows each (see above); ``tail`` ends each statement."""
    if not rows:
        return
    for chunk in _chunks(rows):
        yield f"{head} {', '.join([row] * len(chunk))}{tail}", tuple(value for r in chunk for value in r)


def insert_rows(connection, head: str, row: str, rows: Sequence[Sequence[Any]], tail: str = "") -> list:
    """:func:`multirow_statements` run on a SQLAlchemy connection; the rows a ``RETURNING``
    in ``tail`` gives back, in one list."""
    returned: list = []
    for statement, parameters in multirow_statements(head, row, rows, tail):
        result = connection.exec_driver_sql(statement, parameters)
        if result.returns_rows:
            returned.extend(result.fetchall())
    return returned


def select_in(connection, select_from: str, columns: Sequence[str], keys: Sequence[Sequence[Any]], *,
              where: str = "", params: Sequence[Any] = ()) -> list:
    """The rows of ``select_from WHERE [where AND] (columns) IN (keys)`` (``params`` bind
    ``where``'s placeholders), in :func:`multirow_statements` pieces at driver level:
    SQLAlchemy's expanding ``IN`` renders (and SQLite compiles) a new statement for every
    batch. Several columns compare as a row value against ``VALUES`` (SQLite takes a row
    value ``IN`` only from a subquery); PostgreSQL then types the VALUES by their parameters,
    so text keys compare only with text columns there (a uuid or date column needs its keys
    as those types, or a cast in ``columns``)."""
    mark = param_mark(connection.dialect)
    condition = f"{where} AND " if where else ""
    if len(columns) == 1:
        head, row, tail = f"{select_from} WHERE {condition}{columns[0]} IN (", mark, ")"
    else:
        head = f"{select_from} WHERE {condition}({', '.join(columns)}) IN (VALUES"
        row, tail = "(" + ", ".join([mark] * len(columns)) + ")", ")"
    found: list = []
    for statement, parameters in multirow_statements(head, row, keys, tail):
        found.extend(connection.exec_driver_sql(statement, (*params, *parameters)).fetchall())
    return found


def param_mark(dialect) -> str:
    """The driver's placeholder: ``?`` (sqlite3) or ``%s`` (psycopg)."""
    return "?" if dialect.paramstyle == "qmark" else "%s"


def bind_processors(dialect, table, columns: Sequence[str]) -> list[tuple[int, Callable[[Any], Any]]]:
    """(position, processor) of the ``columns`` of a Core ``table`` whose type converts values
    for the dialect (SQLite's text datetimes, JSON, decimals): what a Core statement applies."""
    found = []
    for n, name in enumerate(columns):
        impl = table.c[name].type.dialect_impl(dialect)
        process = impl.bind_processor(dialect)
        if process is not None:
            found.append((n, _sqlite_datetime_text(process) if _default_sqlite_datetime(impl) else process))
    return found


def stored_value(dialect, table, column: str, value: Any) -> Any:
    """``value`` as ``table.column``'s type binds it for ``dialect`` (SQLite: datetimes as
    text): for a value written into many driver-level rows, converted once."""
    processors = bind_processors(dialect, table, [column])
    return processors[0][1](value) if processors else value


def _default_sqlite_datetime(impl) -> bool:
    return isinstance(impl, sqlite.DATETIME) and impl._storage_format == sqlite.DATETIME._storage_format \
        and impl._reg is None


def _sqlite_datetime_text(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """SQLite's DATETIME bind processor for its default storage format, byte for byte
    ("2026-12-01 09:30:00.000000", the time zone dropped), from ``isoformat`` instead of a
    %-format of seven fields (a third of the cost; datetimes are in every hot write), each
    distinct UTC time once (a batch's rows share their times: "now", the batch's event time).
    Only UTC times are remembered: equal times in other zones are written differently."""
    texts: dict[datetime, str] = {}

    def process_datetime(value):
        if type(value) is not datetime:
            return process(value)
        if value.tzinfo is not timezone.utc:
            return value.isoformat(" ", "microseconds")[:26]
        text = texts.get(value)
        if text is None:
            if len(texts) >= 10_000:
                texts.clear()
            text = texts[value] = value.isoformat(" ", "microseconds")[:26]
        return text
    return process_datetime


def bind_rows(rows: Iterable[Sequence[Any]], processors: Sequence[tuple[int, Callable[[Any], Any]]]) -> list:
    """``rows`` with each value at a processor's position passed through it."""
    if not processors:
        return [tuple(row) for row in rows]
    out = []
    for row in rows:
        row = list(row)
        for n, process in processors:
            row[n] = process(row[n])
        out.append(row)
    return out


def insert_mappings(connection, table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Rows of a Core ``table`` given as dicts (all with the keys of the first), each value
    through its column type's bind processor for the dialect as a Core insert would do,
    as :func:`insert_rows` statements: a Core multi-row ``insert().values(rows)`` compiles a
    new statement with a parameter per value for every batch, which cost more than the rows."""
    if not rows:
        return
    dialect = connection.dialect
    quote = dialect.identifier_preparer.quote
    columns = list(rows[0])
    mark = param_mark(dialect)
    # PostgreSQL: JSON arrives as text; say what it is (as identity's fast path does)
    marks = [f"CAST({mark} AS JSON)" if dialect.name == "postgresql" and isinstance(table.c[name].type, JSON)
             else mark for name in columns]
    values = bind_rows(([row[name] for name in columns] for row in rows), bind_processors(dialect, table, columns))
    insert_rows(connection, f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) VALUES",
                f"({', '.join(marks)})", values)


def update_rows(connection, table: str, assignments: str, key: str, row: str,
                rows: Sequence[Sequence[Any]]) -> None:
    """``UPDATE table SET ... FROM (VALUES row, ...) AS v WHERE table.key = v.column1``: each
    row is the key, then the values that ``assignments`` read as ``v.column2``, ``v.column3``...
    (the VALUES columns' own names on SQLite and PostgreSQL). One step per statement, as
    :func:`insert_rows`."""
    for statement, parameters in multirow_statements(
            f"UPDATE {table} SET {assignments} FROM (VALUES", row, rows, f") AS v WHERE {table}.{key} = v.column1"):
        connection.exec_driver_sql(statement, parameters)


def create_db_engine(url: str, *, schema: str | None = None, sqlite_synchronous: str = "NORMAL") -> Engine:
    """An engine for one service. On PostgreSQL every connection works in ``schema``."""
    url = normalize_url(url)
    if is_sqlite(url):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": _BUSY_TIMEOUT_S,
                                                  "cached_statements": SQLITE_CACHED_STATEMENTS,
                                                  "factory": _writer_turns(WriterTurn(path, Path(path).name or "memory"))},
                               **_JSON)

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
