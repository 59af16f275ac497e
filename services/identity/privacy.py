"""Consent, erasure and export (subject access).

Erasure: identity deletes the profile, identifiers, timeline, consents and
suggestions of the customer (and of every customer merged into it), keeps salted
hashes of the identifiers in the suppression list so that later ingested content
cannot re-create the person, publishes ``identity.customer.erasure_requested`` and
tracks each service's ``<service>.erasure.completed``.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlmodel import Session

from socialzone_common.envelope import Envelope, now_utc
from socialzone_common.errors import NotFound, Unprocessable
from socialzone_common.events.identity import ConsentChanged
from socialzone_common.events.privacy import ErasureRequested
from socialzone_common.outbox import enqueue
from socialzone_identity import audit, timeline
from socialzone_identity.identifiers import Normalized, Rules
from socialzone_identity.models import (AuditEntry, BlockingKey, ConsentRecord, Customer, Erasure, IdentifierLink,
                                        MatchSuggestion, Merge, Suppression, TimelineEntry)
from socialzone_identity.profile import current_consents
from socialzone_identity.store import SOURCE, descendants, lock_customer

I = IdentifierLink.__table__
T = TimelineEntry.__table__


def set_consent(session: Session, *, customer_id: str, purpose: str, granted: bool, source: str,
                changed_at: datetime | None, actor: str, reason: str | None, purposes: list[str]) -> dict[str, Any]:
    if purpose not in purposes:
        detail = f"purpose: unknown purpose {purpose!r}; known: {', '.join(purposes)}"
        raise Unprocessable(detail, errors=[{"field": "purpose", "message": detail}])
    customer = lock_customer(session, customer_id)
    at = (changed_at or now_utc()).astimezone(timezone.utc)
    # the origin is the id the caller named (a merged one, maybe): the statement is that
    # person's, and an unmerge gives it back with them (as department events on the timeline)
    session.add(ConsentRecord(customer_id=customer.id, origin_customer_id=customer_id, purpose=purpose,
                              granted=granted, source=source, changed_at=at, recorded_at=now_utc(), actor=actor,
                              reason=reason))
    envelope = enqueue(session, ConsentChanged(customer_id=customer.id, purpose=purpose, granted=granted,
                                               source=source, changed_at=at).to_envelope(source=SOURCE))
    session.flush()
    timeline.add_event(session, envelope, customer_id=customer.id, origin=customer_id)
    audit.record(session, actor=actor, action="consent", customer_id=customer.id, reason=reason, purpose=purpose,
                 granted=granted, source=source)
    return {"customer_id": customer.id, "current": current_consents(session, customer.id).get(purpose),
            "event_id": envelope.id}


def consent_history(session: Session, customer_id: str) -> list[dict[str, Any]]:
    rows = session.execute(select(ConsentRecord).where(ConsentRecord.customer_id == customer_id)
                           .order_by(ConsentRecord.changed_at, ConsentRecord.id)).scalars().all()
    return [{"purpose": r.purpose, "granted": r.granted, "source": r.source, "changed_at": _aware(r.changed_at),
             "recorded_at": _aware(r.recorded_at), "actor": r.actor, "reason": r.reason,
             "origin_customer_id": r.origin_customer_id} for r in rows]


def _aware(value):
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def request_erasure(session: Session, *, rules: Rules, customer_id: str, actor: str, reason: str | None,
                    services: list[str]) -> Erasure:
    customer = lock_customer(session, customer_id)
    merged = descendants(session, customer.id)
    everyone = [customer.id, *merged]
    identifiers = session.execute(select(I.c.type, I.c.value).where(I.c.customer_id.in_(everyone))).all()
    erasure_id = "era_" + uuid.uuid4().hex
    hashes = {rules.suppression_hash(Normalized(r.type, r.value)) for r in identifiers}
    existing = set(session.execute(select(Suppression.hash).where(Suppression.hash.in_(hashes))).scalars().all()) if hashes else set()
    for h in hashes - existing:
        session.add(Suppression(hash=h, erasure_id=erasure_id))
    purged = 0
    purged += session.execute(delete(I).where(I.c.customer_id.in_(everyone))).rowcount
    purged += session.execute(delete(T).where(T.c.customer_id.in_(everyone))).rowcount
    purged += session.execute(delete(ConsentRecord.__table__).where(ConsentRecord.customer_id.in_(everyone))).rowcount
    purged += session.execute(delete(BlockingKey.__table__).where(BlockingKey.customer_id.in_(everyone))).rowcount
    purged += session.execute(delete(MatchSuggestion.__table__).where(or_(
        MatchSuggestion.customer_a.in_(everyone), MatchSuggestion.customer_b.in_(everyone)))).rowcount
    session.execute(update(Merge.__table__).where(or_(Merge.survivor_id.in_(everyone), Merge.merged_id.in_(everyone)))
                    .values(survivor_profile_before=None, reason=None))
    now = now_utc()
    session.execute(update(Customer.__table__).where(Customer.id.in_(everyone)).values(
        status="erased", profile=None, display_name=None, search_text=None, updated_at=now))
    erasure = Erasure(id=erasure_id, customer_id=customer.id, merged_ids=merged, status="pending", requested_at=now,
                      requested_by=actor, reason=reason, expected=list(services),
                      completions={"identity": {"completed_at": now.isoformat(), "records_purged": purged}})
    if not services:
        erasure.status, erasure.completed_at = "completed", now
    session.add(erasure)
    enqueue(session, ErasureRequested(erasure_id=erasure_id, customer_id=customer.id, requested_at=now,
                                      merged_ids=tuple(merged)).to_envelope(source=SOURCE))
    audit.record(session, actor=actor, action="erasure", customer_id=customer.id, reason=reason,
                 erasure_id=erasure_id, merged_ids=merged, records_purged=purged)
    return erasure


def erasure_completed(session: Session, envelope: Envelope) -> None:
    """A service answered an erasure request (``<service>.erasure.completed``)."""
    data = envelope.data
    service = data.get("service") or envelope.type.split(".", 1)[0]
    erasure = session.get(Erasure, data.get("erasure_id"))
    if erasure is None:
        return  # another identity instance's (or a forgotten) erasure: nothing to track
    completions = dict(erasure.completions or {})
    completions[service] = {"completed_at": data.get("completed_at"), "records_purged": data.get("records_purged"),
                            "event_id": envelope.id}
    erasure.completions = completions
    if all(s in completions for s in (erasure.expected or [])) and erasure.status != "completed":
        erasure.status, erasure.completed_at = "completed", now_utc()


def erasure_view(erasure: Erasure) -> dict[str, Any]:
    completions = erasure.completions or {}
    return {"id": erasure.id, "customer_id": erasure.customer_id, "merged_ids": erasure.merged_ids or [],
            "status": erasure.status, "requested_at": _aware(erasure.requested_at), "requested_by": erasure.requested_by,
            "completed_at": _aware(erasure.completed_at),
            "services": {s: completions.get(s) for s in ["identity", *(erasure.expected or [])]},
            "pending": [s for s in (erasure.expected or []) if s not in completions]}


def get_erasure(session: Session, erasure_id: str) -> Erasure:
    erasure = session.get(Erasure, erasure_id)
    if erasure is None:
        raise NotFound(f"erasure {erasure_id} not found")
    return erasure


def export(session: Session, *, customer: Customer, actor: str, reason: str | None) -> dict[str, Any]:
    """Everything identity holds about the customer (subject access request)."""
    from socialzone_identity.profile import summary

    everyone = [customer.id, *descendants(session, customer.id)]
    identifiers = session.execute(select(IdentifierLink).where(IdentifierLink.customer_id == customer.id)
                                  .order_by(IdentifierLink.id)).scalars().all()
    entries = session.execute(select(T).where(T.c.customer_id == customer.id).order_by(T.c.occurred_at, T.c.id)).all()
    merges = session.execute(select(Merge).where(or_(Merge.survivor_id.in_(everyone), Merge.merged_id.in_(everyone)))
                             .order_by(Merge.id)).scalars().all()
    suggestions = session.execute(select(MatchSuggestion).where(or_(
        MatchSuggestion.customer_a.in_(everyone), MatchSuggestion.customer_b.in_(everyone)))).scalars().all()
    audits = session.execute(select(AuditEntry).where(AuditEntry.customer_id.in_(everyone))
                             .order_by(AuditEntry.id)).scalars().all()
    audit.record(session, actor=actor, action="export", customer_id=customer.id, reason=reason)
    return {
        "exported_at": now_utc(),
        "customer": {"id": customer.id, "created_at": _aware(customer.created_at), "merged_ids": everyone[1:],
                     "display_name": customer.display_name, "profile": customer.profile},
        "summary": summary(session, customer),
        "identifiers": [{"type": i.type, "value": i.value, "strength": i.strength, "rule": i.rule,
                         "linked_at": _aware(i.linked_at), "evidence_event_id": i.evidence_event_id,
                         "evidence_agent": i.evidence_agent} for i in identifiers],
        "timeline": [{"event_id": e.event_id, "type": e.event_type, "department": e.department,
                      "occurred_at": _aware(e.occurred_at), "summary": e.summary, "event": e.event} for e in entries],
        "consents": consent_history(session, customer.id),
        "merges": [{"survivor_id": m.survivor_id, "merged_id": m.merged_id, "rule": m.rule, "actor": m.actor,
                    "merged_at": _aware(m.merged_at), "unmerged_at": _aware(m.unmerged_at)} for m in merges],
        "match_suggestions": [{"id": s.id, "customer_a": s.customer_a, "customer_b": s.customer_b, "status": s.status,
                               "rule": s.rule, "probability": s.probability} for s in suggestions],
        "audit": [{"at": _aware(a.at), "actor": a.actor, "action": a.action, "reason": a.reason} for a in audits],
    }
