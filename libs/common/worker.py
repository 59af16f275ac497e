"""The consumer worker: poll, handle each event once (inbox), retry, dead-letter, commit.

Records of one partition are handled in order, one transaction each; the offset
is committed only after the batch's transactions have committed. A record that
still fails after ``max_attempts`` goes to ``<topic>.dlq`` with the error and its
origin in headers, and the consumer goes on. More dead letters than ``dlq_limit``
within ``dlq_window_s`` stop the consumer instead (a bad deploy must not
dead-letter a whole topic).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import Status, StatusCode
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, delete

from socialzone_common import db, telemetry
from socialzone_common.bus import Bus, Consumer, RawMessage, Record
from socialzone_common.envelope import Envelope, now_utc
from socialzone_common.inbox import InboxEntry, handle_once, record_handled, unhandled
from socialzone_common.settings import ConsumerSettings

log = logging.getLogger(__name__)

Handler = Callable[[Session, Envelope], None]
BatchHandler = Callable[..., None]
"""``(session, envelopes)``, or ``(session, envelopes, prepared)`` with ``batch_prepare``."""


@dataclass(frozen=True)
class ConsumerSpec:
    """A handler subscribed to topics as one consumer group.

    ``types``: the event types it handles; other events on the topics are skipped
    (and committed). None means every type.
    """

    group: str
    topics: Sequence[str]
    handler: Handler
    types: frozenset[str] | None = None
    description: str = ""
    batch_handler: BatchHandler | None = None
    """Optional: handle a polled batch in ONE transaction (one inbox row per event). If it
    raises, the batch is rolled back and handled one event per transaction with ``handler``
    (retries, then the DLQ), so a poison message cannot take its neighbours with it."""
    batch_prepare: Callable[[Session, list[Envelope]], Any] | None = None
    """Optional, with ``batch_handler``: ``(session, envelopes)``, the work on a batch that
    writes nothing (decoding, validating, normalizing, reading), done before the batch's
    transaction takes the writer turn, so that another process of the group writes meanwhile
    (on SQLite there is one writer). What it reads may change before the handler runs: the
    handler checks what it relies on. Its result goes to ``batch_handler`` as a third
    argument; if it raises, the batch is handled one event per transaction, as when
    ``batch_handler`` raises."""


class ConsumerStopped(RuntimeError):
    """The worker stopped itself (dead-letter limit reached)."""


@dataclass
class DeadLetter:
    record: Record
    error: str
    attempts: int


@dataclass
class WorkerState:
    running: bool = False
    stopped_reason: str | None = None
    handled: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    dlq_times: deque = field(default_factory=deque)
    # records the last poll returned (0: caught up); background work reads it to yield
    last_batch: int = 0


def dead_letter_message(record: Record, *, group: str, error: str, attempts: int) -> RawMessage:
    """The original bytes for ``<topic>.dlq``, with the error and origin in headers."""
    origin = [
        ("dlq_original_topic", record.topic.encode()),
        ("dlq_original_partition", str(record.partition).encode()),
        ("dlq_original_offset", str(record.offset).encode()),
        ("dlq_consumer_group", group.encode()),
        ("dlq_error", error[:2000].encode()),
        ("dlq_attempts", str(attempts).encode()),
        ("dlq_failed_at", now_utc().isoformat().encode()),
    ]
    return RawMessage(f"{record.topic}.dlq", record.key, record.value, list(record.headers) + origin)


class ConsumerWorker:
    def __init__(self, *, bus: Bus, spec: ConsumerSpec, sessions: sessionmaker[Session],
                 settings: ConsumerSettings, inbox_retention_days: float = 30.0) -> None:
        self.bus, self.spec, self.sessions, self.settings = bus, spec, sessions, settings
        self.inbox_retention_days = inbox_retention_days
        self.state = WorkerState()
        self.consumer: Consumer | None = None

    # -- handling (in a worker thread: handlers use a blocking database session) --

    def _handle(self, record: Record) -> tuple[str, DeadLetter | None]:
        envelope = record.envelope
        if record.skipped_type is not None:
            return "skipped", None
        if envelope is None:
            return "dead_lettered", DeadLetter(record, f"undecodable: {record.decode_error}", 0)
        if self.spec.types is not None and envelope.type not in self.spec.types:
            return "skipped", None
        error = ""
        for attempt in range(1, self.settings.max_attempts + 1):
            with telemetry.continued_span(f"process {envelope.type}", envelope.traceparent,
                                          **{"messaging.destination.name": record.topic,
                                             "messaging.consumer.group.name": self.spec.group,
                                             "messaging.message.id": envelope.id}) as span:
                try:
                    ran = handle_once(self.sessions, group=self.spec.group, envelope=envelope,
                                      handler=self.spec.handler)
                    return ("handled" if ran else "duplicate"), None
                except Exception as exc:  # retried, then dead-lettered: never silently dropped
                    error = f"{type(exc).__name__}: {exc}"
                    span.record_exception(exc)
                    span.set_status(Status(StatusCode.ERROR, error))
                    log.warning("group %s failed on %s %s (attempt %d/%d): %s", self.spec.group,
                                envelope.type, envelope.id, attempt, self.settings.max_attempts, error)
            if attempt < self.settings.max_attempts:
                time.sleep(min(self.settings.retry_backoff_max_s,
                               self.settings.retry_backoff_s * 2 ** (attempt - 1)))
        return "dead_lettered", DeadLetter(record, error, self.settings.max_attempts)

    def _handle_batch(self, records: Sequence[Record]) -> tuple[list[Record], list[DeadLetter], str | None]:
        if self.spec.batch_handler is not None and len(records) > 1 and self._handle_as_one(records):
            return list(records), [], None
        return self._handle_each(records)

    def _handle_as_one(self, records: Sequence[Record]) -> bool:
        """The whole batch in one transaction; False (nothing done) if it could not be."""
        if any(r.envelope is None and r.skipped_type is None for r in records):
            return False
        wanted = [r.envelope for r in records
                  if r.envelope is not None and (self.spec.types is None or r.envelope.type in self.spec.types)]
        if not wanted:
            return True  # nothing this group handles: the records are only committed
        try:
            with telemetry.batch_span(f"process {self.spec.group} batch", [e.traceparent for e in wanted],
                                      **{"messaging.consumer.group.name": self.spec.group,
                                         "messaging.batch.message_count": len(wanted)}) as span, \
                    self.sessions() as session:
                try:
                    prepared = () if self.spec.batch_prepare is None else (self.spec.batch_prepare(session, wanted),)
                    # A batch reads before it writes (the inbox rows go in last): on SQLite
                    # its transaction must hold the writer turn from the start, or another
                    # writer's commit between its reads and its writes is overwritten
                    # (PostgreSQL handlers lock what they read).
                    db.begin_writing(session)
                    fresh = unhandled(session, group=self.spec.group, envelopes=wanted)
                    self.spec.batch_handler(session, fresh, *prepared)
                    record_handled(session, group=self.spec.group, envelopes=fresh)
                    session.commit()
                except BaseException as exc:
                    session.rollback()
                    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                    raise
        except Exception as exc:
            log.info("group %s: batch of %d failed (%s); handling it one event at a time",
                     self.spec.group, len(wanted), exc)
            return False
        fresh_ids = {e.id for e in fresh}
        outcomes = Counter((e.type, "handled" if e.id in fresh_ids else "duplicate") for e in wanted)
        for (event_type, outcome), count in outcomes.items():
            telemetry.EVENTS_CONSUMED.labels(group=self.spec.group, type=event_type, outcome=outcome).inc(count)
        self.state.handled += len(fresh)
        self.state.duplicates += len(wanted) - len(fresh)
        return True

    def _handle_each(self, records: Sequence[Record]) -> tuple[list[Record], list[DeadLetter], str | None]:
        """Handle records in order. Returns the records done (handled, skipped or to be
        dead-lettered), the dead letters, and why the consumer must stop, if it must:
        the record that would pass the dead-letter limit is neither dead-lettered nor
        committed, so it is delivered again once the cause is fixed."""
        done: list[Record] = []
        dead: list[DeadLetter] = []
        for record in records:
            outcome, letter = self._handle(record)
            event_type = record.envelope.type if record.envelope else record.skipped_type or "undecodable"
            if letter is not None:
                stop_reason = self._dead_letter_budget_exceeded()
                if stop_reason:
                    return done, dead, stop_reason
                dead.append(letter)
            telemetry.EVENTS_CONSUMED.labels(group=self.spec.group, type=event_type, outcome=outcome).inc()
            if outcome == "handled":
                self.state.handled += 1
            elif outcome == "duplicate":
                self.state.duplicates += 1
            done.append(record)
        return done, dead, None

    def _dead_letter_budget_exceeded(self) -> str | None:
        now = time.monotonic()
        times = self.state.dlq_times
        while times and times[0] < now - self.settings.dlq_window_s:
            times.popleft()
        if len(times) >= self.settings.dlq_limit:
            return (f"more than {self.settings.dlq_limit} dead letters within {self.settings.dlq_window_s:.0f}s: "
                    f"consumer {self.spec.group} stopped")
        times.append(now)
        return None

    async def process(self, records: Sequence[Record]) -> None:
        """Handle a polled batch, dead-letter what failed, then commit the offsets."""
        assert self.consumer is not None
        done, dead, stop_reason = await asyncio.to_thread(self._handle_batch, records)
        if dead:
            await self.bus.publish([dead_letter_message(d.record, group=self.spec.group, error=d.error,
                                                        attempts=d.attempts) for d in dead])
            for letter in dead:
                telemetry.DLQ_MESSAGES.labels(group=self.spec.group, topic=letter.record.topic).inc()
                log.error("group %s dead-lettered %s[%d]@%d: %s", self.spec.group, letter.record.topic,
                          letter.record.partition, letter.record.offset, letter.error)
            self.state.dead_lettered += len(dead)
        await self.consumer.commit(done)
        if stop_reason:
            raise ConsumerStopped(stop_reason)

    def _poll(self) -> asyncio.Future:
        return asyncio.ensure_future(self.consumer.poll(max_records=self.settings.batch_size, timeout=0.5))

    def _prune_inbox(self) -> None:
        cutoff = now_utc().timestamp() - self.inbox_retention_days * 86400
        from datetime import datetime, timezone

        with self.sessions() as session:
            session.exec(delete(InboxEntry).where(
                InboxEntry.consumer_group == self.spec.group,
                InboxEntry.handled_at < datetime.fromtimestamp(cutoff, timezone.utc)))
            session.commit()

    async def run(self, stop: asyncio.Event) -> None:
        self.consumer = self.bus.consumer(group=self.spec.group, topics=self.spec.topics,
                                          client_id=self.spec.group, types=self.spec.types)
        await self.consumer.start()
        self.state.running = True
        last_housekeeping = 0.0
        ahead: asyncio.Future | None = None
        try:
            while not stop.is_set():
                records = await (ahead or self._poll())
                ahead = None
                self.state.last_batch = len(records)
                if records:
                    # Read ahead: the next batch is read and decoded while this one is handled
                    # (its database work mostly waits outside the interpreter lock). Handling
                    # and commits stay in order; what was read ahead and not handled when the
                    # worker stops is not committed, so it is delivered again.
                    ahead = self._poll()
                    await self.process(records)
                if time.monotonic() - last_housekeeping > 15:
                    last_housekeeping = time.monotonic()
                    for topic, lag in (await self.consumer.lag()).items():
                        telemetry.CONSUMER_LAG.labels(group=self.spec.group, topic=topic).set(lag)
                    await asyncio.to_thread(self._prune_inbox)
        except ConsumerStopped as exc:
            self.state.stopped_reason = str(exc)
            log.critical("%s", exc)
        finally:
            if ahead is not None:
                ahead.cancel()
                await asyncio.gather(ahead, return_exceptions=True)
            self.state.running = False
            await self.consumer.close()
