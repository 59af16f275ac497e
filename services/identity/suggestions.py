"""Match suggestions: weak evidence that two customers may be one person, for an agent
to accept (a merge with the agent as evidence) or reject (never suggested again)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from socialzone_common.envelope import now_utc
from socialzone_common.errors import Conflict, NotFound
from socialzone_common.events.identity import MergeEvidence
from socialzone_identity import audit, merging
from socialzone_identity.identifiers import Rules
from socialzone_identity.models import MatchSuggestion


def suggest(session: Session, a: str, b: str, *, rule: str, probability: float | None = None,
            weight: float | None = None, features: dict[str, Any] | None = None,
            evidence_event_id: str | None = None) -> int:
    """Create or refresh the suggestion for the pair; a rejected pair stays rejected."""
    if a == b:
        return 0
    lo, hi = sorted((a, b))
    existing = session.execute(select(MatchSuggestion).where(
        MatchSuggestion.customer_a == lo, MatchSuggestion.customer_b == hi)).scalars().first()
    if existing is not None:
        if existing.status != "open":
            return 0
        if probability is not None and (existing.probability or 0) < probability:
            existing.probability, existing.weight, existing.features = probability, weight, features
        return 0
    session.add(MatchSuggestion(customer_a=lo, customer_b=hi, rule=rule, probability=probability, weight=weight,
                                features=features, evidence_event_id=evidence_event_id, created_at=now_utc()))
    session.flush()
    return 1


def suggest_many(session: Session, found: list[tuple[str, str, dict[str, Any]]]) -> int:
    """:func:`suggest` for many pairs (``(a, b, fields)``, fields as its keyword arguments):
    the existing pairs in one query per 500, the new ones in one insert. Returns how many
    were made."""
    from sqlalchemy import insert, tuple_, update

    best: dict[tuple[str, str], dict[str, Any]] = {}
    for a, b, fields in found:
        if a == b:
            continue
        pair = (a, b) if a <= b else (b, a)
        if pair not in best or (best[pair].get("probability") or 0) < (fields.get("probability") or 0):
            best[pair] = fields
    if not best:
        return 0
    table = MatchSuggestion.__table__
    pairs = sorted(best)
    existing = {}
    for i in range(0, len(pairs), 500):
        for row in session.execute(select(table.c.id, table.c.customer_a, table.c.customer_b, table.c.status,
                                          table.c.probability).where(
                tuple_(table.c.customer_a, table.c.customer_b).in_(pairs[i:i + 500]))):
            existing[(row.customer_a, row.customer_b)] = row
    now = now_utc()
    new = [{"customer_a": lo, "customer_b": hi, "status": "open", "rule": f.get("rule"),
            "probability": f.get("probability"), "weight": f.get("weight"), "features": f.get("features"),
            "evidence_event_id": f.get("evidence_event_id"), "created_at": now}
           for (lo, hi), f in best.items() if (lo, hi) not in existing]
    refreshed = [{"row_id": row.id, "p": best[pair]["probability"], "w": best[pair].get("weight"),
                  "f": best[pair].get("features")} for pair, row in existing.items()
                 if row.status == "open" and best[pair].get("probability") is not None
                 and (row.probability or 0) < best[pair]["probability"]]
    if new:
        session.execute(insert(table), new)
    if refreshed:
        from sqlalchemy import bindparam

        session.execute(update(table).where(table.c.id == bindparam("row_id")).values(
            probability=bindparam("p"), weight=bindparam("w"), features=bindparam("f")), refreshed)
    return len(new)


def get_open(session: Session, suggestion_id: int) -> MatchSuggestion:
    suggestion = session.get(MatchSuggestion, suggestion_id)
    if suggestion is None:
        raise NotFound(f"match suggestion {suggestion_id} not found")
    if suggestion.status != "open":
        raise Conflict(f"match suggestion {suggestion_id} is already {suggestion.status}")
    return suggestion


def accept(session: Session, *, rules: Rules, suggestion_id: int, actor: str, reason: str | None) -> MatchSuggestion:
    suggestion = get_open(session, suggestion_id)
    evidence = [MergeEvidence(identifier_type=f"match_suggestion:{suggestion.rule}",
                              event_id=suggestion.evidence_event_id)]
    merging.merge(session, rules=rules, first=suggestion.customer_a, second=suggestion.customer_b,
                  rule="match_suggestion", actor=actor, reason=reason or f"accepted suggestion {suggestion_id}",
                  evidence=evidence, enforce_caps=False)
    suggestion.status, suggestion.decided_at, suggestion.decided_by = "accepted", now_utc(), actor
    suggestion.decision_reason = reason
    return suggestion


def reject(session: Session, *, suggestion_id: int, actor: str, reason: str | None) -> MatchSuggestion:
    suggestion = get_open(session, suggestion_id)
    suggestion.status, suggestion.decided_at, suggestion.decided_by = "rejected", now_utc(), actor
    suggestion.decision_reason = reason
    audit.record(session, actor=actor, action="suggestion", customer_id=suggestion.customer_a, reason=reason,
                 suggestion_id=suggestion_id, decision="rejected", other_customer_id=suggestion.customer_b)
    return suggestion
