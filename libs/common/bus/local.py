"""The embedded bus: a durable append-only log in one SQLite file.

What it keeps, like a small Kafka:
- ``log``: every message, per topic and partition, with a gap-free offset. The
  partition comes from a stable hash of the key, so one key stays in order.
- ``group_offsets``: the committed offset of each consumer group per partition.
- ``members``: live members of each group (heartbeats). Partitions are dealt
  round-robin over the sorted live members; a member that stops heartbeating
  loses its partitions to the others, which resume from the committed offset.

A message is acknowledged when its transaction has committed (WAL, fsync per
batch when ``synchronous=FULL``), so ``kill -9`` loses nothing acknowledged.
Several processes may share the file; they take turns at writing (``db.WriterTurn``).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
import uuid
import zlib
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import orjson

from socialzone_common.bus import (
    TYPE_HEADER, Bus, Consumer, OutgoingMessage, RawMessage, Record, StartFrom, StructuredMessage, decoded,
)
from socialzone_common.catalog import topic_partitions
from socialzone_common.db import SQLITE_CACHED_STATEMENTS, WriterTurn, multirow_statements
from socialzone_common.envelope import Headers, from_structured, to_structured
from socialzone_common.settings import LocalBusSettings

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
    seq INTEGER PRIMARY KEY,  -- append order; retention deletes a prefix of it
    topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL,
    key BLOB, headers BLOB, value BLOB, appended_at REAL NOT NULL,
    UNIQUE (topic, partition, offset));
CREATE TABLE IF NOT EXISTS heads (
    topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS topics (topic TEXT PRIMARY KEY, partitions INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS group_offsets (
    grp TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, committed INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, partition)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS groups (grp TEXT PRIMARY KEY, generation INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS members (
    grp TEXT NOT NULL, member TEXT NOT NULL, heartbeat REAL NOT NULL,
    PRIMARY KEY (grp, member)) WITHOUT ROWID;
"""


def partition_for(key: bytes | None, partitions: int) -> int:
    # crc32 is stable across processes and runs (Python's hash() is salted).
    return zlib.crc32(key or b"") % partitions


def _structured_record(headers: Headers, value: bytes | None):
    return from_structured(value or b"")


class _Log:
    """The SQLite file, used from worker threads through one connection and a lock."""

    def __init__(self, path: Path, synchronous: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # Two connections: in WAL mode a reader does not wait for the writer, so
        # consumers read while producers append (sqlite3 releases the GIL meanwhile).
        # the file's writer turn, among this process's threads and the other processes that
        # share the file (the all-in-one's consumer children, a group's members in several
        # processes): handed over at once, where SQLite's busy handler sleeps up to 100 ms
        self._lock = WriterTurn(str(path))
        self.synchronous = synchronous
        self._db = self._connect(path, synchronous)
        self._db.executescript(_SCHEMA)
        self._read_lock = threading.Lock()
        self._reader = self._connect(path, synchronous)
        self._partitions: dict[str, int] = {}

    @staticmethod
    def _connect(path: Path, synchronous: str) -> sqlite3.Connection:
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30,
                             cached_statements=SQLITE_CACHED_STATEMENTS)
        # Events are ~1 KiB: bigger pages fit more per page (measured: +30% appends).
        # Only takes effect when the file is created.
        db.execute("PRAGMA page_size=16384")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        return db

    def close(self) -> None:
        with self._lock, self._read_lock:
            self._db.close()
            self._reader.close()

    def partitions(self, topic: str) -> int:
        if topic not in self._partitions:
            with self._lock:
                row = self._db.execute("SELECT partitions FROM topics WHERE topic=?", (topic,)).fetchone()
                if row is None:
                    count = topic_partitions(topic)
                    self._db.execute("INSERT OR IGNORE INTO topics VALUES (?, ?)", (topic, count))
                    row = self._db.execute("SELECT partitions FROM topics WHERE topic=?", (topic,)).fetchone()
                self._partitions[topic] = row[0]
        return self._partitions[topic]

    def ensure_topic(self, topic: str, partitions: int) -> None:
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO topics VALUES (?, ?)", (topic, partitions))
        self._partitions.pop(topic, None)

    def append(self, rows: list[tuple[str, bytes | None, bytes, bytes | None]]) -> None:
        """Append (topic, key, headers, value) rows in one transaction."""
        placed = [(topic, partition_for(key, self.partitions(topic)), key, headers, value)
                  for topic, key, headers, value in rows]
        now = time.time()
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                heads: dict[tuple[str, int], int] = {}
                inserts = []
                for topic, partition, key, headers, value in placed:
                    tp = (topic, partition)
                    if tp not in heads:
                        row = db.execute("SELECT next_offset FROM heads WHERE topic=? AND partition=?",
                                         tp).fetchone()
                        heads[tp] = row[0] if row else 0
                    inserts.append((topic, partition, heads[tp], key, headers, value, now))
                    heads[tp] += 1
                for statement, parameters in multirow_statements(
                        "INSERT INTO log (topic, partition, offset, key, headers, value, appended_at) VALUES",
                        "(?, ?, ?, ?, ?, ?, ?)", inserts):  # one step per statement (see db.py)
                    db.execute(statement, parameters)
                db.executemany(
                    "INSERT INTO heads VALUES (?, ?, ?) ON CONFLICT (topic, partition) "
                    "DO UPDATE SET next_offset=excluded.next_offset",
                    [(t, p, n) for (t, p), n in heads.items()])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def read(self, topic: str, partition: int, offset: int, limit: int) -> list[tuple]:
        """Stored rows as they are (offset, key, headers, value): for tests and tools."""
        with self._read_lock:
            return self._reader.execute(
                "SELECT offset, key, headers, value FROM log WHERE topic=? AND partition=? AND offset>=? "
                "ORDER BY offset LIMIT ?", (topic, partition, offset, limit)).fetchall()

    def read_new(self, group: str, generation: int, positions: dict[tuple[str, int], int],
                 limit: int) -> list[tuple[str, int, tuple]] | None:
        """What a member polls, in one trip: None if the group's generation moved (the
        member must rebalance first); else up to ``limit`` rows from the partitions whose
        head is past the member's position. One query tells which partitions have news,
        so an idle member costs one query a poll, not one per partition."""
        topics = sorted({topic for topic, _ in positions})
        with self._read_lock:
            db = self._reader
            row = db.execute("SELECT generation FROM groups WHERE grp=?", (group,)).fetchone()
            if (row[0] if row else -1) != generation:
                return None
            if not topics:
                return []
            heads = db.execute(f"SELECT topic, partition, next_offset FROM heads WHERE topic IN "
                               f"({','.join('?' * len(topics))})", topics).fetchall()
            news = {(t, p) for t, p, head in heads if (t, p) in positions and head > positions[(t, p)]}
            out: list[tuple[str, int, tuple]] = []
            for tp in positions:  # in the order given (the consumer rotates it)
                budget = limit - len(out)
                if budget <= 0:
                    break
                if tp in news:
                    out.extend((tp[0], tp[1], r) for r in db.execute(
                        "SELECT offset, key, headers, value FROM log WHERE topic=? AND partition=? "
                        "AND offset>=? ORDER BY offset LIMIT ?", (tp[0], tp[1], positions[tp], budget)))
            return out

    def head(self, topic: str, partition: int) -> int:
        with self._read_lock:
            row = self._reader.execute("SELECT next_offset FROM heads WHERE topic=? AND partition=?",
                                   (topic, partition)).fetchone()
        return row[0] if row else 0

    def committed(self, group: str, topic: str) -> dict[int, int]:
        with self._read_lock:
            rows = self._reader.execute("SELECT partition, committed FROM group_offsets WHERE grp=? AND topic=?",
                                    (group, topic)).fetchall()
        return dict(rows)

    @contextmanager
    def _without_fsync(self):
        """For writes whose loss only means redelivery (offsets, heartbeats): with
        ``synchronous=FULL`` every commit would wait for an fsync while holding the
        write lock, and every consumer commits after every batch. In WAL mode these
        frames reach the disk with the next appended batch's fsync anyway; a
        killed process loses nothing either way (appends keep FULL)."""
        if self.synchronous == "NORMAL":
            yield
            return
        self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            yield
        finally:
            self._db.execute(f"PRAGMA synchronous={self.synchronous}")

    def commit(self, group: str, offsets: dict[tuple[str, int], int]) -> None:
        with self._lock, self._without_fsync():
            # Forward only: a member that lost a partition cannot move it backwards
            # past what its successor already committed (that would only redeliver).
            self._db.executemany(
                "INSERT INTO group_offsets VALUES (?, ?, ?, ?) ON CONFLICT (grp, topic, partition) "
                "DO UPDATE SET committed=max(committed, excluded.committed)",
                [(group, t, p, o) for (t, p), o in offsets.items()])

    def heartbeat(self, group: str, member: str, session_timeout: float) -> tuple[int, list[str]]:
        """Record that ``member`` is alive, expire silent members; return the group's
        generation (bumped on every membership change) and its live members, sorted."""
        now = time.time()
        with self._lock, self._without_fsync():
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                joined = db.execute("UPDATE members SET heartbeat=? WHERE grp=? AND member=?",
                                    (now, group, member)).rowcount == 0
                if joined:
                    db.execute("INSERT INTO members VALUES (?, ?, ?)", (group, member, now))
                expired = db.execute("DELETE FROM members WHERE grp=? AND heartbeat<?",
                                     (group, now - session_timeout)).rowcount
                db.execute("INSERT INTO groups VALUES (?, 0) ON CONFLICT (grp) DO UPDATE "
                           "SET generation=generation+?", (group, int(joined or expired > 0)))
                generation = db.execute("SELECT generation FROM groups WHERE grp=?", (group,)).fetchone()[0]
                rows = db.execute("SELECT member FROM members WHERE grp=? ORDER BY member", (group,)).fetchall()
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return generation, [r[0] for r in rows]

    def generation(self, group: str) -> int:
        with self._read_lock:
            row = self._reader.execute("SELECT generation FROM groups WHERE grp=?", (group,)).fetchone()
        return row[0] if row else -1

    def leave(self, group: str, member: str, *, forget_group: bool = False) -> None:
        with self._lock:
            if self._db.execute("DELETE FROM members WHERE grp=? AND member=?", (group, member)).rowcount:
                self._db.execute("UPDATE groups SET generation=generation+1 WHERE grp=?", (group,))
            if forget_group:
                self._db.execute("DELETE FROM group_offsets WHERE grp=?", (group,))
                self._db.execute("DELETE FROM groups WHERE grp=?", (group,))

    def prune(self, older_than: float) -> int:
        """Delete the messages appended before ``older_than``: a prefix of ``seq``, found
        by binary search (appended_at grows with seq), so no index on time is needed."""
        with self._lock:
            db = self._db
            low, high = db.execute("SELECT min(seq), max(seq) FROM log").fetchone()
            if low is None:
                return 0
            cut = low  # the first seq to keep
            while low <= high:
                middle = (low + high) // 2
                row = db.execute("SELECT seq, appended_at FROM log WHERE seq>=? ORDER BY seq LIMIT 1",
                                 (middle,)).fetchone()
                if row is None or row[1] >= older_than:
                    high = middle - 1
                else:
                    cut, low = row[0] + 1, row[0] + 1
            return db.execute("DELETE FROM log WHERE seq<?", (cut,)).rowcount

    def ping(self) -> None:
        with self._read_lock:
            self._reader.execute("SELECT 1").fetchone()


class LocalBus(Bus):
    kind = "local"

    def __init__(self, settings: LocalBusSettings, path: Path) -> None:
        self.settings = settings
        self.path = path
        self._log: _Log | None = None
        self._appended: asyncio.Condition | None = None
        self._pruner: asyncio.Task | None = None

    @property
    def store(self) -> _Log:
        if self._log is None:
            raise RuntimeError("the local bus is not started")
        return self._log

    async def start(self) -> None:
        if self._log is None:
            self._log = await asyncio.to_thread(_Log, self.path, self.settings.synchronous)
            self._appended = asyncio.Condition()
            self._pruner = asyncio.create_task(self._prune_forever(), name="local-bus-retention")

    async def close(self) -> None:
        if self._pruner:
            self._pruner.cancel()
            await asyncio.gather(self._pruner, return_exceptions=True)
            self._pruner = None
        if self._log is not None:
            self._log.close()
            self._log = None

    async def publish(self, messages: Sequence[OutgoingMessage | StructuredMessage | RawMessage]) -> None:
        if not messages:
            return
        rows = []
        for message in messages:
            # Events carry their type in a header too, as in Kafka's binary mode, so that a
            # consumer skips the types it does not handle without decoding them.
            if isinstance(message, StructuredMessage):
                rows.append((message.topic, message.key, _type_header(message.event_type), message.value))
            elif isinstance(message, OutgoingMessage):
                headers = [(TYPE_HEADER, message.envelope.type.encode()), *message.headers]
                rows.append((message.topic, message.envelope.partitionkey.encode(),
                             _encode_headers(headers), to_structured(message.envelope)))
            else:
                rows.append((message.topic, message.key, _encode_headers(message.headers), message.value))
        await asyncio.to_thread(self.store.append, rows)
        await self.notify()

    async def notify(self) -> None:
        if self._appended is not None:
            async with self._appended:
                self._appended.notify_all()

    async def wait_for_append(self, timeout: float) -> None:
        assert self._appended is not None
        async with self._appended:
            try:
                await asyncio.wait_for(self._appended.wait(), timeout)
            except asyncio.TimeoutError:
                pass

    def consumer(self, *, group: str, topics: Sequence[str], start_from: StartFrom = "earliest",
                 client_id: str | None = None, ephemeral: bool = False,
                 types: frozenset[str] | None = None) -> Consumer:
        return LocalConsumer(self, group=group, topics=list(topics), start_from=start_from,
                             member=f"{client_id or 'member'}-{uuid.uuid4().hex[:12]}", ephemeral=ephemeral,
                             types=types)

    async def ping(self) -> None:
        await asyncio.to_thread(self.store.ping)

    async def ensure_topics(self, topics: dict[str, int]) -> None:
        for name, partitions in topics.items():
            await asyncio.to_thread(self.store.ensure_topic, name, partitions)

    async def prune(self) -> int:
        cutoff = time.time() - self.settings.retention_hours * 3600
        return await asyncio.to_thread(self.store.prune, cutoff)

    async def _prune_forever(self) -> None:
        while True:
            try:
                removed = await self.prune()
                if removed:
                    log.info("local bus retention removed %d messages", removed)
            except Exception:  # keep the bus alive; retention is housekeeping
                log.exception("local bus retention failed")
            await asyncio.sleep(60)


def _described(assignment: list[tuple[str, int]]) -> str:
    """``zone.care [0, 2]; zone.sales [1]`` (what a member's log line says it has)."""
    by_topic: dict[str, list[str]] = {}
    for topic, partition in assignment:
        by_topic.setdefault(topic, []).append(str(partition))
    return "; ".join(f"{topic} [{', '.join(parts)}]" for topic, parts in sorted(by_topic.items())) or "no partitions"


def _encode_headers(headers: Headers) -> bytes | None:
    # latin-1 maps every byte to one code point, so arbitrary header bytes survive JSON.
    return orjson.dumps([[k, v.decode("latin-1")] for k, v in headers]) if headers else None


def _type_header(event_type: str) -> bytes:
    return orjson.dumps([[TYPE_HEADER, event_type]])


def _headers(raw: bytes | None) -> Headers:
    if not raw:
        return []
    return [(k, v.encode("latin-1")) for k, v in orjson.loads(raw) or []]


class LocalConsumer(Consumer):
    """One member of a group on the local log."""

    HEARTBEAT_EVERY_S = 1.0
    IDLE_RECHECK_S = 0.05  # other processes may append: look again this often

    def __init__(self, bus: LocalBus, *, group: str, topics: list[str], start_from: StartFrom,
                 member: str, ephemeral: bool = False, types: frozenset[str] | None = None) -> None:
        self.bus, self.group, self.topics, self.start_from, self.member = bus, group, topics, start_from, member
        self.ephemeral, self.types = ephemeral, types
        self._assigned: list[tuple[str, int]] = []
        self._positions: dict[tuple[str, int], int] = {}
        self._generation = -1
        self._last_heartbeat = 0.0
        self._closed = False
        self._turn = 0  # the partition the next poll starts at

    async def start(self) -> None:
        await self._rebalance(force=True)

    async def _rebalance(self, *, force: bool = False) -> None:
        """Heartbeat now and then; recompute the assignment whenever the group's
        generation moved (``poll`` checks it on every read, so members agree quickly)."""
        now = time.monotonic()
        store = self.bus.store
        if not force and now - self._last_heartbeat < self.HEARTBEAT_EVERY_S:
            return
        self._last_heartbeat = now
        self._generation, members = await asyncio.to_thread(
            store.heartbeat, self.group, self.member, self.bus.settings.session_timeout_s)
        if self.member not in members:  # expired while we were away: heartbeat re-joined us
            return
        everything = [(t, p) for t in sorted(self.topics) for p in range(store.partitions(t))]
        mine = [tp for i, tp in enumerate(everything) if members[i % len(members)] == self.member]
        if mine == self._assigned:
            return
        # Newly assigned partitions start at the group's committed offset; the
        # records we had read but not committed on revoked ones go to their new owner.
        positions = {}
        for topic in {t for t, _ in mine}:
            committed = await asyncio.to_thread(store.committed, self.group, topic)
            for t, p in mine:
                if t != topic:
                    continue
                if (t, p) in self._positions:
                    positions[(t, p)] = self._positions[(t, p)]
                elif p in committed:
                    positions[(t, p)] = committed[p]
                elif self.start_from == "latest":
                    positions[(t, p)] = await asyncio.to_thread(store.head, t, p)
                    await asyncio.to_thread(store.commit, self.group, {(t, p): positions[(t, p)]})
                else:
                    positions[(t, p)] = 0
        self._assigned, self._positions = mine, {tp: positions[tp] for tp in mine}
        log.info("group %s: member %s (of %d) has %s", self.group, self.member, len(members), _described(mine))

    @property
    def assignment(self) -> list[tuple[str, int]]:
        return list(self._assigned)

    async def poll(self, *, max_records: int = 500, timeout: float = 1.0) -> list[Record]:
        deadline = time.monotonic() + timeout
        while True:
            await self._rebalance()
            records = await asyncio.to_thread(self._read, max_records)
            if records is None:  # the group changed: take the new assignment, then read
                await self._rebalance(force=True)
                continue
            remaining = deadline - time.monotonic()
            if records or remaining <= 0 or self._closed:
                return records
            await self.bus.wait_for_append(min(remaining, self.IDLE_RECHECK_S))

    def _read(self, max_records: int) -> list[Record] | None:
        # Each poll starts at the next partition: a first partition that always has more
        # than a batch must not keep the others waiting (a group that fell behind on one
        # topic read nothing of its second one until it caught up).
        order = list(self._positions)
        if order:
            self._turn = (self._turn + 1) % len(order)
            order = order[self._turn:] + order[:self._turn]
        rows = self.bus.store.read_new(self.group, self._generation, {tp: self._positions[tp] for tp in order},
                                       max_records)
        if rows is None:
            return None
        records: list[Record] = []
        for topic, partition, (offset, key, headers, value) in rows:
            records.append(decoded(_structured_record, topic, partition, offset, key, value, _headers(headers),
                                   self.types))
            self._positions[(topic, partition)] = offset + 1
        return records

    async def commit(self, records: Sequence[Record]) -> None:
        offsets: dict[tuple[str, int], int] = {}
        for r in records:
            tp = (r.topic, r.partition)
            offsets[tp] = max(offsets.get(tp, 0), r.offset + 1)
        if offsets:
            await asyncio.to_thread(self.bus.store.commit, self.group, offsets)

    async def lag(self) -> dict[str, int]:
        store = self.bus.store
        result: dict[str, int] = {}
        for topic in self.topics:
            committed = await asyncio.to_thread(store.committed, self.group, topic)
            total = 0
            for t, p in self._assigned:
                if t == topic:
                    total += max(0, await asyncio.to_thread(store.head, t, p) - committed.get(p, 0))
            result[topic] = total
        return result

    async def close(self) -> None:
        self._closed = True
        if self.bus._log is not None:
            await asyncio.to_thread(self.bus.store.leave, self.group, self.member, forget_group=self.ephemeral)
