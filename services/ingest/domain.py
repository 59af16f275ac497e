"""Recording, retracting and erasing interactions. Each function writes state and its
events in the caller's transaction (the caller commits); only the relay publishes.

- ``record``: validates what ``InteractionIn`` cannot (identifier normalization),
  de-duplicates on ``(source, external_id)``, enriches what is new, stores it and
  enqueues ``ingest.interaction.recorded`` keyed by the author.
- ``retract``: a deletion at the source removes the stored text and enqueues
  ``ingest.interaction.retracted`` (once).
- ``erase_customers``: purges the personal data of a customer's interactions.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

import orjson
from pydantic import ValidationError
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select, update

from socialzone_common import db, outbox, telemetry
from socialzone_common.envelope import now_utc
from socialzone_common.errors import TooManyRequests
from socialzone_common.events.common import Transaction, TransactionItem
from socialzone_common.events.ingest import InteractionRecorded, InteractionRetracted

from socialzone_ingest.enrich import SupportsEnrich, enrich_many_json
from socialzone_ingest.identifiers import normalize_identifier
from socialzone_ingest.models import (
    BatchResult, FieldError, InteractionAlias, InteractionIn, InteractionRow, ItemResult, Tombstone,
)

EVENT_SOURCE = "socialzone/ingest"
MAX_TEXT = 10_000  # Interaction.text's limit: longer texts are cut and flagged ``truncated``
_ID_NAMESPACE = uuid.UUID("6f1c3f5e-3b9a-4d0e-9a57-1d2b8c4e7a10")
_ID_NAMESPACE_BYTES = _ID_NAMESPACE.bytes
_CHUNK = 500


def interaction_id_for(source: str, external_id: str) -> str:
    """The same item from the same source always gets the same id: ``str(uuid.uuid5(_ID_NAMESPACE,
    f"{source}\\0{external_id}"))``, computed without the ``UUID`` object (a third of the cost)."""
    return _uuid_text(hashlib.sha1(_ID_NAMESPACE_BYTES + f"{source}\0{external_id}".encode()).digest(), 5)


def _uuid_text(digest: bytes, version: int) -> str:
    """``str(uuid.UUID(bytes=digest[:16], version=version))``."""
    b = bytearray(digest[:16])
    b[6] = (b[6] & 0x0F) | (version << 4)
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def content_external_id(item: InteractionIn, identifiers: Sequence[tuple[str, str, bool | None]]) -> str:
    """Stands in for a missing external id: a hash of what identifies the item, as normalized
    (``@Rita`` and ``rita`` are one handle, 10:30+01:00 and 09:30Z one time, 10.0 and 10.00 one
    amount). A transaction is part of it: a customer's order and refund of the same minute are
    two records, not one record twice."""
    def amount(value):
        return None if value is None else format(value.normalize(), "f")

    basis = [item.kind, item.occurred_at.astimezone(timezone.utc).isoformat(), item.text,
             [(t, v) for t, v, _ in identifiers]]
    if (tx := item.transaction) is not None:  # only then: the ids of other items stay as they were
        basis.append([tx.type, amount(tx.amount), tx.currency,
                      [(i.sku, i.name, i.quantity, amount(i.unit_price)) for i in tx.items]])
    return "sha256:" + hashlib.sha256(orjson.dumps(basis)).hexdigest()


# --- back-pressure ------------------------------------------------------------------------------

def ensure_capacity(session: Session, *, limit: int, retry_after_s: int) -> None:
    """429 with Retry-After while more than ``limit`` events wait in the outbox.

    Refusing at the door is how nothing accepted is ever dropped: what was accepted is
    in the outbox already, and the relay works the backlog down.
    """
    pending = outbox.backlog_over(session, limit)
    if pending is not None:
        raise TooManyRequests(
            f"{pending} events are waiting to be published (limit {limit}); retry later",
            headers={"Retry-After": str(retry_after_s)}, outbox_backlog=pending)


def backlog_full(sessions, limit: int) -> bool:
    """Whether more than ``limit`` events wait in the outbox: the pollers (feeds, Mastodon)
    wait while it holds, as the API answers 429."""
    with sessions() as session:
        return outbox.backlog_over(session, limit) is not None


# --- recording ---------------------------------------------------------------------------------

@dataclass
class Candidate:
    """One item to record, as a connector or the canonical API produced it."""

    item: InteractionIn
    index: int
    line: int | None = None
    aliases: tuple[str, ...] = ()
    """Other external ids of the same item (an edited X post's later versions)."""
    path: str | None = None
    """Where the item is in a platform's payload (``data[2]``)."""
    identifier_fields: tuple[str, ...] = ()
    """The platform's name of each author identifier, for errors (``email`` in a CRM row)."""


@dataclass(slots=True)
class _Prepared:
    candidate: Candidate
    interaction_id: str
    external_id: str
    identifiers: list[tuple[str, str, bool | None]]
    """The author's normalized identifiers as (type, value, verified), each once, in order."""
    author_key: str
    redirected: bool = False
    """The same item under another of its ids (an edited post's earlier or later id): its
    ``interaction_id`` is then that of the first one seen."""


@dataclass
class Outcome:
    results: list[ItemResult] = field(default_factory=list)
    recorded: list[str] = field(default_factory=list)
    """Ids of the interactions recorded now (their events are in the outbox)."""


def author_key_for(identifier_type: str, value: str) -> str:
    """``Author.key`` of an author whose first identifier is this one (the events' subject)."""
    return "author:" + hashlib.sha256(f"{identifier_type}:{value}".encode()).hexdigest()[:32]


def _prepare(candidate: Candidate, *, default_region: str | None) -> _Prepared | list[FieldError]:
    item = candidate.item
    errors: list[FieldError] = []
    identifiers = []
    for n, ident in enumerate(item.author.identifiers):
        try:
            identifiers.append((ident.type, normalize_identifier(ident.type, ident.value, default_region=default_region),
                                ident.verified))
        except ValueError as exc:
            name = (candidate.identifier_fields[n] if n < len(candidate.identifier_fields)
                    else f"author.identifiers[{n}].value")
            errors.append(FieldError(field=name, message=str(exc)))
    if item.external_id is not None and "\x00" in item.external_id:
        errors.append(FieldError(field="external_id", message=_NUL_MESSAGE))
    if any("\x00" in alias for alias in candidate.aliases):
        errors.append(FieldError(field="external_id", message=f"an earlier id of the item: {_NUL_MESSAGE}"))
    if errors:
        return errors
    if len(identifiers) > 1:
        identifiers = list(dict.fromkeys(identifiers))  # the same identifier twice is once
    external_id = item.external_id or content_external_id(item, identifiers)
    first_type, first_value, _ = identifiers[0]
    return _Prepared(candidate, interaction_id_for(item.source, external_id), external_id, identifiers,
                     author_key_for(first_type, first_value))


def _document(prepared: _Prepared, *, enrichment: bytes, recorded_at: datetime) -> bytes:
    """The canonical ``Interaction`` as JSON, byte for byte what ``Interaction(...).model_dump_json()``
    gives (tests/ingest/test_fast_path.py holds it to that), built without the models: every
    value was validated by ``InteractionIn`` and normalized in ``_prepare``. ``enrichment`` is
    the enrichment's JSON (``enrich.enrich_many_json``)."""
    item = prepared.candidate.item
    author = item.author
    text, truncated = item.text, False
    if text is not None and len(text) > MAX_TEXT:
        text, truncated = text[:MAX_TEXT], True
    attributes = author.attributes
    return orjson.dumps({
        "interaction_id": prepared.interaction_id, "source": item.source, "kind": item.kind,
        "external_id": prepared.external_id, "url": item.url, "occurred_at": item.occurred_at,
        "recorded_at": recorded_at,
        "author": {"identifiers": [{"type": t, "value": v, "verified": verified}
                                   for t, v, verified in prepared.identifiers],
                   "display_name": author.display_name, "followers": author.followers,
                   "attributes": None if attributes is None else attributes.model_dump(),
                   "authenticated": author.authenticated},
        "text": text, "truncated": truncated, "language": item.language,
        "conversation_id": item.conversation_id, "in_reply_to": item.in_reply_to, "metrics": item.metrics,
        "transaction": None if item.transaction is None else _transaction_json(item.transaction),
        "enrichment": orjson.Fragment(enrichment),
    }, option=orjson.OPT_UTC_Z)


def _transaction_json(t) -> dict:
    # rare (CRM records): through the contract's model, for its decimal formatting
    return Transaction(type=t.type, amount=t.amount, currency=t.currency, items=tuple(
        TransactionItem(sku=i.sku, name=i.name, quantity=i.quantity, unit_price=i.unit_price)
        for i in t.items)).model_dump(mode="json")


def _insert(session: Session, table, rows: list[dict], *, returning=None):
    """INSERT ... ON CONFLICT DO NOTHING [RETURNING] of many rows (one cached statement,
    executemany): on PostgreSQL a concurrent insert of the same key waits for the other
    transaction and then inserts nothing, so exactly one wins; RETURNING names the rows
    this call inserted."""
    if not rows:
        return []
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(getattr(table, "__table__", table)).on_conflict_do_nothing()
    if returning is not None:
        return session.connection().execute(statement.returning(returning), rows).scalars().all()
    session.connection().execute(statement, rows)
    return None


def record(session: Session, *, candidates: Sequence[Candidate], enricher: SupportsEnrich,
           default_region: str | None = None, now: datetime | None = None) -> Outcome:
    """Record what is new among ``candidates``, in the caller's transaction.

    Returns a result per candidate (in their order): accepted (new, event enqueued),
    duplicate (already recorded: its id, no event) or rejected (with the fields).

    The whole batch at once: one query per 500 items for tombstones and one for what is
    already recorded, enrichment of the new items as one batch (as JSON), one multi-row
    INSERT per 500 rows and one for their events; no per-item model is built on the way
    (the document and the event are serialized once, from validated values).
    """
    recorded_at = now or now_utc()
    results: dict[int, ItemResult] = {}
    prepared: list[_Prepared] = []
    first_of: dict[str, _Prepared] = {}
    repeats: list[_Prepared] = []
    alias_owner: dict[tuple[str, str], _Prepared] = {}
    for candidate in candidates:
        outcome = _prepare(candidate, default_region=default_region)
        if isinstance(outcome, list):
            results[candidate.index] = ItemResult(index=candidate.index, line=candidate.line, path=candidate.path,
                                                  status="rejected", errors=outcome)
        elif outcome.interaction_id in first_of:
            repeats.append(outcome)  # the same item twice in one request: once
        elif (first := _first_under_another_id(outcome, first_of, alias_owner)) is not None:
            outcome.interaction_id, outcome.redirected = first.interaction_id, True
            repeats.append(outcome)
        else:
            first_of[outcome.interaction_id] = outcome
            prepared.append(outcome)
            for alias in outcome.candidate.aliases:
                alias_owner[(outcome.candidate.item.source, alias)] = outcome

    prepared = _without_tombstoned(session, prepared, results)
    known = _recorded(session, prepared)

    fresh = [p for p in prepared if p.interaction_id not in known]
    enrichments = enrich_many_json(enricher, [(p.candidate.item.text, p.candidate.item.language) for p in fresh])
    documents = [_document(p, enrichment=enrichment, recorded_at=recorded_at)
                 for p, enrichment in zip(fresh, enrichments)]
    if any(b"\\u0000" in document for document in documents):  # rare: confirm, refuse what has one
        refused = _refuse_nul(fresh, results)
        if refused:
            remaining = [(p, document) for p, document in zip(fresh, documents) if p.interaction_id not in refused]
            fresh, documents = [p for p, _ in remaining], [document for _, document in remaining]
            prepared = [p for p in prepared if p.interaction_id not in refused]

    # The events are built before the first write: on SQLite that write takes the database's
    # one writer turn until the commit, and Python work while holding it (in the all-in-one
    # process, waiting for the interpreter lock among busy threads) keeps every other writer
    # of ingest's database waiting. The rows of items a concurrent request recorded first
    # are dropped below.
    event_time = recorded_at.astimezone(timezone.utc)
    traceparent = telemetry.current_traceparent()
    events = [outbox.structured_row(InteractionRecorded.event_type, source=EVENT_SOURCE, subject=p.author_key,
                                    # the document's bytes are the event's data as they are (no model, no second dump)
                                    data=b'{"interaction":' + document + b"}", time=event_time,
                                    traceparent=traceparent)
              for p, document in zip(fresh, documents)]
    # Rows in key order: two requests inserting the same new items in different orders
    # would otherwise each wait for the other's row on PostgreSQL (a deadlock).
    rows = sorted((_row(p, document, recorded_at) for p, document in zip(fresh, documents)), key=lambda r: r[0])
    inserted = set(_insert_interactions(session, rows))

    kept = {p.interaction_id for p in prepared}
    aliases = sorted(_alias_rows([*prepared, *[r for r in repeats if r.interaction_id in kept]], known),
                     key=lambda a: (a["source"], a["external_id"]))
    for i in range(0, len(aliases), _CHUNK):
        _insert(session, InteractionAlias, aliases[i:i + _CHUNK])

    out = Outcome()
    # not inserted: a concurrent request recorded it first (and enqueued its event)
    recorded = [(p, event) for p, event in zip(fresh, events) if p.interaction_id in inserted]
    if recorded:
        outbox.enqueue_structured(session, [event for _, event in recorded])
        out.recorded = [p.interaction_id for p, _ in recorded]
    for p in [*prepared, *repeats]:
        if p.interaction_id not in kept:  # a repeat of a tombstoned item: the same answer
            first = results[first_of[p.interaction_id].candidate.index]
            results[p.candidate.index] = first.model_copy(update={"index": p.candidate.index, "line": p.candidate.line,
                                                                  "path": p.candidate.path})
            continue
        accepted = p.interaction_id in inserted and p is first_of[p.interaction_id]
        # every value is known valid here: no validation pass per item (hot path)
        results[p.candidate.index] = ItemResult.model_construct(
            index=p.candidate.index, line=p.candidate.line, path=p.candidate.path,
            status="accepted" if accepted else "duplicate", interaction_id=known.get(p.interaction_id, p.interaction_id),
            errors=None)
    out.results = [results[c.index] for c in candidates]
    return out


def _first_under_another_id(p: _Prepared, first_of: dict[str, _Prepared],
                            alias_owner: dict[tuple[str, str], _Prepared]) -> _Prepared | None:
    """The item of this request that ``p`` is under another of its ids: ``p``'s id is an
    earlier item's alias, or one of ``p``'s aliases is an earlier item's id."""
    source = p.candidate.item.source
    first = alias_owner.get((source, p.external_id)) if alias_owner else None
    if first is None:
        for alias in p.candidate.aliases:
            first = first_of.get(interaction_id_for(source, alias)) or alias_owner.get((source, alias))
            if first is not None:
                break
    return first


def _recorded(session: Session, prepared: list[_Prepared]) -> dict[str, str]:
    """For each of ``prepared`` recorded already: its id -> the id it is recorded under (its
    own, or that of the interaction one of its other ids belongs to: an edited post seen
    before under its later id, or a later id recorded as an alias)."""
    if not prepared:
        return {}
    owner = {p.interaction_id: p.interaction_id for p in prepared}
    for p in prepared:
        for alias in p.candidate.aliases:
            owner.setdefault(interaction_id_for(p.candidate.item.source, alias), p.interaction_id)
    connection = session.connection()
    found = {i for (i,) in db.select_in(connection, f"SELECT id FROM {InteractionRow.__tablename__}", ["id"],
                                        [(i,) for i in owner])}
    known = {i: i for i in found if owner[i] == i}  # its own id first
    for i in found:
        known.setdefault(owner[i], i)
    # Aliases exist only where a source reports edits: one probe spares the look-up elsewhere.
    if connection.exec_driver_sql(f"SELECT 1 FROM {InteractionAlias.__tablename__} LIMIT 1").first() is not None:
        keys = {(p.candidate.item.source, k): p for p in prepared for k in (p.external_id, *p.candidate.aliases)}
        for source, external_id, interaction_id in db.select_in(
                connection, f"SELECT source, external_id, interaction_id FROM {InteractionAlias.__tablename__}",
                ["source", "external_id"], list(keys)):
            known.setdefault(keys[(source, external_id)].interaction_id, interaction_id)
    return known


def _alias_rows(items: list[_Prepared], known: dict[str, str]) -> list[dict]:
    """``interaction_aliases`` rows for every id of ``items`` that is not the one its
    interaction is recorded under (so a later notice about that id finds it)."""
    rows = []
    for p in items:
        target = known.get(p.interaction_id, p.interaction_id)
        if not p.candidate.aliases and not p.redirected and target == p.interaction_id:
            continue  # the common case: one id, its own
        source = p.candidate.item.source
        for external_id in dict.fromkeys((p.external_id, *p.candidate.aliases)):
            if interaction_id_for(source, external_id) != target:
                rows.append({"source": source, "external_id": external_id, "interaction_id": target})
    return rows


_NUL_MESSAGE = "contains a NUL character (U+0000), which no database column can store"


def _refuse_nul(fresh: list[_Prepared], results: dict[int, ItemResult]) -> set[str]:
    """Reject the items with a NUL character in any text (PostgreSQL stores none, and every
    department's database would refuse the event); returns their ids."""
    refused = set()
    for p in fresh:
        field = _nul_field(p.candidate.item.model_dump(exclude_none=True))
        if field is not None:
            refused.add(p.interaction_id)
            results[p.candidate.index] = ItemResult(
                index=p.candidate.index, line=p.candidate.line, path=p.candidate.path, status="rejected",
                errors=[FieldError(field=field, message=_NUL_MESSAGE)])
    return refused


def _nul_field(value, path: str = "") -> str | None:
    """The path (``author.identifiers[0].value``) of the first text in ``value`` with a NUL."""
    if isinstance(value, str):
        return (path or "body") if "\x00" in value else None
    if isinstance(value, dict):
        for key, inner in value.items():
            found = _nul_field(key, path) or _nul_field(inner, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
    elif isinstance(value, (list, tuple)):
        for n, inner in enumerate(value):
            found = _nul_field(inner, f"{path}[{n}]")
            if found is not None:
                return found
    return None


def _without_tombstoned(session: Session, prepared: list[_Prepared], results: dict[int, ItemResult]) -> list[_Prepared]:
    """Drop the items whose deletion at the source arrived before them (they are not recorded)."""
    keys = {(p.candidate.item.source, k): p for p in prepared for k in (p.external_id, *p.candidate.aliases)}
    if not keys:
        return prepared
    dead: set[str] = set()
    for source, external_id in db.select_in(session.connection(),
                                            f"SELECT source, external_id FROM {Tombstone.__tablename__}",
                                            ["source", "external_id"], list(keys)):
        p = keys[(source, external_id)]
        dead.add(p.interaction_id)
        results[p.candidate.index] = ItemResult(
            index=p.candidate.index, line=p.candidate.line, path=p.candidate.path, status="ignored",
            errors=[FieldError(field="external_id", message="deleted at the source before it arrived: not recorded")])
    return [p for p in prepared if p.interaction_id not in dead] if dead else prepared


def _row(prepared: _Prepared, document: bytes, recorded_at: datetime) -> tuple:
    """An ``interactions`` row, in the order of ``_INTERACTION_COLUMNS``."""
    item = prepared.candidate.item
    return (prepared.interaction_id, item.source, prepared.external_id, item.kind, prepared.author_key, None,
            item.occurred_at, recorded_at, None, None, document.decode())


_INTERACTION_COLUMNS = ("id", "source", "external_id", "kind", "author_key", "customer_id", "occurred_at",
                        "recorded_at", "retracted_at", "erased_at", "document")


def _insert_interactions(session: Session, rows: list[tuple]) -> list[str]:
    """``_insert(..., returning=id)`` of ``interactions`` rows given as tuples (``_row``), as
    multi-row ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` statements in the driver's own
    SQL (``db.insert_rows``): the same statement SQLAlchemy sends, without its per-row
    parameter processing (half the cost of a batch's insert). The columns' bind processors
    still apply (SQLite stores times as text)."""
    if not rows:
        return []
    connection = session.connection()
    dialect = connection.dialect
    mark = db.param_mark(dialect)
    returned = db.insert_rows(
        connection, f"INSERT INTO {InteractionRow.__tablename__} ({', '.join(_INTERACTION_COLUMNS)}) VALUES",
        "(" + ", ".join([mark] * len(_INTERACTION_COLUMNS)) + ")",
        db.bind_rows(rows, db.bind_processors(dialect, InteractionRow.__table__, _INTERACTION_COLUMNS)),
        " ON CONFLICT DO NOTHING RETURNING id")
    return [found for (found,) in returned]


def validation_errors(exc: ValidationError, *, prefix: str = "") -> list[FieldError]:
    """Pydantic's errors as (field path, message), the path in the platform's notation
    (``author.identifiers[0].value``), under ``prefix`` (``data[2]``) when given."""
    out = []
    for error in exc.errors(include_url=False):
        path = prefix
        for part in error.get("loc", ()):
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        out.append(FieldError(field=path or "body", message=error.get("msg", "invalid")))
    return out


# --- reading ------------------------------------------------------------------------------------

def find(session: Session, *, source: str, external_id: str) -> InteractionRow | None:
    """The interaction a source's id stands for: its first id, or a later one (an alias)."""
    row = session.get(InteractionRow, interaction_id_for(source, external_id))
    if row is None:
        alias = session.get(InteractionAlias, (source, external_id))
        if alias is not None:
            row = session.get(InteractionRow, alias.interaction_id)
    return row


# --- retraction ---------------------------------------------------------------------------------

def _without_text(document: dict) -> dict:
    """The document without what the text said: the text and what was extracted from it."""
    document = dict(document)
    document["text"] = None
    document["truncated"] = False
    enrichment = dict(document.get("enrichment") or {})
    for key in ("hashtags", "mentions", "urls", "keywords"):
        enrichment[key] = []
    document["enrichment"] = enrichment
    return document


def retract(session: Session, *, source: str, external_id: str, retracted_at: datetime | None = None,
            reason: str = "deleted") -> tuple[str, str | None]:
    """Apply a deletion reported by the source: ("retracted" | "duplicate" | "ignored", interaction id).

    The stored text goes; ``ingest.interaction.retracted`` is enqueued once (a repeated
    notice changes nothing). A notice about something never recorded is ignored.
    """
    row = find(session, source=source, external_id=external_id)
    if row is None:  # not seen yet: remember, so that it is not recorded when it arrives
        _insert(session, Tombstone, [{"source": source, "external_id": external_id,
                                      "retracted_at": retracted_at or now_utc(), "reason": reason}])
        return "ignored", None
    if row.retracted_at is not None:
        return "duplicate", row.id
    when = retracted_at or now_utc()
    row.retracted_at = when
    row.document = orjson.dumps(_without_text(orjson.loads(row.document))).decode()
    session.add(row)
    outbox.enqueue(session, InteractionRetracted(
        interaction_id=row.id, author_key=row.author_key, source=row.source, external_id=row.external_id,
        retracted_at=when, reason=reason).to_envelope(source=EVENT_SOURCE))
    return "retracted", row.id


# --- erasure ---------------------------------------------------------------------------------------

def attribute(session: Session, *, interaction_id: str, customer_id: str) -> bool:
    """Remember which customer identity attributed an interaction to (for erasure)."""
    result = session.exec(update(InteractionRow).where(col(InteractionRow.id) == interaction_id)
                          .values(customer_id=customer_id))
    return result.rowcount > 0


def rekey_customer(session: Session, *, merged_id: str, survivor_id: str) -> None:
    session.exec(update(InteractionRow).where(col(InteractionRow.customer_id) == merged_id)
                 .values(customer_id=survivor_id))


def lock_customers(session: Session, customer_ids) -> None:
    """Serialize this transaction with any other that attributes interactions to, or erases,
    one of these customers (until it ends). Without it, on PostgreSQL an attribution and an
    erasure of the same customer committing at once each miss the other: the erasure does
    not see the interaction's new customer, the attribution does not yet see the erasure,
    and the interaction keeps its personal data. (SQLite: the writer turn does it.)"""
    db.lock_keys(session, "ingest-customer", customer_ids)


def erase_customers(session: Session, *, customer_ids: Sequence[str], now: datetime | None = None) -> int:
    """Purge the personal data of every interaction attributed to these customers, and of every
    interaction of the same authors not attributed yet. Returns how many were purged now.

    What stays is what carries no person: source, kind, times, the brand, sentiment and intents
    (aggregates already counted them); the author is replaced by its one-way key.
    """
    when = now or now_utc()
    ids = list(dict.fromkeys(customer_ids))
    author_keys = set(session.exec(select(InteractionRow.author_key).where(
        col(InteractionRow.customer_id).in_(ids))).all())
    if not author_keys:
        return 0
    rows = session.exec(select(InteractionRow).where(
        col(InteractionRow.author_key).in_(author_keys), col(InteractionRow.erased_at).is_(None))).all()
    for row in rows:
        document = _without_text(orjson.loads(row.document))
        document["author"] = {"identifiers": [{"type": "erased", "value": row.author_key}],
                              "display_name": None, "followers": None, "attributes": None}
        document["url"] = None
        row.document = orjson.dumps(document).decode()
        row.erased_at = when
        session.add(row)
    return len(rows)


# --- a connector's payload -------------------------------------------------------------------------

def apply(session: Session, *, parsed, enricher: SupportsEnrich, default_region: str | None = None,
          now: datetime | None = None) -> BatchResult:
    """Record a connector's items and apply its retractions, in the caller's transaction.

    ``parsed`` is a ``connectors.Parsed``; the answer has one result per item, in order.
    """
    outcome = record(session, candidates=parsed.candidates, enricher=enricher, default_region=default_region,
                     now=now)
    results = list(parsed.results) + outcome.results
    for retraction in parsed.retractions:
        status, interaction_id = retract(session, source=retraction.source, external_id=retraction.external_id,
                                         retracted_at=retraction.retracted_at, reason=retraction.reason)
        results.append(ItemResult(index=retraction.index, path=retraction.path,
                                  status="retracted" if status == "retracted" else "ignored" if status == "ignored"
                                  else "duplicate", interaction_id=interaction_id))
    return summarize(results)


def summarize(results: list[ItemResult]) -> BatchResult:
    results = sorted(results, key=lambda r: r.index)
    count = lambda status: sum(1 for r in results if r.status == status)  # noqa: E731
    return BatchResult(accepted=count("accepted"), duplicates=count("duplicate"), retracted=count("retracted"),
                       rejected=count("rejected"), ignored=count("ignored"), results=results)
