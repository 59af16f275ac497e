"""Merge and unmerge.

A merge keeps the older customer (by creation time): the other one's identifiers,
timeline entries, consents and blocking keys move to the survivor in one transaction,
its row stays with ``merged_into`` so that its id keeps answering. An unmerge gives
back what came through the restored customer: the identifiers first linked to it (or
to customers merged into it before, or learned next to one of those since), the
timeline entries that came through them and the consents stated through its id.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import func, select, update
from sqlmodel import Session

from socialzone_common import db
from socialzone_common.envelope import now_utc
from socialzone_common.errors import Conflict, NotFound, Unprocessable
from socialzone_common.events.common import Identifier
from socialzone_common.events.identity import (ConsentChanged, CustomerMerged, CustomerUnmerged, MergeEvidence)
from socialzone_common.outbox import enqueue
from socialzone_identity import audit, timeline
from socialzone_identity.identifiers import Rules
from socialzone_identity.models import (BlockingKey, ConsentRecord, Customer, IdentifierLink, MatchSuggestion, Merge,
                                        TimelineEntry)
from socialzone_identity.profile import (apply_profile, current_consents, merge_profiles, observed_lists,
                                         without_origins)
from socialzone_identity.store import SOURCE, chase, descendants, lock_customer

I = IdentifierLink.__table__
T = TimelineEntry.__table__


def _older_first(a: Customer, b: Customer) -> tuple[Customer, Customer]:
    return (a, b) if (a.created_at, a.id) <= (b.created_at, b.id) else (b, a)


def identifier_counts(session: Session, customer_id: str) -> Counter:
    return Counter({row.type: row.n for row in session.execute(
        select(I.c.type, func.count().label("n")).where(I.c.customer_id == customer_id).group_by(I.c.type))})


def cap_violations(session: Session, rules: Rules, a: str, b: str) -> dict[str, dict[str, int]]:
    """Identifier types whose count would pass the cap if ``a`` and ``b`` were one customer."""
    combined = identifier_counts(session, a) + identifier_counts(session, b)
    return {kind: {"count": n, "cap": rules.cap(kind)} for kind, n in combined.items() if n > rules.cap(kind)}


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


class AlreadyOne(Unprocessable):
    """The two ids already answer as one customer (422): nothing to merge."""

    def __init__(self, first: str, second: str, customer_id: str) -> None:
        detail = (f"{first} and {second} are already one customer ({customer_id})" if first != second
                  else "a customer cannot be merged with itself")
        super().__init__(detail, errors=[{"field": "customer_ids", "message": detail}])
        self.customer_id = customer_id


def resolve_pair(session: Session, first: str, second: str, *, lock: bool) -> tuple[Customer, Customer]:
    """Both active customers (following merges), survivor first; 404/422 for bad pairs."""
    if lock:
        db.begin_writing(session)  # on SQLite: take the writer turn before the reads below
    for cid in (first, second):
        found = chase(session, cid)
        if found is None:
            raise NotFound(f"customer {cid} not found")
        if found[1] == "erased":
            raise NotFound(f"customer {cid} was erased")
    a_id, b_id = chase(session, first)[0], chase(session, second)[0]
    if a_id == b_id:
        raise AlreadyOne(first, second, a_id)
    if lock:
        lo, hi = sorted((a_id, b_id))  # one global order: no deadlock between two merges
        x, y = lock_customer(session, lo), lock_customer(session, hi)
        # a concurrent merge of the same pair may have committed while we waited: both
        # locks then follow to its survivor, and merging it into itself would lose both
        if x.id == y.id:
            raise AlreadyOne(first, second, x.id)
    else:
        x, y = session.get(Customer, a_id), session.get(Customer, b_id)
    return _older_first(x, y)


def preview(session: Session, *, rules: Rules, first: str, second: str) -> dict[str, Any]:
    """What a merge would do, without writing anything."""
    survivor, merged = resolve_pair(session, first, second, lock=False)
    profile = merge_profiles(survivor.profile, merged.profile)
    consents = _restrictive(current_consents(session, survivor.id), current_consents(session, merged.id))
    counts = identifier_counts(session, survivor.id) + identifier_counts(session, merged.id)
    entries = session.execute(select(func.count()).select_from(T).where(
        T.c.customer_id.in_((survivor.id, merged.id)))).scalar_one()
    return {"survivor_id": survivor.id, "merged_id": merged.id, "display_name": apply_profile(survivor, profile)["display_name"],
            "profile": profile, "identifier_counts": dict(counts),
            "cap_violations": cap_violations(session, rules, survivor.id, merged.id),
            "consents": consents, "timeline_entries": entries}


def _restrictive(a: dict[str, dict], b: dict[str, dict]) -> dict[str, bool]:
    result = {}
    for purpose in set(a) | set(b):
        values = [c[purpose]["granted"] for c in (a, b) if purpose in c]
        result[purpose] = all(values)
    return result


def merge(session: Session, *, rules: Rules, first: str, second: str, rule: str, actor: str,
          reason: str | None = None, evidence: list[MergeEvidence] = (), enforce_caps: bool = True) -> Merge:
    """Merge two customers (the older survives). Raises Conflict when ``enforce_caps``
    and the merge would break an identifier cap (callers turn that into a suggestion)."""
    survivor, merged = resolve_pair(session, first, second, lock=True)
    if enforce_caps:
        violations = cap_violations(session, rules, survivor.id, merged.id)
        if violations:
            raise Conflict("the merge would break identifier caps; review it as a match suggestion",
                           cap_violations=violations)
    now = now_utc()
    before_s, before_m = current_consents(session, survivor.id), current_consents(session, merged.id)
    payload = CustomerMerged(survivor_id=survivor.id, merged_id=merged.id, rule=rule, reason=reason,
                             evidence=tuple(evidence))
    envelope = enqueue(session, payload.to_envelope(source=SOURCE))
    record = Merge(survivor_id=survivor.id, merged_id=merged.id, rule=rule, reason=reason, actor=actor,
                   evidence=[e.model_dump() for e in evidence], survivor_profile_before=survivor.profile,
                   event_id=envelope.id, merged_at=now)
    session.add(record)
    session.execute(update(I).where(I.c.customer_id == merged.id).values(customer_id=survivor.id))
    session.execute(update(T).where(T.c.customer_id == merged.id).values(customer_id=survivor.id))
    session.execute(update(ConsentRecord.__table__).where(ConsentRecord.customer_id == merged.id)
                    .values(customer_id=survivor.id))
    # blocking keys: the survivor's keys cover the merged profile's
    keys = session.execute(select(BlockingKey.key).where(BlockingKey.customer_id == merged.id)).scalars().all()
    own = set(session.execute(select(BlockingKey.key).where(BlockingKey.customer_id == survivor.id)).scalars().all())
    session.execute(BlockingKey.__table__.delete().where(BlockingKey.customer_id == merged.id))
    new_keys = [{"key": k, "customer_id": survivor.id} for k in keys if k not in own]
    if new_keys:
        session.execute(BlockingKey.__table__.insert(), new_keys)
    # open suggestions about the merged customer are settled by this merge
    session.execute(update(MatchSuggestion.__table__).where(
        MatchSuggestion.status == "open",
        (MatchSuggestion.customer_a == merged.id) | (MatchSuggestion.customer_b == merged.id))
        .values(status="superseded", decided_at=now, decided_by=actor, decision_reason=f"merged ({rule})"))
    profile = merge_profiles(survivor.profile, merged.profile)
    for key, value in apply_profile(survivor, profile).items():
        setattr(survivor, key, value)
    survivor.updated_at = now
    merged.status, merged.merged_into, merged.updated_at = "merged", survivor.id, now
    session.flush()
    timeline.add_event(session, envelope, customer_id=survivor.id)
    # most restrictive consent wins
    for purpose, granted in _restrictive(before_s, before_m).items():
        latest_after = current_consents(session, survivor.id).get(purpose)
        survivor_had = before_s.get(purpose)
        # departments know the survivor's consent: tell them when it changes, and make the
        # history say so even when the merged customer's later statement already does
        if (latest_after is not None and latest_after["granted"] == granted
                and survivor_had is not None and survivor_had["granted"] == granted):
            continue
        # the row carries the statement of whichever side made it, so that an unmerge gives
        # the merged customer's withdrawal back with it and the survivor's own comes back
        origin = survivor.id if survivor_had is not None and survivor_had["granted"] == granted else merged.id
        _consent_row(session, customer_id=survivor.id, origin=origin, purpose=purpose, granted=granted,
                     source="merge", actor=actor, reason=f"most restrictive of {survivor.id} and {merged.id}", at=now)
    audit.record(session, actor=actor, action="merge", customer_id=survivor.id, reason=reason,
                 merged_id=merged.id, rule=rule, evidence=[e.model_dump() for e in evidence])
    return record


def _consent_row(session: Session, *, customer_id: str, origin: str, purpose: str, granted: bool, source: str,
                 actor: str, reason: str | None, at) -> None:
    session.add(ConsentRecord(customer_id=customer_id, origin_customer_id=origin, purpose=purpose,
                              granted=granted, source=source, changed_at=at, recorded_at=at, actor=actor,
                              reason=reason))
    envelope = enqueue(session, ConsentChanged(customer_id=customer_id, purpose=purpose, granted=granted,
                                               source=source, changed_at=at).to_envelope(source=SOURCE))
    session.flush()
    timeline.add_event(session, envelope, customer_id=customer_id, origin=origin)


def _not_merged_into(session: Session, restored: Customer | None, restored_id: str, survivor_id: str) -> str:
    """Why ``restored_id`` cannot be split off ``survivor_id``: never merged into it, or merged
    into it through another customer (B into A, then A into C), which is split off first."""
    chain = [restored_id]
    current = restored
    while current is not None and current.merged_into and current.merged_into not in chain:
        chain.append(current.merged_into)
        if current.merged_into == survivor_id:
            break
        current = session.get(Customer, current.merged_into)
    if len(chain) < 3 or chain[-1] != survivor_id:
        return f"{restored_id} was never merged into {survivor_id}"
    steps = ", then ".join(f"{chain[i]} from {chain[i + 1]}" for i in range(len(chain) - 2, -1, -1))
    through = ", which was merged into ".join(chain[1:])
    return (f"{restored_id} was merged into {through}; it is not split off {survivor_id} directly: "
            f"unmerge {steps}")


def unmerge(session: Session, *, customer_id: str, restored_customer_id: str, identifiers: list[tuple[str, str]] | None,
            actor: str, reason: str | None = None) -> dict[str, Any]:
    """Split ``restored_customer_id`` off ``customer_id`` again."""
    found = chase(session, customer_id)
    if found is None:
        raise NotFound(f"customer {customer_id} not found")
    survivor = lock_customer(session, customer_id)
    restored = session.get(Customer, restored_customer_id)
    record = session.execute(select(Merge).where(
        Merge.survivor_id == survivor.id, Merge.merged_id == restored_customer_id, Merge.unmerged_at.is_(None))
        .order_by(Merge.id.desc())).scalars().first()
    if restored is None or record is None or restored.merged_into != survivor.id:
        detail = _not_merged_into(session, restored, restored_customer_id, survivor.id)
        raise Unprocessable(detail, errors=[{"field": "restored_customer_id", "message": detail}])
    origins = {restored.id, *descendants(session, restored.id)}
    if identifiers is None:
        rows = session.execute(select(I).where(I.c.customer_id == survivor.id,
                                               I.c.origin_customer_id.in_(origins))).all()
    else:
        rows = []
        for kind, value in identifiers:
            row = session.execute(select(I).where(I.c.type == kind, I.c.value == value)).first()
            if row is None or row.customer_id != survivor.id:
                detail = f"identifier {kind}:{value} does not belong to {survivor.id}"
                raise Unprocessable(detail, errors=[{"field": "identifiers", "message": detail}])
            rows.append(row)
    if not rows:
        # nothing to give back: the restored customer would come back without a way to find it
        detail = (f"identifiers: no identifier of {survivor.id} was first linked to {restored.id}; name the ones "
                  "to move" if identifiers is None else "identifiers: name at least one identifier to move")
        raise Unprocessable(detail, errors=[{"field": "identifiers", "message": detail}])
    ids = [r.id for r in rows]
    remaining = session.execute(select(func.count()).select_from(I).where(
        I.c.customer_id == survivor.id, I.c.id.not_in(ids))).scalar_one()
    if remaining == 0:
        detail = "the unmerge would leave the survivor without identifiers"
        raise Unprocessable(detail, errors=[{"field": "identifiers", "message": detail}])
    now = now_utc()
    session.execute(update(I).where(I.c.id.in_(ids)).values(customer_id=restored.id))
    moved_entries = session.execute(update(T).where(
        T.c.customer_id == survivor.id,
        T.c.via_identifier_id.in_(ids)
        | (T.c.via_identifier_id.is_(None) & T.c.origin_customer_id.in_(origins))).values(customer_id=restored.id)).rowcount
    session.execute(update(ConsentRecord.__table__).where(
        ConsentRecord.customer_id == survivor.id, ConsentRecord.origin_customer_id.in_(origins))
        .values(customer_id=restored.id))
    session.execute(BlockingKey.__table__.delete().where(BlockingKey.customer_id == survivor.id))
    names, locations = observed_lists(session.execute(select(T.c.event).where(
        T.c.customer_id == survivor.id, T.c.event_type == "identity.interaction.attributed")
        .order_by(T.c.occurred_at, T.c.id)).scalars())
    profile = without_origins(survivor.profile, origins, record.survivor_profile_before, names=names,
                              locations=locations)
    for key, value in apply_profile(survivor, profile).items():
        setattr(survivor, key, value)
    survivor.updated_at = now
    restored.status, restored.merged_into, restored.updated_at = "active", None, now
    record.unmerged_at = now
    moved = tuple(Identifier(type=r.type, value=r.value) for r in rows)
    envelope = enqueue(session, CustomerUnmerged(customer_id=survivor.id, restored_customer_id=restored.id,
                                                 identifiers_moved=moved, reason=reason).to_envelope(source=SOURCE))
    session.flush()
    timeline.add_event(session, envelope, customer_id=survivor.id)
    timeline.add_event(session, envelope, customer_id=restored.id)
    audit.record(session, actor=actor, action="unmerge", customer_id=survivor.id, reason=reason,
                 restored_customer_id=restored.id, identifiers_moved=len(moved), timeline_entries_moved=moved_entries)
    return {"customer_id": survivor.id, "restored_customer_id": restored.id, "identifiers_moved": len(moved),
            "timeline_entries_moved": moved_entries, "event_id": envelope.id, "moved": moved}
