"""Batch attribution: a polled batch of raw interactions resolved with a handful of
bulk statements instead of several statements per interaction.

The common cases — a new author, or an author whose identifiers all belong to one
customer — are resolved in memory against identifiers fetched for the whole batch
in one query per identifier type, and their writes (customers, identifiers, timeline
entries, outbox rows, profile updates) go to the database in a few multi-row statements
per table at the end (``db.insert_rows``). Everything else (two customers in one
record: merges and suggestions; handles re-linked to another platform id; caps;
retractions) first flushes what is pending and then runs the one-event resolution of
:mod:`socialzone_identity.resolution`, so both paths give the same result and events
are applied in their order. After such an event only what it can have changed is read
again (its identifiers and the customers they lead to), so a batch with many of them
stays linear.

The hot path keeps no ORM object and no event model: each raw event is validated (a
malformed one fails the batch, and the worker retries it alone and dead-letters it),
the few values attribution needs are taken from the validated model, and the outgoing
events are written as the bytes ``to_structured`` would write, with the interaction
passed through as ingest recorded it. The attributed event's data is serialized once
and shared by its outbox envelope and its timeline entry.

On PostgreSQL the batch takes the advisory locks of all its identifiers (one global
order) and row-locks the customers they belong to before reading anything, so the
concurrency argument of the one-event path holds for the batch as a whole.

On SQLite, where a database has one writer at a time, the batch is resolved ahead, before
its transaction takes the writer turn (``prepare``, :class:`Speculation`): every read is
kept with its rows and the writes are held back. Under the turn the reads are repeated;
if each returns the same rows, the held-back writes are made (attribution computes them
from those rows alone); if one does not (another process of the group changed what it
read), the batch is resolved again under the turn. So two consumer processes resolve
batches at the same time and take turns only at writing them.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import orjson
import prometheus_client
from sqlalchemy import bindparam, func, select
from sqlmodel import Session

from socialzone_common import db, telemetry
from socialzone_common.envelope import Envelope, new_event_id, now_utc
from socialzone_common.events.ingest import InteractionRecorded
from socialzone_common.outbox import enqueue_structured, structured_row
from socialzone_identity import resolution, timeline
from socialzone_identity.identifiers import PLATFORM_TYPES, Normalized, type_strength
from socialzone_identity.models import Customer, IdentifierLink
from socialzone_identity.profile import display_name, observation, reconcile, search_text
from socialzone_identity.store import SOURCE, lock_identifiers, new_customer_id

log = logging.getLogger(__name__)
I = IdentifierLink.__table__
C = Customer.__table__

RECORDED = "ingest.interaction.recorded"
CREATED = "identity.customer.created"
LINKED = "identity.identifier.linked"
ATTRIBUTED = "identity.interaction.attributed"
CHUNK = 500  # values per IN (...) list

# Many "stale" batches mean the group's processes keep changing what the others read (the
# same customers in several processes' partitions): each such batch is resolved twice.
RESOLVED_AHEAD = prometheus_client.Counter(
    "socialzone_identity_batches_resolved_ahead_total",
    "Attribution batches resolved before taking the SQLite writer turn, by whether what they read "
    "still held under it (held: written as resolved; stale: resolved again)", ["outcome"])


def resolved_ahead(outcome: str) -> int:
    """This process's count of batches resolved ahead with ``outcome`` (``held``, ``stale``)."""
    value = prometheus_client.REGISTRY.get_sample_value("socialzone_identity_batches_resolved_ahead_total",
                                                        {"outcome": outcome})
    return int(value or 0)

_COUNTS = select(I.c.type, func.count().label("n")).where(I.c.customer_id == bindparam("cid")).group_by(I.c.type)

_IDENTIFIER_COLUMNS = ("type", "value", "customer_id", "origin_customer_id", "strength", "rule", "evidence_event_id",
                       "evidence_agent", "anchor_id", "linked_at", "last_seen_at")
_TIMELINE_COLUMNS = ("customer_id", "origin_customer_id", "via_identifier_id", "event_id", "event_type", "department",
                     "occurred_at", "summary", "channel", "interaction_id", "ref_id", "sentiment", "language", "amount",
                     "currency", "retracted", "event")
_CUSTOMER_COLUMNS = ("id", "status", "merged_into", "created_at", "updated_at", "created_from", "display_name",
                     "search_text", "profile", "needs_match")


class Ident:
    """A known identifier: its row id (None until inserted), customer, platform-id anchor and
    origin (the customer it was first linked to: an unmerge gives it back with that one)."""

    __slots__ = ("id", "customer_id", "anchor_id", "anchor_key", "origin")

    def __init__(self, row_id: int | None, customer_id: str, anchor_id: int | None = None,
                 anchor_key: tuple[str, str] | None = None, origin: str | None = None) -> None:
        self.id, self.customer_id, self.anchor_id, self.anchor_key = row_id, customer_id, anchor_id, anchor_key
        self.origin = origin or customer_id


class Cust:
    """A customer as the batch knows it (profile changes are written at the flush);
    ``created_at`` (new customers only) already in the stored form (:meth:`Sql.time`)."""

    __slots__ = ("id", "status", "merged_into", "created_at", "profile", "new", "rematch", "counts")

    def __init__(self, customer_id: str, status: str, merged_into: str | None, profile: dict | None, *,
                 created_at: datetime | str | None = None, new: bool = False, counts: dict[str, int] | None = None) -> None:
        self.id, self.status, self.merged_into, self.profile = customer_id, status, merged_into, profile
        self.created_at, self.new, self.rematch, self.counts = created_at, new, False, counts


class Parsed:
    """What attribution needs from one validated ``ingest.interaction.recorded``; ``at`` is
    ``occurred`` in the stored form (:meth:`Sql.time`, which depends on the database: filled
    in by ``resolve``), converted once for every row that carries it (the timeline entry, new
    identifiers, a new customer)."""

    __slots__ = ("ids", "keys", "vouched", "occurred", "at", "values", "kind")

    def __init__(self, ids: list[Normalized], vouched: bool, occurred: datetime, at: datetime | str | None, values: dict,
                 kind: str) -> None:
        self.ids, self.keys = ids, [(n.type, n.value) for n in ids]
        self.vouched, self.occurred, self.at, self.values, self.kind = vouched, occurred, at, values, kind


class Batch:
    def __init__(self) -> None:
        self.idents: dict[tuple[str, str], Ident] = {}
        self.customers: dict[str, Cust] = {}
        self.new_customers: list[Cust] = []
        self.dirty: dict[str, Cust] = {}
        # (type, value, customer, strength, rule, evidence event, linked at as stored, anchor key)
        self.new_idents: list[tuple] = []
        # (key of the identifier it came through or None, the row without via_identifier_id)
        self.timeline_rows: list[tuple[tuple[str, str] | None, tuple]] = []
        self.outbox_rows: list[tuple] = []

    def pending(self) -> bool:
        return bool(self.new_customers or self.new_idents or self.timeline_rows or self.outbox_rows or self.dirty)


class Sql:
    """Driver-level statements for the bulk writes (no statement compilation, no per-row
    processing by SQLAlchemy: the timeline and outbox rows are most of what attribution writes)."""

    def __init__(self, dialect: str) -> None:
        self.pg = pg = dialect == "postgresql"
        mark = "%s" if pg else "?"
        json_mark = "CAST(%s AS JSON)" if pg else "?"

        def marks(columns, json_columns=()):
            return ", ".join(json_mark if c in json_columns else mark for c in columns)

        self.mark = mark
        self.lookup = ("SELECT id, type, value, customer_id, anchor_id, origin_customer_id FROM identifiers "
                       "WHERE type = {m} AND value IN ({})")
        self.load = "SELECT id, status, merged_into, profile FROM customers WHERE id IN ({}) ORDER BY id" + (
            " FOR UPDATE" if pg else "")  # PostgreSQL: locked until the batch commits (see resolution.py)
        self.suppressed = "SELECT hash FROM suppressions WHERE hash IN ({})"
        self.any_suppressed = "SELECT 1 FROM suppressions LIMIT 1"
        self.true, self.false = (True, False) if pg else (1, 0)
        # (head, one row) for db.insert_rows: multi-row statements
        self.timeline = (f"INSERT INTO timeline ({', '.join(_TIMELINE_COLUMNS)}) VALUES",
                         f"({marks(_TIMELINE_COLUMNS, ('event',))})")
        self.customers = (f"INSERT INTO customers ({', '.join(_CUSTOMER_COLUMNS)}) VALUES",
                          f"({marks(_CUSTOMER_COLUMNS, ('profile',))})")
        self.identifiers = (f"INSERT INTO identifiers ({', '.join(_IDENTIFIER_COLUMNS)}) VALUES",
                            f"({marks(_IDENTIFIER_COLUMNS)})")
        self.anchor = f"UPDATE identifiers SET anchor_id = {mark} WHERE id = {mark}"
        # db.update_rows of (id, profile, display name, search text, updated at, rematch); never
        # clears needs_match: a profile not yet scored stays pending (matcher.match_pending)
        self.profile = ("profile = v.column2, display_name = v.column3, search_text = v.column4, "
                        "updated_at = v.column5, needs_match = (customers.needs_match OR v.column6)",
                        f"({mark}, {json_mark}, {mark}, {mark}, {mark}, {mark})")

    def time(self, value: datetime):
        """A UTC time as SQLAlchemy's DateTime stores it on SQLite; as is for psycopg."""
        if self.pg:
            return value
        if value.utcoffset():
            value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None).isoformat(" ", "microseconds")

    def marks(self, n: int) -> str:
        return ", ".join([self.mark] * n)

    def amount(self, value: Decimal | None):
        return value if self.pg or value is None else str(value)


class _Rows(list):
    """Rows read by :class:`_ReadLog`, answering as a result does."""

    def first(self):
        return self[0] if self else None

    def fetchall(self) -> list:
        return self


class _ReadLog:
    """The connection of a speculative resolution: each read goes through and is kept with
    the rows it returned (``reads``), to be repeated under the writer turn."""

    def __init__(self, conn) -> None:
        self.conn = conn
        self.reads: list[tuple[str, Any, Any, list]] = []

    def exec_driver_sql(self, statement: str, parameters=()) -> _Rows:
        rows = self.conn.exec_driver_sql(statement, parameters).fetchall()
        self.reads.append(("driver", statement, parameters, rows))
        return _Rows(rows)

    def execute(self, statement, parameters) -> _Rows:
        rows = self.conn.execute(statement, parameters).fetchall()
        self.reads.append(("core", statement, parameters, rows))
        return _Rows(rows)


class Speculation:
    """A batch resolved outside the writer turn (SQLite, :meth:`BatchResolver.prepare`): the
    events it was computed for, its writes (not made yet), its tally, and the reads it
    depends on. Attribution is a function of what it reads (new ids and the time aside), so
    if every read returns the same rows under the turn, the writes are the ones resolving
    again would make; if one does not, the batch is resolved again."""

    __slots__ = ("event_ids", "batch", "reads", "tally")

    def __init__(self, event_ids: list[str], batch: Batch, reads: list, tally: Counter) -> None:
        self.event_ids, self.batch, self.reads, self.tally = event_ids, batch, reads, tally

    def holds(self, conn) -> bool:
        for how, statement, parameters, rows in self.reads:
            result = conn.exec_driver_sql(statement, parameters) if how == "driver" else conn.execute(statement, parameters)
            if result.fetchall() != rows:
                return False
        return True


class Prepared:
    """What ``BatchResolver.prepare`` hands to ``resolve``: each interaction parsed (by event
    id) and, on SQLite, the speculation (None when the batch needs the one-event path)."""

    __slots__ = ("parsed", "speculation")

    def __init__(self, parsed: dict[str, Parsed], speculation: Speculation | None) -> None:
        self.parsed, self.speculation = parsed, speculation


def _platform_keys(ids: list[Normalized], keys: list[tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """The record's first identifier of each platform type: what its handles are anchored to
    (as ``resolution.platform_row`` picks it)."""
    platform: dict[str, tuple[str, str]] = {}
    for n, key in zip(ids, keys):
        if n.type in PLATFORM_TYPES:
            platform.setdefault(n.type, key)
    return platform


class BatchResolver:
    """``resolve(session, envelopes)`` for the batch consumer; same results as one by one."""

    def __init__(self, ctx: resolution.Context) -> None:
        self.ctx = ctx
        self._sql: Sql | None = None
        self.traceparent: str | None = None
        self.now: datetime = now_utc()

    def sql(self, session: Session) -> Sql:
        if self._sql is None:
            self._sql = Sql(session.get_bind().dialect.name)
        return self._sql

    # -- the batch -------------------------------------------------------------------------

    def prepare(self, session: Session, envelopes: list[Envelope]) -> Prepared:
        """The batch's work before it takes the writer turn (``ConsumerSpec.batch_prepare``),
        so that two consumer processes overlap it: each interaction validated and normalized
        and, on SQLite, the whole batch resolved speculatively (:meth:`_speculate`)."""
        parsed = {e.id: self._parse(e) for e in envelopes if e.type == RECORDED}
        speculation = None if self.sql(session).pg else self._speculate(session, envelopes, parsed)
        return Prepared(parsed, speculation)

    def _speculate(self, session: Session, envelopes: list[Envelope], parsed: dict[str, Parsed]) -> Speculation | None:
        """The batch resolved outside the writer turn, its writes kept for later, with every
        read they were computed from; None if an interaction needs the one-event path."""
        reads = _ReadLog(session.connection())
        batch, tally = Batch(), Counter()
        if not self._attribute(session, reads, envelopes, parsed, batch, tally, speculating=True):
            return None
        return Speculation([e.id for e in envelopes], batch, reads.reads, tally)

    def resolve(self, session: Session, envelopes: list[Envelope], prepared: Prepared | None = None) -> None:
        conn = session.connection()
        speculation = prepared.speculation if prepared is not None else None
        if speculation is not None:
            # Under the writer turn (taken here if the caller has not yet): if every read of
            # the speculation returns what it returned then, resolving again would compute
            # the same writes; make them.
            db.begin_writing(session)
            if speculation.event_ids == [e.id for e in envelopes] and speculation.holds(conn):
                self._flush(session, conn, speculation.batch)
                self._tally(speculation.tally)
                RESOLVED_AHEAD.labels(outcome="held").inc()
                return
            RESOLVED_AHEAD.labels(outcome="stale").inc()
        tally: Counter = Counter()
        self._attribute(session, conn, envelopes, prepared.parsed if prepared is not None else {}, Batch(), tally)
        self._tally(tally)

    def _attribute(self, session: Session, conn, envelopes: list[Envelope], prepared: dict[str, Parsed], batch: Batch,
                   tally: Counter, *, speculating: bool = False) -> bool:
        """Resolve ``envelopes`` into ``batch`` (``tally``: what became of them): in memory where
        it can, through the one-event path where it must. Speculating, nothing is locked or
        written, and it stops (False) at the first interaction that needs the one-event path."""
        sql = self.sql(session)
        rules = self.ctx.rules
        parsed: list[tuple[Envelope, Parsed | None]] = []
        every: set[Normalized] = set()
        for envelope in envelopes:
            if envelope.type != RECORDED:
                if speculating:
                    return False
                parsed.append((envelope, None))
                continue
            p = prepared.get(envelope.id)
            if p is None:
                p = self._parse(envelope)  # bad data: the batch fails, the event is retried alone, then DLQ
            if p.at is None:
                p.at = sql.time(p.occurred)
            parsed.append((envelope, p))
            every.update(p.ids)
        ordered = sorted(every, key=lambda n: n.key)
        if not speculating:
            lock_identifiers(session, ordered)
        suppressed = self._suppressed(conn, ordered)
        self._prefetch(session, conn, batch, ordered)
        self.traceparent = telemetry.current_traceparent()
        self.now = now_utc()
        for envelope, p in parsed:
            if p is not None:
                if not p.ids:
                    tally["unidentifiable"] += 1
                    continue
                if suppressed and any(rules.suppression_hash(n) in suppressed for n in p.ids):
                    tally["suppressed"] += 1
                    continue
                if self._fast(session, conn, batch, envelope, p, tally):
                    continue
            if speculating:
                return False
            self._slow(session, batch, envelope, p.ids if p is not None else ())
        if not speculating:
            self._flush(session, conn, batch)
        return True

    def _tally(self, tally: Counter) -> None:
        for what, n in tally.items():
            self.ctx.stats[what] = self.ctx.stats.get(what, 0) + n

    def _parse(self, envelope: Envelope) -> Parsed:
        """Validate the event (as the one-event path does) and keep only what attribution
        reads; the model is dropped at once (the interaction goes out as ingest wrote it)."""
        interaction = InteractionRecorded.model_validate(envelope.data).interaction
        ids, problems = resolution.normalize_all(self.ctx.rules, interaction.author.identifiers)
        if problems:
            log.info("interaction %s: ignored identifiers: %s", interaction.interaction_id, "; ".join(problems))
        if not ids:
            log.warning("interaction %s has no usable identifier; not attributed", interaction.interaction_id)
        values, kind = observation(interaction, crm_sources=self.ctx.crm_sources)
        occurred = interaction.occurred_at
        if occurred.utcoffset():
            occurred = occurred.astimezone(timezone.utc)
        return Parsed(ids, resolution.is_deterministic(interaction, self.ctx.crm_sources), occurred, None, values,
                      kind)

    def _suppressed(self, conn, ids: list[Normalized]) -> set[str]:
        """The suppression hashes of ``ids`` on the suppression list. The list is almost
        always empty: one probe then saves hashing every identifier of the batch and
        binding thousands of hashes to look up (an erasure committed after the probe is
        missed just as it would be after the look-up itself)."""
        sql = self._sql
        if conn.exec_driver_sql(sql.any_suppressed).first() is None:
            return set()
        hashes = [self.ctx.rules.suppression_hash(n) for n in ids]
        found: set[str] = set()
        for i in range(0, len(hashes), CHUNK):
            chunk = hashes[i:i + CHUNK]
            found.update(r[0] for r in conn.exec_driver_sql(sql.suppressed.format(sql.marks(len(chunk))),
                                                            tuple(chunk)))
        return found

    def _prefetch(self, session: Session, conn, batch: Batch, ids) -> set[str]:
        """Read the identifiers ``ids`` (one query per type) and the customers they belong
        to; returns those customers' ids."""
        by_type: dict[str, list[str]] = {}
        for n in ids:
            by_type.setdefault(n.type, []).append(n.value)
        idents = batch.idents
        sql = self._sql
        owners: set[str] = set()
        for kind, values in by_type.items():
            for i in range(0, len(values), CHUNK):
                chunk = values[i:i + CHUNK]
                statement = sql.lookup.format(sql.marks(len(chunk)), m=sql.mark)
                rows = conn.exec_driver_sql(statement, (kind, *chunk)).fetchall()  # faster than row by row
                for row_id, kind_, value, customer_id, anchor_id, origin in rows:
                    idents[(kind_, value)] = Ident(row_id, customer_id, anchor_id, origin=origin)
                    owners.add(customer_id)
        self._load_customers(session, conn, batch, owners)
        return owners

    def _load_customers(self, session: Session, conn, batch: Batch, ids) -> None:
        wanted = sorted(i for i in ids if i not in batch.customers)
        sql = self._sql
        loads = orjson.loads
        for i in range(0, len(wanted), CHUNK):
            chunk = wanted[i:i + CHUNK]
            rows = conn.exec_driver_sql(sql.load.format(sql.marks(len(chunk))), tuple(chunk)).fetchall()
            for cid, status, merged_into, profile in rows:
                if isinstance(profile, (str, bytes)):  # SQLite keeps JSON as text; psycopg decodes it
                    profile = loads(profile)
                batch.customers[cid] = Cust(cid, status, merged_into, profile)

    def _customer(self, session: Session, conn, batch: Batch, customer_id: str) -> Cust | None:
        """The active customer answering for ``customer_id`` (following merges), or None."""
        cust = batch.customers.get(customer_id)
        if cust is not None and cust.status == "active":
            return cust
        seen = set()
        while customer_id not in seen:
            seen.add(customer_id)
            if customer_id not in batch.customers:
                self._load_customers(session, conn, batch, (customer_id,))
            cust = batch.customers.get(customer_id)
            if cust is None:
                return None
            if cust.status == "merged" and cust.merged_into:
                customer_id = cust.merged_into
                continue
            return cust if cust.status == "active" else None
        return None

    def _counts(self, conn, cust: Cust) -> dict[str, int]:
        if cust.counts is None:
            cust.counts = {} if cust.new else {r.type: r.n for r in conn.execute(_COUNTS, {"cid": cust.id})}
        return cust.counts

    # -- one interaction -------------------------------------------------------------------

    def _fast(self, session: Session, conn, batch: Batch, envelope: Envelope, p: Parsed, tally: Counter) -> bool:
        """Resolve in memory; False when the interaction needs the one-event path."""
        idents = batch.idents
        ids, keys = p.ids, p.keys
        platform: dict[str, tuple[str, str]] | None = None
        evidence: list[tuple[Normalized, Ident]] = []
        new: list[Normalized] = []
        for n, key in zip(ids, keys):
            ident = idents.get(key)
            if ident is None:
                new.append(n)
                continue
            anchor_type = n.anchor_type
            if anchor_type is not None:
                if platform is None:
                    platform = _platform_keys(ids, keys)
                anchor_key = platform.get(anchor_type)
                if anchor_key is not None:
                    # a known handle next to its platform id: fine only if it is already tied to it
                    anchor_ident = idents.get(anchor_key)
                    if anchor_ident is None or not (ident.anchor_key == anchor_key or (
                            ident.anchor_id is not None and ident.anchor_id == anchor_ident.id)):
                        return False
                    mine = self._customer(session, conn, batch, ident.customer_id)
                    if mine is None or mine is not self._customer(session, conn, batch, anchor_ident.customer_id):
                        return False
                    continue
            evidence.append((n, ident))
        cust = None
        for _n, ident in evidence:
            found = self._customer(session, conn, batch, ident.customer_id)
            if found is None or (cust is not None and found is not cust):
                return False  # an erased customer, or a merge or suggestion: the one-event path decides
            cust = found
        occurred = p.occurred
        created = cust is None
        if created:
            cust = Cust(new_customer_id(), "active", None, None, created_at=p.at, new=True, counts={})
        if new:
            counts = self._counts(conn, cust)
            wanted: dict[str, int] = {}
            for n in new:
                wanted[n.type] = wanted.get(n.type, 0) + 1
            cap = self.ctx.rules.cap
            if any(counts.get(kind, 0) + k > cap(kind) for kind, k in wanted.items()):
                return False
        interaction = envelope.data["interaction"]
        sql = self.sql(session)
        at = p.at
        outbox = batch.outbox_rows
        cid = cust.id
        if created:
            batch.customers[cid] = cust
            batch.new_customers.append(cust)
            event_id = new_event_id()
            data = {"customer_id": cid, "created_from": "interaction",
                    "interaction_id": interaction["interaction_id"],
                    "display_name": interaction["author"].get("display_name")}
            body = orjson.dumps(data)
            outbox.append(self._outbox_row(CREATED, cid, event_id, body))
            batch.timeline_rows.append((None, (
                cid, cid, event_id, CREATED, "identity", at, timeline.summarize(CREATED, data),
                interaction["source"], interaction["interaction_id"], None, None, None, None, None, sql.false,
                body.decode())))
        matched_by = None
        if evidence:
            if len(evidence) > 1:
                vouched = p.vouched
                evidence.sort(key=lambda e: 0 if type_strength(e[0].type, vouched=vouched) == "strong" else 1)
            matched_by = evidence[0][0]
        if new:
            vouched = p.vouched
            rule = "new_customer" if created else ("deterministic_record" if vouched else "co_occurrence")
            # as resolution._link: new identifiers take the origin of the one the record came in through
            origin = evidence[0][1].origin if evidence else cid
            if len(new) > 1:
                new.sort(key=lambda n: 1 if n.anchor_type else 0)  # platform ids before their handles
            for n in new:
                strength = type_strength(n.type, vouched=vouched)
                anchor_key = None
                if n.anchor_type is not None:
                    if platform is None:
                        platform = _platform_keys(ids, keys)
                    anchor_key = platform.get(n.anchor_type)
                key = (n.type, n.value)
                batch.new_idents.append((n.type, n.value, cid, origin, strength, rule, envelope.id, at, anchor_key))
                idents[key] = Ident(None, cid, None, anchor_key, origin)
                counts[n.type] = counts.get(n.type, 0) + 1
                event_id = new_event_id()
                body = orjson.dumps({"customer_id": cid, "identifier": {"type": n.type, "value": n.value, "verified": None},
                                     "strength": strength, "rule": rule, "evidence_event_id": envelope.id})
                outbox.append(self._outbox_row(LINKED, cid, event_id, body))
        if p.values:
            profile, what = reconcile(cust.profile, p.values, kind=p.kind, at=occurred, origin=cid)
            if what:
                cust.profile = profile
                batch.dirty[cid] = cust
                if what == "value":
                    cust.rematch = True
        data = {"customer_id": cid, "interaction": interaction,
                "matched_by": ({"type": matched_by.type, "value": matched_by.value, "verified": None}
                               if matched_by else None),
                "merged_from": None}
        body = orjson.dumps(data)
        event_id = new_event_id()
        outbox.append(self._outbox_row(ATTRIBUTED, cid, event_id, body))
        via_key = (matched_by.type, matched_by.value) if matched_by else keys[0]
        batch.timeline_rows.append((via_key, self._interaction_row(sql, cid, event_id, data, interaction, at, body)))
        tally["created" if created else "attributed"] += 1
        return True

    def _outbox_row(self, event_type: str, customer_id: str, event_id: str, body: bytes) -> tuple:
        """The outbox row of one of identity's events (subject and partition key: the customer)."""
        return structured_row(event_type, source=SOURCE, subject=customer_id, data=body, time=self.now,
                              event_id=event_id, traceparent=self.traceparent)

    @staticmethod
    def _interaction_row(sql: Sql, cid: str, event_id: str, data: dict, interaction: dict, at, body: bytes) -> tuple:
        """:func:`timeline.interaction_row` as a driver row (without ``via_identifier_id``)."""
        enrichment = interaction.get("enrichment") or {}
        sentiment = (enrichment.get("sentiment") or {}).get("score")
        tx = interaction.get("transaction") or {}
        amount = tx.get("amount")
        currency = None
        if amount is not None:
            if tx.get("type") == "order":
                amount = Decimal(str(amount))
            elif tx.get("type") == "refund":
                amount = -abs(Decimal(str(amount)))
            else:
                amount = None
            currency = tx.get("currency") if amount is not None else None
        return (cid, cid, event_id, ATTRIBUTED, "interactions", at, timeline.summarize(ATTRIBUTED, data),
                interaction.get("source"), interaction.get("interaction_id"), None, sentiment,
                enrichment.get("language") or interaction.get("language"), sql.amount(amount), currency, sql.false,
                body.decode())

    def _slow(self, session: Session, batch: Batch, envelope: Envelope, ids) -> None:
        """The one-event path, after writing what is pending; then read again only what it
        can have changed: its identifiers and the customers they led and lead to (a merge
        moves the merged customer's identifiers, which the batch then follows through
        ``merged_into``; a re-linked handle is one of the event's identifiers)."""
        conn = session.connection()
        self._flush(session, conn, batch)
        if envelope.type == RECORDED:
            resolution.attribute(session, envelope, self.ctx)
        elif envelope.type == "ingest.interaction.retracted":
            resolution.retract(session, envelope)  # only the timeline changes
        session.flush()
        if not ids:
            return
        touched: set[str] = set()
        for n in ids:
            ident = batch.idents.pop((n.type, n.value), None)
            if ident is not None:
                touched.add(ident.customer_id)
        for cid in list(touched):  # and the survivors they were followed to
            seen = batch.customers.get(cid)
            while seen is not None and seen.merged_into and seen.merged_into not in touched:
                touched.add(seen.merged_into)
                seen = batch.customers.get(seen.merged_into)
        for cid in touched:
            batch.customers.pop(cid, None)
        touched |= self._prefetch(session, conn, batch, ids)
        self._load_customers(session, conn, batch, touched)

    # -- writing ---------------------------------------------------------------------------

    def _flush(self, session: Session, conn, batch: Batch) -> None:
        if not batch.pending():
            return
        sql = self.sql(session)
        now = self.now = now_utc()
        stamp = sql.time(now)
        if batch.new_customers:
            rows = []
            for cust in batch.new_customers:
                batch.dirty.pop(cust.id, None)
                profile = cust.profile
                rows.append((cust.id, "active", None, cust.created_at, stamp, "interaction",
                             display_name(profile) if profile else None, search_text(profile) if profile else None,
                             orjson.dumps(profile).decode() if profile else None, sql.true))
            db.insert_rows(conn, *sql.customers, rows)
        if batch.new_idents:
            self._insert_identifiers(conn, sql, batch)
        if batch.dirty:
            rows = [(c.id, orjson.dumps(c.profile).decode(), display_name(c.profile), search_text(c.profile), stamp,
                     sql.true if c.rematch else sql.false) for c in batch.dirty.values()]
            db.update_rows(conn, "customers", sql.profile[0], "id", sql.profile[1], rows)
            for c in batch.dirty.values():
                c.rematch = False
        if batch.timeline_rows:
            idents = batch.idents
            rows = []
            for via, row in batch.timeline_rows:
                ident = idents.get(via) if via is not None else None
                rows.append((row[0], row[1], ident.id if ident is not None else None) + row[2:])
            db.insert_rows(conn, *sql.timeline, rows)
        enqueue_structured(session, batch.outbox_rows)
        for cust in batch.new_customers:  # they now exist in the database like any other
            cust.new = False
        batch.new_customers.clear()
        batch.dirty.clear()
        batch.new_idents.clear()
        batch.timeline_rows.clear()
        batch.outbox_rows.clear()

    def _insert_identifiers(self, conn, sql: Sql, batch: Batch) -> None:
        """Multi-row INSERT ... RETURNING (``db.insert_rows``), then the handles' anchors
        (their platform id may be new in the same statement)."""
        idents = batch.idents
        new = batch.new_idents
        rows = []
        for kind, value, cid, origin, strength, rule, event_id, at, _anchor in new:
            rows.append((kind, value, cid, origin, strength, rule, event_id, None, None, at, at))
        for row_id, kind, value in db.insert_rows(conn, *sql.identifiers, rows, " RETURNING id, type, value"):
            idents[(kind, value)].id = row_id
        anchors = []
        for kind, value, *_rest, anchor_key in new:
            if anchor_key is not None:
                anchor = idents.get(anchor_key)
                if anchor is not None and anchor.id is not None:
                    ident = idents[(kind, value)]
                    ident.anchor_id = anchor.id
                    anchors.append((anchor.id, ident.id))
        if anchors:
            conn.exec_driver_sql(sql.anchor, anchors)
