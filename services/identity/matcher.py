"""The bridge to the probabilistic match model (``socialzone_identity.matching``, built
separately): profile features of a customer, blocking keys kept in a table so that
candidates are one indexed lookup, and match suggestions above the threshold."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from sqlalchemy import delete, insert, select
from sqlmodel import Session

from socialzone_identity.models import BlockingKey, Customer, IdentifierLink

log = logging.getLogger(__name__)
I = IdentifierLink.__table__


class Matcher:
    def __init__(self, model: Any, features_class: type) -> None:
        self.model = model
        self.features_class = features_class
        if hasattr(features_class, "model_fields"):
            self.field_names = set(features_class.model_fields)
        elif dataclasses.is_dataclass(features_class):
            self.field_names = {f.name for f in dataclasses.fields(features_class)}
        else:
            self.field_names = set()

    def features(self, customer: Customer, identifiers: list[tuple[str, str]]) -> Any:
        fields = ((customer.profile or {}).get("fields") or {})
        values: dict[str, Any] = {name: fields[name]["v"] for name in fields}
        if hasattr(self.features_class, "from_attributes"):
            return self.features_class.from_attributes(values.pop("display_name", None), values,
                                                       [{"type": t, "value": v} for t, v in identifiers])
        if "birth_date" in values and isinstance(values["birth_date"], str):
            from datetime import date

            try:
                values["birth_date"] = date.fromisoformat(values["birth_date"])
            except ValueError:
                values.pop("birth_date")
        values["handles"] = [v for t, v in identifiers if t.endswith("_handle") or t in ("reddit", "mastodon")]
        values["emails"] = [v for t, v in identifiers if t == "email"]
        values["phones"] = [v for t, v in identifiers if t == "phone"]
        if self.field_names:
            values = {k: v for k, v in values.items() if k in self.field_names}
        return self.features_class(**values)

    def blocking_keys(self, features: Any) -> set[str]:
        return {k[:200] for k in self.model.blocking_keys(features)}

    def score(self, a: Any, b: Any) -> Any:
        return self.model.score(a, b)

    def reasons(self, match: Any) -> list[str]:
        return list(self.model.explain(match)) if hasattr(self.model, "explain") else []


def load_matcher() -> Matcher | None:
    """The match model, when the matching package is installed; None until then."""
    try:
        from socialzone_identity.matching import MatchModel, ProfileFeatures
    except ImportError:
        return None
    try:
        return Matcher(MatchModel.default(), ProfileFeatures)
    except Exception:  # a model that cannot load must not stop attribution
        log.exception("the match model could not be loaded; match suggestions from it are off")
        return None


def identifiers_of(session: Session, customer_id: str) -> list[tuple[str, str]]:
    return [(r.type, r.value) for r in session.execute(select(I.c.type, I.c.value).where(I.c.customer_id == customer_id))]


def explain(match: Any) -> dict[str, Any]:
    if hasattr(match, "to_dict"):
        return match.to_dict()
    features = getattr(match, "features", None)
    if features is None:
        return {}
    if hasattr(features, "model_dump"):
        return features.model_dump(mode="json")
    if isinstance(features, dict):
        return {k: (v.model_dump(mode="json") if hasattr(v, "model_dump")
                    else dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v) for k, v in features.items()}
    if isinstance(features, (list, tuple)):
        return {"features": [f.model_dump(mode="json") if hasattr(f, "model_dump")
                             else dataclasses.asdict(f) if dataclasses.is_dataclass(f) else f for f in features]}
    return {"features": str(features)}


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
    candidates = session.execute(
        select(BlockingKey.customer_id).where(BlockingKey.key.in_(keys), BlockingKey.customer_id != customer.id)
        .distinct().limit(max_candidates)).scalars().all()
    made = 0
    for other_id in candidates:
        other = session.get(Customer, other_id)
        if other is None or other.status != "active":
            continue
        match = matcher.score(features, matcher.features(other, identifiers_of(session, other_id)))
        if match.probability >= threshold:
            made += suggestions.suggest(session, customer.id, other_id, rule="match_model",
                                        probability=float(match.probability),
                                        weight=float(getattr(match, "weight", 0.0) or 0.0),
                                        features={**explain(match), "reasons": matcher.reasons(match)},
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
