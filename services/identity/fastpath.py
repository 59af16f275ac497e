"""Batch attribution: a polled batch of raw interactions resolved with a handful of
bulk statements instead of several statements per interaction.

The common cases — a new author, or an author whose identifiers all belong to one
customer — are resolved in memory against identifiers fetched for the whole batch
in one query, and their writes (customers, identifiers, timeline entries, outbox
rows, profile updates) go to the database in bulk at the end. Everything else (two
customers in one record: merges and suggestions; handles re-linked to another
platform id; caps; retractions) first flushes what is pending and then runs the
one-event resolution of :mod:`socialzone_identity.resolution`, so both paths give
the same result and events are applied in their order.

On PostgreSQL the batch takes the advisory locks of all its identifiers (one global
order) and row-locks the customers they belong to before reading anything, so the
concurrency argument of the one-event path holds for the batch as a whole.
"""

from __future__ import annotations

import logging

import orjson
from dataclasses import dataclass, field
from datetime import timezone
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlmodel import Session

from socialzone_common import telemetry
from socialzone_common.catalog import entry_for
from socialzone_common.envelope import Envelope, new_event_id, now_utc
from socialzone_common.events.ingest import InteractionRecorded
from socialzone_common.outbox import OUTBOX_PENDING_FLAG
from socialzone_identity import resolution, timeline
from socialzone_identity.identifiers import PLATFORM_TYPES, Normalized, type_strength
from socialzone_identity.models import Customer, IdentifierLink, Suppression
from socialzone_identity.profile import apply_profile, observation, reconcile
from socialzone_identity.store import SOURCE, is_postgres, lock_identifiers, new_customer_id

log = logging.getLogger(__name__)
I = IdentifierLink.__table__
C = Customer.__table__
T = timeline.T

_LOOKUP = select(I.c.id, I.c.type, I.c.value, I.c.customer_id, I.c.anchor_id).where(
    I.c.type == bindparam("t"), I.c.value.in_(bindparam("vs", expanding=True)))
_CUSTOMERS = select(C.c.id, C.c.status, C.c.merged_into, C.c.created_at, C.c.profile).where(
    C.c.id.in_(bindparam("ids", expanding=True))).order_by(C.c.id)
_SUPPRESSED = select(Suppression.__table__.c.hash).where(
    Suppression.__table__.c.hash.in_(bindparam("hs", expanding=True)))
_INSERT_IDENTIFIER = insert(I).returning(I.c.id, sort_by_parameter_order=True)
_SET_ANCHOR = update(I).where(I.c.id == bindparam("row_id")).values(anchor_id=bindparam("anchor"))
_SET_PROFILE = update(C).where(C.c.id == bindparam("cid")).values(
    profile=bindparam("profile"), display_name=bindparam("display_name"), search_text=bindparam("search_text"),
    updated_at=bindparam("updated_at"), needs_match=bindparam("rematch"))
_COUNTS = select(I.c.type, func.count().label("n")).where(I.c.customer_id == bindparam("cid")).group_by(I.c.type)


@dataclass
class Ident:
    id: int | None
    customer_id: str
    anchor_id: int | None = None
    anchor_key: tuple[str, str] | None = None


@dataclass
class Cust:
    id: str
    status: str
    merged_into: str | None
    created_at: Any
    profile: dict | None
    new: bool = False
    dirty: bool = False
    rematch: bool = False
    counts: dict[str, int] | None = None


@dataclass
class Batch:
    idents: dict[tuple[str, str], Ident] = field(default_factory=dict)
    customers: dict[str, Cust] = field(default_factory=dict)
    new_customers: list[str] = field(default_factory=list)
    new_idents: list[dict] = field(default_factory=list)
    timeline_rows: list[dict] = field(default_factory=list)
    outbox_rows: list[dict] = field(default_factory=list)

    def pending(self) -> bool:
        return bool(self.new_customers or self.new_idents or self.timeline_rows or self.outbox_rows
                    or any(c.dirty for c in self.customers.values()))


@dataclass(slots=True)
class Out:
    """An event for the outbox, built without the pydantic envelope (the hot path)."""

    id: str
    type: str
    subject: str
    data: dict


def _event(event_type: str, data: dict, subject: str) -> Out:
    return Out(new_event_id(), event_type, subject, data)


_SCHEMAS: dict[str, tuple[str, str]] = {}


def _schema(event_type: str) -> tuple[str, str]:
    found = _SCHEMAS.get(event_type)
    if found is None:
        entry = entry_for(event_type)
        found = _SCHEMAS[event_type] = (entry.dataschema, entry.topic.name)
    return found


def _structured(out: Out, now, traceparent: str | None) -> bytes:
    """Exactly what ``socialzone_common.envelope.to_structured`` writes for this event."""
    dataschema, _topic = _schema(out.type)
    body = {"id": out.id, "source": SOURCE, "specversion": "1.0", "type": out.type, "subject": out.subject,
            "time": now, "datacontenttype": "application/json", "dataschema": dataschema,
            "partitionkey": out.subject}
    if traceparent:
        body["traceparent"] = traceparent
    body["data"] = out.data
    return orjson.dumps(body, option=orjson.OPT_UTC_Z)


class Raw:
    """Bulk inserts through the driver (no statement compilation, no per-row processing):
    the timeline and outbox rows of a batch are most of what attribution writes."""

    def __init__(self, dialect: str) -> None:
        self.pg = dialect == "postgresql"
        mark = "%s" if self.pg else "?"
        json_mark = "CAST(%s AS JSON)" if self.pg else "?"
        self.outbox_sql = (f"INSERT INTO outbox (event_id, event_type, topic, partition_key, envelope, created_at, "
                           f"attempts) VALUES ({', '.join([mark] * 6)}, 0)")
        columns = ("customer_id", "origin_customer_id", "via_identifier_id", "event_id", "event_type", "department",
                   "occurred_at", "summary", "channel", "interaction_id", "ref_id", "sentiment", "language", "amount",
                   "currency", "retracted", "event")
        self.timeline_columns = columns
        self.timeline_sql = (f"INSERT INTO timeline ({', '.join(columns)}) VALUES "
                             f"({', '.join([mark] * (len(columns) - 1) + [json_mark])})")

    def time(self, value):
        if self.pg:
            return value
        value = value.astimezone(timezone.utc)
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")

    def timeline_row(self, row: dict) -> tuple:
        values = []
        for column in self.timeline_columns:
            value = row.get(column)
            if column == "occurred_at":
                value = self.time(value)
            elif column == "event":
                value = orjson.dumps(value).decode() if value is not None else None
            elif column == "amount" and value is not None:
                value = value if self.pg else str(value)
            elif column == "retracted":
                value = bool(value) if self.pg else int(bool(value))
            values.append(value)
        return tuple(values)


class BatchResolver:
    """``resolve(session, envelopes)`` for the batch consumer; same results as one by one."""

    def __init__(self, ctx: resolution.Context) -> None:
        self.ctx = ctx
        self._raw: Raw | None = None
        self.traceparent: str | None = None

    def raw(self, session: Session) -> Raw:
        if self._raw is None:
            self._raw = Raw(session.get_bind().dialect.name)
        return self._raw

    # -- the batch -------------------------------------------------------------------------

    def resolve(self, session: Session, envelopes: list[Envelope]) -> None:
        conn = session.connection()
        parsed: list[tuple[Envelope, Any, list[Normalized]]] = []
        for envelope in envelopes:
            if envelope.type != "ingest.interaction.recorded":
                parsed.append((envelope, None, []))
                continue
            interaction = InteractionRecorded.model_validate(envelope.data).interaction  # bad data: retried, DLQ
            ids, _problems = resolution.normalize_all(self.ctx.rules, interaction.author.identifiers)
            parsed.append((envelope, interaction, ids))
        every = sorted({n for _, _, ids in parsed for n in ids}, key=lambda n: n.key)
        self._every = every
        lock_identifiers(session, every)
        batch = Batch()
        suppressed = self._suppressed(conn, every)
        self._prefetch(session, conn, batch, every)
        self.traceparent = telemetry.current_traceparent()
        for envelope, interaction, ids in parsed:
            if interaction is None:
                self._slow(session, batch, envelope)
                continue
            if not ids:
                self.ctx.count("unidentifiable")
                continue
            if any(self.ctx.rules.suppression_hash(n) in suppressed for n in ids):
                self.ctx.count("suppressed")
                continue
            if not self._fast(session, conn, batch, envelope, interaction, ids):
                self._slow(session, batch, envelope)
        self._flush(session, conn, batch)

    def _suppressed(self, conn, ids: list[Normalized]) -> set[str]:
        hashes = [self.ctx.rules.suppression_hash(n) for n in ids]
        found: set[str] = set()
        for i in range(0, len(hashes), 500):
            found.update(conn.execute(_SUPPRESSED, {"hs": hashes[i:i + 500]}).scalars())
        return found

    def _prefetch(self, session: Session, conn, batch: Batch, ids: list[Normalized]) -> None:
        by_type: dict[str, list[str]] = {}
        for n in ids:
            by_type.setdefault(n.type, []).append(n.value)
        for kind, values in by_type.items():
            for i in range(0, len(values), 500):
                for row in conn.execute(_LOOKUP, {"t": kind, "vs": values[i:i + 500]}):
                    batch.idents[(row.type, row.value)] = Ident(row.id, row.customer_id, row.anchor_id)
        self._load_customers(session, conn, batch, {i.customer_id for i in batch.idents.values()})

    def _load_customers(self, session: Session, conn, batch: Batch, ids: set[str]) -> None:
        wanted = sorted(i for i in ids if i not in batch.customers)
        statement = _CUSTOMERS.with_for_update() if is_postgres(session) else _CUSTOMERS
        for i in range(0, len(wanted), 500):
            for row in conn.execute(statement, {"ids": wanted[i:i + 500]}):
                batch.customers[row.id] = Cust(row.id, row.status, row.merged_into, row.created_at, row.profile)

    def _customer(self, session: Session, conn, batch: Batch, customer_id: str) -> Cust | None:
        seen = set()
        while customer_id not in seen:
            seen.add(customer_id)
            if customer_id not in batch.customers:
                self._load_customers(session, conn, batch, {customer_id})
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
            if cust.new:
                cust.counts = {}
            else:
                cust.counts = {r.type: r.n for r in conn.execute(_COUNTS, {"cid": cust.id})}
        return cust.counts

    # -- one interaction -------------------------------------------------------------------

    def _fast(self, session: Session, conn, batch: Batch, envelope: Envelope, interaction, ids: list[Normalized]) -> bool:
        """Resolve in memory; False when the interaction needs the one-event path."""
        vouched = resolution.is_deterministic(interaction, self.ctx.crm_sources)
        platform = {n.type: n for n in ids if n.type in PLATFORM_TYPES}
        evidence: list[tuple[Normalized, Ident]] = []
        for n in ids:
            ident = batch.idents.get((n.type, n.value))
            if ident is None:
                continue
            if n.anchor_type is not None and n.anchor_type in platform:
                # a known handle next to its platform id: fine only if it is already tied to it
                anchor = platform[n.anchor_type]
                anchor_ident = batch.idents.get((anchor.type, anchor.value))
                if anchor_ident is None or ident.customer_id != anchor_ident.customer_id or not (
                        ident.anchor_key == (anchor.type, anchor.value)
                        or (ident.anchor_id is not None and ident.anchor_id == anchor_ident.id)):
                    return False
                continue
            evidence.append((n, ident))
        customers = set()
        for _n, ident in evidence:
            cust = self._customer(session, conn, batch, ident.customer_id)
            if cust is None:
                return False
            customers.add(cust.id)
        if len(customers) > 1:
            return False  # merge or suggestion: the one-event path decides
        occurred = interaction.occurred_at.astimezone(timezone.utc)
        created = not customers
        if created:
            cust = Cust(new_customer_id(), "active", None, occurred, None, new=True, counts={})
            batch.customers[cust.id] = cust
            batch.new_customers.append(cust.id)
        else:
            cust = batch.customers[next(iter(customers))]
        new = [n for n in ids if (n.type, n.value) not in batch.idents]
        counts = self._counts(conn, cust) if new else {}
        wanted: dict[str, int] = {}
        for n in new:
            wanted[n.type] = wanted.get(n.type, 0) + 1
        if any(counts.get(kind, 0) + k > self.ctx.rules.cap(kind) for kind, k in wanted.items()):
            if created:
                batch.customers.pop(cust.id)
                batch.new_customers.pop()
            return False
        strength_rule = "new_customer" if created else ("deterministic_record" if vouched else "co_occurrence")
        events: list[Out] = []
        if created:
            events.append(_event("identity.customer.created", {
                "customer_id": cust.id, "created_from": "interaction", "interaction_id": interaction.interaction_id,
                "display_name": interaction.author.display_name}, cust.id))
            batch.timeline_rows.append(dict(
                customer_id=cust.id, origin_customer_id=cust.id, via_identifier_id=None, event_id=events[0].id,
                event_type="identity.customer.created", department="identity", occurred_at=occurred,
                summary=timeline.summarize("identity.customer.created", events[0].data), channel=interaction.source,
                interaction_id=interaction.interaction_id, ref_id=None, sentiment=None, language=None, amount=None,
                currency=None, retracted=False, event=events[0].data))
        for n in sorted(new, key=lambda n: 1 if n.anchor_type else 0):
            strength = type_strength(n.type, vouched=vouched)
            anchor_key = None
            if n.anchor_type and n.anchor_type in platform:
                anchor_key = (n.anchor_type, platform[n.anchor_type].value)
            batch.new_idents.append(dict(type=n.type, value=n.value, customer_id=cust.id, origin_customer_id=cust.id,
                                         strength=strength, rule=strength_rule, evidence_event_id=envelope.id,
                                         evidence_agent=None, anchor_id=None, linked_at=occurred,
                                         last_seen_at=occurred, _anchor=anchor_key))
            batch.idents[(n.type, n.value)] = Ident(None, cust.id, None, anchor_key)
            counts[n.type] = counts.get(n.type, 0) + 1
            events.append(_event("identity.identifier.linked", {
                "customer_id": cust.id, "identifier": {"type": n.type, "value": n.value}, "strength": strength,
                "rule": strength_rule, "evidence_event_id": envelope.id}, cust.id))
        values, kind = observation(interaction, crm_sources=self.ctx.crm_sources)
        if values:
            profile, what = reconcile(cust.profile, values, kind=kind, at=occurred, origin=cust.id)
            if what:
                cust.profile, cust.dirty = profile, True
                cust.rematch = cust.rematch or what == "value"
        matched_by = evidence[0][0] if evidence else None
        if evidence:
            evidence.sort(key=lambda e: 0 if type_strength(e[0].type, vouched=vouched) == "strong" else 1)
            matched_by = evidence[0][0]
        data = {"customer_id": cust.id, "interaction": envelope.data["interaction"],
                "matched_by": {"type": matched_by.type, "value": matched_by.value} if matched_by else None,
                "merged_from": None}
        attributed = _event("identity.interaction.attributed", data, cust.id)
        events.append(attributed)
        via_key = (matched_by.type, matched_by.value) if matched_by else (ids[0].type, ids[0].value)
        row = timeline.interaction_row(customer_id=cust.id, origin=cust.id, via=None, envelope_id=attributed.id,
                                       data=data, interaction=data["interaction"], occurred_at=occurred)
        row["_via"] = via_key
        batch.timeline_rows.append(row)
        batch.outbox_rows.extend(events)
        self.ctx.count("created" if created else "attributed")
        return True

    def _slow(self, session: Session, batch: Batch, envelope: Envelope) -> None:
        conn = session.connection()
        self._flush(session, conn, batch)
        if envelope.type == "ingest.interaction.recorded":
            resolution.attribute(session, envelope, self.ctx)
        elif envelope.type == "ingest.interaction.retracted":
            resolution.retract(session, envelope)
        session.flush()
        # the one-event path may have merged or re-linked: forget what we knew
        batch.idents.clear()
        batch.customers.clear()
        self._prefetch(session, conn, batch, self._every)

    # -- writing ---------------------------------------------------------------------------

    def _flush(self, session: Session, conn, batch: Batch) -> None:
        if not batch.pending():
            return
        if batch.new_customers:
            rows = []
            for cid in batch.new_customers:
                cust = batch.customers[cid]
                view = apply_profile(None, cust.profile) if cust.profile else {"profile": None, "display_name": None,
                                                                                 "search_text": None}
                rows.append(dict(id=cid, status="active", merged_into=None, created_at=cust.created_at,
                                 updated_at=now_utc(), created_from="interaction", needs_match=True, **view))
                cust.dirty = False
            conn.execute(insert(C), rows)
        if batch.new_idents:
            rows = [{k: v for k, v in r.items() if not k.startswith("_")} for r in batch.new_idents]
            new_ids = conn.execute(_INSERT_IDENTIFIER, rows).scalars().all()
            for r, row_id in zip(batch.new_idents, new_ids):
                batch.idents[(r["type"], r["value"])].id = row_id
            anchors = []
            for r, row_id in zip(batch.new_idents, new_ids):
                if r["_anchor"] is not None and r["_anchor"] in batch.idents:
                    anchors.append({"row_id": row_id, "anchor": batch.idents[r["_anchor"]].id})
                    batch.idents[(r["type"], r["value"])].anchor_id = anchors[-1]["anchor"]
            if anchors:
                conn.execute(_SET_ANCHOR, anchors)
        dirty = [c for c in batch.customers.values() if c.dirty]
        if dirty:
            now = now_utc()
            conn.execute(_SET_PROFILE, [dict(cid=c.id, updated_at=now, rematch=c.rematch,
                                             **apply_profile(None, c.profile)) for c in dirty])
            for c in dirty:
                c.dirty = c.rematch = False
        raw = self.raw(session)
        if batch.timeline_rows:
            rows = []
            for r in batch.timeline_rows:
                via = r.pop("_via", None)
                if via is not None:
                    ident = batch.idents.get(via)
                    r["via_identifier_id"] = ident.id if ident else None
                rows.append(raw.timeline_row(r))
            conn.exec_driver_sql(raw.timeline_sql, rows)
        if batch.outbox_rows:
            now = now_utc()
            created = raw.time(now)
            conn.exec_driver_sql(raw.outbox_sql, [
                (e.id, e.type, _schema(e.type)[1], e.subject, _structured(e, now, self.traceparent), created)
                for e in batch.outbox_rows])
            session.info[OUTBOX_PENDING_FLAG] = True
        batch.new_customers.clear()
        batch.new_idents.clear()
        batch.timeline_rows.clear()
        batch.outbox_rows.clear()
        # new customers now exist in the database like any other
        for c in batch.customers.values():
            c.new = False

