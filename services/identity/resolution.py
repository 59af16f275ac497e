"""Resolution: the author of every raw interaction becomes ONE customer.

- No known identifier: create a customer.
- Identifiers of one customer: attach the new ones.
- Identifiers of several customers in a *deterministic* record (a CRM record, a
  verified profile): merge them, the older surviving — unless the merge would break
  an identifier cap, then it becomes a match suggestion.
- Weak co-occurrence (a handle, an unverified e-mail in a post) never merges: it
  becomes a match suggestion.
- A handle is tied to the platform's stable id when the record carries both: a
  renamed handle is re-linked to the id's customer, never a reason to merge.

Concurrency: see :func:`socialzone_identity.store.lock_identifiers` (advisory locks
per identifier, in one order, plus the unique constraint) and
:func:`socialzone_identity.store.lock_customer` (a customer being merged is followed
to its survivor).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timezone
from typing import Any

from sqlalchemy import insert, select, tuple_, update
from sqlmodel import Session

from socialzone_common.envelope import Envelope, now_utc
from socialzone_common.errors import Conflict
from socialzone_common.events.common import Identifier
from socialzone_common.events.identity import (AttributedInteractionRetracted, CustomerCreated,
                                               IdentifierLinked, InteractionAttributed, MergeEvidence)
from socialzone_common.events.ingest import InteractionRecorded, InteractionRetracted
from socialzone_common.outbox import enqueue
from socialzone_identity import merging, suggestions, timeline
from socialzone_identity.identifiers import PLATFORM_TYPES, InvalidIdentifier, Normalized, Rules, type_strength
from socialzone_identity.models import Customer, IdentifierLink, Suppression, TimelineEntry
from socialzone_identity.profile import apply_profile, observation, reconcile
from socialzone_identity.store import SOURCE, lock_customer, lock_identifiers, new_customer_id

log = logging.getLogger(__name__)
I = IdentifierLink.__table__
T = TimelineEntry.__table__


@dataclass
class Context:
    rules: Rules
    crm_sources: list[str]
    matcher: Any = None
    match_threshold: float = 0.9
    match_max_candidates: int = 50
    stats: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings, matcher=None) -> Context:
        return cls(rules=Rules.from_settings(settings), crm_sources=list(settings.crm_sources), matcher=matcher,
                   match_threshold=settings.suggestion_threshold(), match_max_candidates=settings.match_max_candidates)

    def count(self, what: str) -> None:
        self.stats[what] = self.stats.get(what, 0) + 1


@dataclass
class Outcome:
    status: str  # attributed | created | unidentifiable | suppressed
    customer_id: str | None = None
    merged: list[str] = field(default_factory=list)
    suggested: int = 0
    linked: int = 0


def normalize_all(rules: Rules, identifiers) -> tuple[list[Normalized], list[str]]:
    found: list[Normalized] = []
    problems: list[str] = []
    seen = set()
    for index, identifier in enumerate(identifiers):
        try:
            n = rules.normalize(identifier.type, identifier.value)
        except InvalidIdentifier as exc:
            problems.append(f"identifiers[{index}] ({identifier.type}): {exc}")
            continue
        if n.key not in seen:
            seen.add(n.key)
            found.append(n)
    return found, problems


def is_deterministic(interaction, crm_sources: list[str]) -> bool:
    """A record whose identifiers belong together: from a CRM, an authenticated login, a
    profile with a verified e-mail address or phone, or a verified profile."""
    author = interaction.author
    if interaction.source in crm_sources or author.authenticated:
        return True
    if any(i.type == "crm" or i.type.startswith("crm:") for i in author.identifiers):
        return True
    if any(i.verified and i.type in ("email", "phone") for i in author.identifiers):
        return True
    return bool(author.attributes is not None and author.attributes.verified)


def is_suppressed(session: Session, rules: Rules, identifiers: list[Normalized]) -> bool:
    hashes = [rules.suppression_hash(i) for i in identifiers]
    return session.execute(select(Suppression.hash).where(Suppression.hash.in_(hashes)).limit(1)).first() is not None


def _utc(value):
    return value.astimezone(timezone.utc)


def attribute(session: Session, envelope: Envelope, ctx: Context) -> Outcome:
    """Handle one ``ingest.interaction.recorded`` inside the caller's transaction."""
    payload = InteractionRecorded.model_validate(envelope.data)
    interaction = payload.interaction
    ids, problems = normalize_all(ctx.rules, interaction.author.identifiers)
    if problems:
        log.info("interaction %s: ignored identifiers: %s", interaction.interaction_id, "; ".join(problems))
    if not ids:
        ctx.count("unidentifiable")
        log.warning("interaction %s has no usable identifier; not attributed", interaction.interaction_id)
        return Outcome("unidentifiable")
    if is_suppressed(session, ctx.rules, ids):
        ctx.count("suppressed")
        return Outcome("suppressed")
    vouched = is_deterministic(interaction, ctx.crm_sources)
    occurred = _utc(interaction.occurred_at)
    lock_identifiers(session, ids)
    rows = {(r.type, r.value): r for r in session.execute(
        select(I).where(tuple_(I.c.type, I.c.value).in_([(i.type, i.value) for i in ids]))).all()}
    platform_types = {i.type for i in ids if i.type in PLATFORM_TYPES}

    # Which customers the record points at, strongest evidence first.
    evidence: list[tuple[Normalized, Any]] = []
    for n in ids:
        row = rows.get((n.type, n.value))
        if row is None:
            continue
        if n.anchor_type is not None and n.anchor_type in platform_types:
            continue  # the stable id is in the record: the handle follows it, it never decides
        evidence.append((n, row))
    evidence.sort(key=lambda e: 0 if type_strength(e[0].type, vouched=vouched) == "strong" else 1)

    outcome = Outcome("attributed")
    created = False
    matched_by: Normalized | None = None
    if not evidence:
        customer = _create(session, envelope, interaction, occurred)
        created = True
        outcome.status = "created"
    else:
        matched_by = evidence[0][0]
        customer = lock_customer(session, evidence[0][1].customer_id)
        merged_now: dict[str, str] = {}  # merged by this record -> its survivor (the rows predate it)
        for n, row in evidence[1:]:
            other_id = row.customer_id
            while other_id in merged_now:
                other_id = merged_now[other_id]
            if other_id == customer.id:
                continue
            strong_pair = (type_strength(n.type, vouched=vouched) == "strong"
                           and type_strength(matched_by.type, vouched=vouched) == "strong")
            if vouched and strong_pair:
                try:
                    record = merging.merge(session, rules=ctx.rules, first=customer.id, second=other_id,
                                           rule="deterministic_record", actor=f"event:{envelope.id}",
                                           evidence=[MergeEvidence(identifier_type=matched_by.type, event_id=envelope.id),
                                                     MergeEvidence(identifier_type=n.type, event_id=envelope.id)])
                    outcome.merged.append(record.merged_id)
                    merged_now[record.merged_id] = record.survivor_id
                    customer = lock_customer(session, record.survivor_id)
                    ctx.count("merged")
                    continue
                except merging.AlreadyOne:
                    continue  # a concurrent merge already made them one: what this record asks is done
                except Conflict:
                    outcome.suggested += suggestions.suggest(session, customer.id, other_id, rule="cap_exceeded",
                                                             evidence_event_id=envelope.id)
                    ctx.count("cap_exceeded")
                    continue
            outcome.suggested += suggestions.suggest(session, customer.id, other_id, rule="weak_identifier",
                                                     evidence_event_id=envelope.id)
    outcome.customer_id = customer.id

    # Link what is new; re-link handles to the customer of their platform id.
    # a new identifier goes with the one the record came in through: an unmerge of that
    # identifier's first customer takes it back too
    origin = evidence[0][1].origin_customer_id if evidence else customer.id
    linked = _link(session, ctx, envelope, customer, ids, rows, vouched, occurred, created, origin)
    outcome.linked = len(linked)
    via = _via(session, rows, linked, matched_by, ids)

    values, kind = observation(interaction, crm_sources=ctx.crm_sources)
    profile_changed = False
    if values:
        profile, what = reconcile(customer.profile, values, kind=kind, at=occurred, origin=customer.id)
        if what:
            for key, value in apply_profile(customer, profile).items():
                setattr(customer, key, value)
            customer.updated_at = now_utc()
            session.flush()
        profile_changed = what == "value"

    attributed = InteractionAttributed(
        customer_id=customer.id, interaction=interaction,
        matched_by=Identifier(type=matched_by.type, value=matched_by.value) if matched_by else None,
        merged_from=(evidence[0][1].customer_id if evidence and evidence[0][1].customer_id != customer.id else None))
    attributed_envelope = _emit(session, attributed)
    timeline.add_rows(session, [timeline.interaction_row(
        customer_id=customer.id, origin=customer.id, via=via, envelope_id=attributed_envelope.id,
        data=attributed_envelope.data, interaction=attributed_envelope.data["interaction"], occurred_at=occurred)])
    if created or profile_changed:
        customer.needs_match = True  # the matcher scores it against its candidates (matcher.match_pending)
        session.flush()
    ctx.count(outcome.status)
    return outcome


def _emit(session: Session, payload) -> Envelope:
    return enqueue(session, payload.to_envelope(source=SOURCE))


def _create(session: Session, envelope: Envelope, interaction, occurred) -> Customer:
    customer = Customer(id=new_customer_id(), created_at=occurred, created_from="interaction")
    session.add(customer)
    session.flush()
    created = _emit(session, CustomerCreated(customer_id=customer.id, created_from="interaction",
                                             interaction_id=interaction.interaction_id,
                                             display_name=interaction.author.display_name))
    timeline.add_rows(session, [dict(
        customer_id=customer.id, origin_customer_id=customer.id, via_identifier_id=None, event_id=created.id,
        event_type=created.type, department="identity", occurred_at=occurred,
        summary=timeline.summarize(created.type, created.data), channel=interaction.source,
        interaction_id=interaction.interaction_id, ref_id=None, sentiment=None, language=None, amount=None,
        currency=None, retracted=False, event=created.data)])
    return customer


def _link(session: Session, ctx: Context, envelope: Envelope, customer: Customer, ids: list[Normalized],
          rows: dict, vouched: bool, occurred, created: bool, origin: str) -> dict[tuple[str, str], int]:
    """Insert the record's new identifiers (within caps) and re-link rebound handles."""
    linked: dict[tuple[str, str], int] = {}
    counts = merging.identifier_counts(session, customer.id) if not created else {}
    rule = "new_customer" if created else ("deterministic_record" if vouched else "co_occurrence")
    platform_rows: dict[str, int] = {}

    def platform_row(kind: str) -> int | None:
        if kind in platform_rows:
            return platform_rows[kind]
        for n in ids:
            if n.type == kind:
                key = (n.type, n.value)
                row_id = linked.get(key) or (rows[key].id if key in rows else None)
                platform_rows[kind] = row_id
                return row_id
        return None

    ordered = sorted(ids, key=lambda n: 1 if n.anchor_type else 0)  # platform ids before their handles
    for n in ordered:
        key = (n.type, n.value)
        existing = rows.get(key)
        strength = type_strength(n.type, vouched=vouched)
        anchor = platform_row(n.anchor_type) if n.anchor_type else None
        if existing is not None:
            if n.anchor_type and anchor is not None and (existing.customer_id != customer.id or existing.anchor_id != anchor):
                session.execute(update(I).where(I.c.id == existing.id).values(
                    customer_id=customer.id, anchor_id=anchor, rule="handle_rebound", evidence_event_id=envelope.id,
                    evidence_agent=None, linked_at=occurred))
                if existing.customer_id != customer.id:
                    _emit(session, IdentifierLinked(customer_id=customer.id, identifier=Identifier(type=n.type, value=n.value),
                                                    strength="weak", rule="handle_rebound", evidence_event_id=envelope.id))
                    linked[key] = existing.id
            continue
        if counts.get(n.type, 0) >= ctx.rules.cap(n.type):
            ctx.count("cap_reached")
            log.warning("customer %s: %s cap (%d) reached; identifier not linked", customer.id, n.type,
                        ctx.rules.cap(n.type))
            continue
        counts[n.type] = counts.get(n.type, 0) + 1
        values = dict(type=n.type, value=n.value, customer_id=customer.id, origin_customer_id=origin,
                      strength=strength, rule=rule, evidence_event_id=envelope.id, evidence_agent=None,
                      anchor_id=anchor, linked_at=occurred, last_seen_at=occurred)
        row_id = _insert_identifier(session, values)
        linked[key] = row_id
        _emit(session, IdentifierLinked(customer_id=customer.id, identifier=Identifier(type=n.type, value=n.value),
                                        strength=strength, rule=rule, evidence_event_id=envelope.id))
    return linked


def _insert_identifier(session: Session, values: dict[str, Any]) -> int:
    """Insert one identifier row. The unique constraint on (type, value) is the backstop of
    the advisory locks: a concurrent insert of the same identifier fails this transaction,
    which the worker retries (and the retry finds the identifier)."""
    return session.execute(insert(I).values(**values).returning(I.c.id)).scalar_one()


def _via(session: Session, rows: dict, linked: dict, matched_by: Normalized | None, ids: list[Normalized]) -> int | None:
    """The identifier the interaction came through (unmerge moves the entry with it)."""
    if matched_by is not None:
        return rows[(matched_by.type, matched_by.value)].id
    first = (ids[0].type, ids[0].value)
    if first in linked:
        return linked[first]
    return next(iter(linked.values()), None)


def retract(session: Session, envelope: Envelope) -> int:
    """``ingest.interaction.retracted``: the timeline entry stays but loses its text."""
    payload = InteractionRetracted.model_validate(envelope.data)
    rows = session.execute(select(T.c.id, T.c.customer_id, T.c.event, T.c.summary).where(
        T.c.interaction_id == payload.interaction_id, T.c.event_type == "identity.interaction.attributed")).all()
    for row in rows:
        data = dict(row.event or {})
        if "interaction" in data:
            inner = dict(data["interaction"])
            inner["text"] = None
            inner["truncated"] = False
            data["interaction"] = inner
        session.execute(update(T).where(T.c.id == row.id).values(
            retracted=True, event=data,
            summary=f"{(inner or {}).get('kind', 'interaction')} on {payload.source} (retracted: {payload.reason})"[:300]
            if "interaction" in data else "retracted"))
        _emit(session, AttributedInteractionRetracted(interaction_id=payload.interaction_id, customer_id=row.customer_id,
                                                      retracted_at=payload.retracted_at))
    return len(rows)
