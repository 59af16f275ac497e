"""The bridge to the probabilistic match model (``socialzone_identity.matching``, built
separately): profile features of a customer, blocking keys kept in a table so that
candidates are one indexed lookup, and match suggestions above the threshold."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlmodel import Session

from socialzone_identity.matching import Match, MatchModel, ProfileFeatures
from socialzone_identity.models import BlockingKey, Customer, IdentifierLink

log = logging.getLogger(__name__)
I = IdentifierLink.__table__


class Matcher:
    """The match model applied to stored customers: their features, keys and scores."""

    def __init__(self, model: MatchModel) -> None:
        self.model = model

    def features(self, customer: Customer, identifiers: list[tuple[str, str]]) -> ProfileFeatures:
        fields = ((customer.profile or {}).get("fields") or {})
        values: dict[str, Any] = {name: fields[name]["v"] for name in fields}
        return ProfileFeatures.from_attributes(values.pop("display_name", None), values,
                                               [{"type": t, "value": v} for t, v in identifiers])

    def blocking_keys(self, features: ProfileFeatures) -> set[str]:
        return {k[:200] for k in self.model.blocking_keys(features)}

    def score(self, a: ProfileFeatures, b: ProfileFeatures) -> Match:
        return self.model.score(a, b)

    def reasons(self, match: Match) -> list[str]:
        return list(self.model.explain(match))


def load_matcher() -> Matcher | None:
    """The match model; None (suggestions from it off) if its parameters cannot load."""
    try:
        return Matcher(MatchModel.default())
    except Exception:  # a model that cannot load must not stop attribution
        log.exception("the match model could not be loaded; match suggestions from it are off")
        return None


def identifiers_of(session: Session, customer_id: str) -> list[tuple[str, str]]:
    return [(r.type, r.value) for r in session.execute(select(I.c.type, I.c.value).where(I.c.customer_id == customer_id))]


def match_customer(session: Session, matcher: Matcher, customer: Customer, *, threshold: float,
                   max_candidates: int, evidence_event_id: str | None = None) -> int:
    """Refresh the customer's blocking keys and suggest the candidates that score above
    ``threshold``. Returns how many suggestions were made or refreshed."""
    from socialzone_identity import suggestions

    features = matcher.features(customer, identifiers_of(session, customer.id))
    keys = matcher.blocking_keys(features)
    session.execute(delete(BlockingKey.__table__).where(BlockingKey.customer_id == customer.id))
    if keys:
        session.execute(insert(BlockingKey.__table__), [{"key": k, "customer_id": customer.id} for k in keys])
    if not keys:
        return 0
    # The candidates that share the most blocking keys first, so the cap drops the weakest.
    candidates = session.execute(
        select(BlockingKey.customer_id).where(BlockingKey.key.in_(keys), BlockingKey.customer_id != customer.id)
        .group_by(BlockingKey.customer_id).order_by(func.count().desc()).limit(max_candidates)).scalars().all()
    made = 0
    for other_id in candidates:
        other = session.get(Customer, other_id)
        if other is None or other.status != "active":
            continue
        match = matcher.score(features, matcher.features(other, identifiers_of(session, other_id)))
        if match.probability >= threshold:
            made += suggestions.suggest(session, customer.id, other_id, rule="match_model",
                                        probability=float(match.probability),
                                        weight=float(match.weight),
                                        features={**match.to_dict(), "reasons": matcher.reasons(match)},
                                        evidence_event_id=evidence_event_id)
    return made


def match_pending(session: Session, matcher: Matcher, *, threshold: float, max_candidates: int,
                  limit: int = 200) -> int:
    """Score the customers whose profile is new or changed (``needs_match``); returns how
    many were scored. Runs apart from attribution so that attribution stays fast."""
    from sqlalchemy import update

    rows = session.execute(select(Customer.id, Customer.updated_at).where(
        Customer.needs_match.is_(True), Customer.status == "active").order_by(Customer.updated_at).limit(limit)).all()
    for customer_id, _seen in rows:
        customer = session.get(Customer, customer_id)
        match_customer(session, matcher, customer, threshold=threshold, max_candidates=max_candidates)
    for customer_id, seen in rows:
        # a profile that changed again meanwhile keeps its flag and is scored again
        session.execute(update(Customer.__table__).where(Customer.id == customer_id, Customer.updated_at == seen)
                        .values(needs_match=False))
    return len(rows)
