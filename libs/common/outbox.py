"""Transactional outbox and its relay.

A service writes its state change and the events it publishes in one database
transaction (:func:`enqueue`); only the :class:`Relay` talks to the bus. The relay
picks rows by *state* (unpublished), never by "id greater than the last one seen",
because insert order is not commit order.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import Column, Index, LargeBinary, delete, text
from sqlalchemy.orm import sessionmaker
from sqlmodel import Field, Session, col, select

from socialzone_common import db
from socialzone_common.bus import Bus, StructuredMessage
from socialzone_common.catalog import Event, entry_for, make_envelope
from socialzone_common.db import PlatformTable, UtcDateTime
from socialzone_common.envelope import Envelope, new_event_id, now_utc, structured_bytes, to_structured
from socialzone_common import telemetry

log = logging.getLogger(__name__)

OUTBOX_PENDING_FLAG = "socialzone.outbox.pending"


class OutboxMessage(PlatformTable, table=True):
    __tablename__ = "outbox"
    __table_args__ = (
        # The relay's query: unpublished rows in insert order. Partial where supported.
        Index("ix_outbox_unpublished", "id",
              postgresql_where=text("published_at IS NULL"), sqlite_where=text("published_at IS NULL")),
    )

    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(max_length=64)
    event_type: str = Field(max_length=128)
    topic: str = Field(max_length=128)
    partition_key: str = Field(max_length=256)
    envelope: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(default_factory=now_utc, sa_type=UtcDateTime)
    published_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    attempts: int = 0
    last_error: str | None = None


def enqueue(session: Session, envelope: Envelope, *, topic: str | None = None) -> Envelope:
    """Add an event to the outbox in the caller's transaction (published after commit).

    The caller's trace context is captured so that the relay and consumers continue it.
    """
    if envelope.traceparent is None:
        envelope = envelope.with_traceparent(telemetry.current_traceparent())
    session.add(OutboxMessage(
        event_id=envelope.id, event_type=envelope.type,
        topic=topic or entry_for(envelope.type).topic.name,
        partition_key=envelope.partitionkey, envelope=to_structured(envelope),
    ))
    session.info[OUTBOX_PENDING_FLAG] = True
    return envelope


def enqueue_many(session: Session, envelopes: Sequence[Envelope]) -> None:
    """:func:`enqueue` for many events in one executemany (an ORM object per event costs
    far more: ingest's batches of 500 spent most of their time there)."""
    if not envelopes:
        return
    traceparent = telemetry.current_traceparent()
    rows = []
    for envelope in envelopes:
        if envelope.traceparent is None and traceparent is not None:
            envelope = envelope.with_traceparent(traceparent)
        rows.append((envelope.id, envelope.type, entry_for(envelope.type).topic.name, envelope.partitionkey,
                     to_structured(envelope)))
    enqueue_structured(session, rows)


def structured_row(event_type: str, *, source: str, subject: str, data: dict | bytes, time: datetime,
                   event_id: str | None = None, traceparent: str | None = None,
                   partitionkey: str | None = None) -> tuple[str, str, str, str, bytes]:
    """The outbox row of a catalog event built without its pydantic payload and envelope
    (``envelope.structured_bytes``), for :func:`enqueue_structured`. The caller answers for
    ``data`` matching the type's model: tests compare such rows byte for byte with
    ``to_structured(payload.to_envelope(...))``."""
    entry = entry_for(event_type)
    event_id = event_id or new_event_id()
    key = partitionkey or subject
    return (event_id, event_type, entry.topic.name, key, structured_bytes(
        id=event_id, source=source, type=event_type, subject=subject, time=time, dataschema=entry.dataschema,
        partitionkey=key, traceparent=traceparent, data=data))


def enqueue_structured(session: Session, rows: Sequence[tuple[str, str, str, str, bytes]]) -> None:
    """The outbox insert itself, for events already serialized in structured mode:
    ``(event id, event type, topic, partition key, envelope bytes)`` rows, in the caller's
    transaction, as driver-level multi-row inserts of plain tuples (``db.insert_rows``;
    SQLAlchemy's per-row parameter processing cost more than the insert). The creation time is converted
    once, as the column type stores it."""
    if not rows:
        return
    connection = session.connection()
    dialect = connection.dialect
    created_at = db.stored_value(dialect, OutboxMessage.__table__, "created_at", now_utc())
    mark = db.param_mark(dialect)
    db.insert_rows(connection, "INSERT INTO outbox (event_id, event_type, topic, partition_key, envelope, created_at, "
                   "attempts) VALUES", f"({mark}, {mark}, {mark}, {mark}, {mark}, {mark}, 0)",
                   [(*row, created_at) for row in rows])
    session.info[OUTBOX_PENDING_FLAG] = True


def emit(session: Session, payload: Event, *, source: str, subject: str | None,
         partitionkey: str | None = None, time: datetime | None = None) -> Envelope:
    """Wrap a catalog payload in its envelope and :func:`enqueue` it."""
    envelope = make_envelope(payload, source=source, subject=subject, partitionkey=partitionkey, time=time)
    return enqueue(session, envelope)


def backlog(session: Session) -> int:
    """Events committed but not yet published."""
    from sqlalchemy import func

    return session.exec(select(func.count()).select_from(OutboxMessage)
                        .where(col(OutboxMessage.published_at).is_(None))).one()


_PENDING_IDS = text("SELECT (SELECT min(id) FROM outbox WHERE published_at IS NULL), "
                    "(SELECT max(id) FROM outbox WHERE published_at IS NULL)")


def backlog_over(session: Session, limit: int) -> int | None:
    """The backlog if more than ``limit`` events wait, else None (back-pressure).

    Counting reads every pending row: with a backlog of 100,000, exactly when back-pressure
    matters, each request paid for that. The pending ids lie between the lowest and the
    highest, two look-ups in the relay's index, so only a span wider than ``limit`` is
    counted."""
    low, high = session.execute(_PENDING_IDS).one()
    if low is None or high - low < limit:
        return None
    pending = backlog(session)
    return pending if pending > limit else None


class Relay:
    """Moves committed outbox rows to the bus, in insert order, at least once."""

    def __init__(self, *, service: str, sessions: sessionmaker[Session], bus: Bus,
                 batch_size: int = 500, poll_interval_s: float = 0.2,
                 retention: timedelta = timedelta(hours=24), max_backoff_s: float = 30.0) -> None:
        self.service, self.sessions, self.bus = service, sessions, bus
        self.batch_size, self.poll_interval_s = batch_size, poll_interval_s
        self.retention, self.max_backoff_s = retention, max_backoff_s
        self._wakeup = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.failures = 0

    def wake(self) -> None:
        """Thread-safe: a transaction with outbox rows has committed."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wakeup.set)

    def _pending(self) -> list[tuple[int, StructuredMessage]]:
        """The oldest unpublished rows as they are stored: plain columns, no ORM objects and
        no decoding (the relay runs for every event of the service)."""
        with self.sessions() as session:
            connection = session.connection()
            rows = connection.exec_driver_sql(
                "SELECT id, topic, partition_key, envelope, event_type FROM outbox WHERE published_at IS NULL "
                f"ORDER BY id LIMIT {db.param_mark(connection.dialect)}", (self.batch_size,)).fetchall()
        return [(row_id, StructuredMessage(topic, key.encode(), bytes(envelope), event_type))
                for row_id, topic, key, envelope, event_type in rows]

    def _mark(self, ids: list[int], *, error: str | None) -> None:
        # Driver level, in db.multirow_statements' recurring sizes: SQLAlchemy's expanding IN of
        # a batch's ids (up to relay_batch_size) was rendered, and compiled by SQLite, anew each time.
        with self.sessions() as session:
            connection = session.connection()
            mark = db.param_mark(connection.dialect)
            if error is None:
                head, value = (f"UPDATE outbox SET published_at = {mark}, attempts = attempts + 1, last_error = NULL",
                               db.stored_value(connection.dialect, OutboxMessage.__table__, "published_at",
                                                             now_utc()))
            else:
                head, value = f"UPDATE outbox SET attempts = attempts + 1, last_error = {mark}", error[:1000]
            for statement, parameters in db.multirow_statements(f"{head} WHERE id IN (", mark,
                                                                [(i,) for i in ids], ")"):
                connection.exec_driver_sql(statement, (value, *parameters))
            session.commit()

    def _prune(self) -> None:
        with self.sessions() as session:
            session.exec(delete(OutboxMessage).where(
                col(OutboxMessage.published_at) < now_utc() - self.retention))
            session.commit()

    async def publish_pending(self) -> int:
        """Publish one batch of unpublished rows; return how many were published.

        If the bus fails, nothing is marked: the whole batch is retried in the same
        order, so one key's events are never reordered (duplicates are possible and
        consumers deduplicate them).
        """
        rows = await asyncio.to_thread(self._pending)
        if not rows:
            return 0
        ids = [row_id for row_id, _ in rows]
        messages = [message for _, message in rows]
        try:
            with telemetry.tracer().start_as_current_span(f"relay {self.service}") as span:
                span.set_attribute("messaging.batch.message_count", len(messages))
                await self.bus.publish(messages)
        except Exception as exc:
            await asyncio.to_thread(self._mark, ids, error=f"{type(exc).__name__}: {exc}")
            raise
        await asyncio.to_thread(self._mark, ids, error=None)
        for event_type, count in Counter(message.event_type for message in messages).items():
            telemetry.EVENTS_PUBLISHED.labels(service=self.service, type=event_type).inc(count)
        return len(rows)

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        leadership = await self._lead(stop)
        try:
            await self._relay(stop)
        finally:
            if leadership is not None:
                await asyncio.to_thread(leadership.close)

    async def _lead(self, stop: asyncio.Event):
        """On PostgreSQL, several replicas may run a relay for one schema: an advisory
        lock lets one publish and keeps the others standing by, so one key's events
        are never published by two relays at once. (On SQLite one process runs the relay.)"""
        engine = self.sessions.kw["bind"]
        if engine.dialect.name != "postgresql":
            return None
        while not stop.is_set():
            connection = await asyncio.to_thread(engine.connect)
            got = await asyncio.to_thread(lambda: connection.execute(text(
                "SELECT pg_try_advisory_lock(hashtext(current_schema() || '.socialzone-relay'))")).scalar())
            if got:
                await asyncio.to_thread(connection.commit)
                log.info("relay %s is the leader for its schema", self.service)
                return connection
            await asyncio.to_thread(connection.close)
            await _sleep_unless(stop, 5.0)
        return None

    async def _relay(self, stop: asyncio.Event) -> None:
        backoff = 0.0
        pruned_at = 0.0
        while not stop.is_set():
            try:
                published = await self.publish_pending()
                backoff = 0.0
                if self._loop.time() - pruned_at > 600:
                    pruned_at = self._loop.time()
                    await asyncio.to_thread(self._prune)
            except Exception:
                self.failures += 1
                backoff = min(self.max_backoff_s, max(0.1, backoff * 2))
                log.exception("relay %s could not publish; retrying in %.1fs", self.service, backoff)
                await _sleep_unless(stop, backoff)
                continue
            if published < self.batch_size:
                self._wakeup.clear()
                await _wait_any(stop, self._wakeup, self.poll_interval_s)


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except asyncio.TimeoutError:
        pass


async def _wait_any(stop: asyncio.Event, wakeup: asyncio.Event, timeout: float) -> None:
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wakeup.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
