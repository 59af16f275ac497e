"""The bridge to the probabilistic match model (``socialzone_identity.matching``, built
separately): profile features of a customer, blocking keys kept in a table so that
candidates are one indexed lookup, and match suggestions above the threshold."""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlmodel import Session

from socialzone_identity.matching import Match, MatchModel, ProfileFeatures
from socialzone_identity.matching.blocking import name_blocking_key
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

    def score(self, a: ProfileFeatures, b: ProfileFeatures, *,
              name_frequencies: dict[str, float] | None = None) -> Match:
        return self.model.score(a, b, name_frequencies=name_frequencies)

    def reasons(self, match: Match) -> list[str]:
        return list(self.model.explain(match))


def load_matcher() -> Matcher | None:
    """The match model; None (suggestions from it off) if its parameters cannot load."""
    try:
        return Matcher(MatchModel.default())
    except Exception:  # a model that cannot load must not stop attribution
        log.exception("the match model could not be loaded; match suggestions from it are off")
        return None


def match_pending(session: Session, matcher: Matcher, *, threshold: float, max_candidates: int,
                  limit: int = 200, max_block: int = 1000) -> int:
    """Score the customers whose profile is new or changed (``needs_match``); returns how
    many were scored. Runs apart from attribution so that attribution stays fast.

    Batched: up to ``limit`` profiles per call with a fixed number of queries (profiles,
    identifiers, the blocks of all their keys, the candidates and their identifiers), so
    a burst of new authors costs per profile only its features and scores. All reads
    come first and the writes (blocking keys, suggestions, ``needs_match``) last, so on
    SQLite the single write lock is held for a moment, not for the whole pass. A key
    shared by more than ``max_block`` customers (a very common name alone) is too
    unspecific to pick candidates and is skipped; the profile keeps it for later lookups.
    It commits once, between its reads and its writes (the caller commits the writes)."""
    from sqlalchemy import update

    C = Customer.__table__
    rows = session.execute(select(C.c.id, C.c.updated_at, C.c.profile).where(
        C.c.needs_match.is_(True), C.c.status == "active").order_by(C.c.updated_at).limit(limit)).all()
    if not rows:
        return 0
    pending = {r.id: r for r in rows}
    identifiers = _identifiers_of_many(session, list(pending))
    features = {cid: matcher.features(_Profile(r.profile), identifiers.get(cid, [])) for cid, r in pending.items()}
    keys = {cid: matcher.blocking_keys(f) for cid, f in features.items()}

    # the blocks of every key of the pass, in one query per 500 keys; this pass's own
    # profiles join them in memory (two new profiles of one pass meet each other)
    blocks: dict[str, set[str]] = {}
    every_key = sorted({k for ks in keys.values() for k in ks})
    for i in range(0, len(every_key), 500):
        for key, customer_id in session.execute(select(BlockingKey.key, BlockingKey.customer_id).where(
                BlockingKey.key.in_(every_key[i:i + 500]))):
            blocks.setdefault(key, set()).add(customer_id)
    frequencies = _name_frequencies(session, matcher, features, blocks)
    for cid, ks in keys.items():
        for key in ks:
            blocks.setdefault(key, set()).add(cid)

    chosen: dict[str, list[str]] = {}
    for cid, ks in keys.items():
        shared: dict[str, int] = {}
        for key in ks:
            members = blocks.get(key, ())
            if len(members) > max_block:
                continue
            for other in members:
                if other != cid:
                    shared[other] = shared.get(other, 0) + 1
        # the candidates that share the most blocking keys first, so the cap drops the weakest
        chosen[cid] = sorted(shared, key=lambda o: (-shared[o], o))[:max_candidates]
    others = sorted({o for cands in chosen.values() for o in cands if o not in pending})
    profiles: dict[str, Any] = {cid: r.profile for cid, r in pending.items()}
    for i in range(0, len(others), 500):
        for cid, status, profile in session.execute(select(C.c.id, C.c.status, C.c.profile).where(
                C.c.id.in_(others[i:i + 500]))):
            if status == "active":
                profiles[cid] = profile
    other_identifiers = _identifiers_of_many(session, [o for o in others if o in profiles])
    matches: list[tuple[str, str, Match]] = []
    for cid, cands in chosen.items():
        for other in cands:
            if other not in profiles:
                continue  # merged or erased meanwhile
            theirs = features.get(other)
            if theirs is None:
                theirs = features[other] = matcher.features(_Profile(profiles[other]), other_identifiers.get(other, []))
            match = matcher.score(features[cid], theirs, name_frequencies=frequencies)
            if match.probability >= threshold:
                matches.append((cid, other, match))

    from socialzone_identity import suggestions

    # End the reading transaction before the first write: on SQLite a transaction that has
    # read cannot start writing once attribution has committed since (SQLITE_BUSY_SNAPSHOT),
    # and the write lock is then held only for the few statements below.
    session.commit()
    still = set(session.execute(select(C.c.id).where(C.c.id.in_(list(pending)), C.c.status == "active")).scalars())
    session.execute(delete(BlockingKey.__table__).where(BlockingKey.customer_id.in_(list(pending))))
    new_keys = [{"key": k, "customer_id": cid} for cid, ks in keys.items() if cid in still for k in sorted(ks)]
    if new_keys:
        session.execute(insert(BlockingKey.__table__), new_keys)
    suggestions.suggest_many(session, [
        (cid, other, {"rule": "match_model", "probability": float(match.probability), "weight": float(match.weight),
                      "features": {**match.to_dict(), "reasons": matcher.reasons(match)}})
        for cid, other, match in matches if cid in still])
    for customer_id, r in pending.items():
        # a profile that changed again meanwhile keeps its flag and is scored again
        session.execute(update(C).where(C.c.id == customer_id, C.c.updated_at == r.updated_at)
                        .values(needs_match=False))
    return len(rows)


def _name_frequencies(session: Session, matcher: Matcher, features: dict[str, ProfileFeatures],
                      indexed: dict[str, set[str]]) -> dict[str, float]:
    """How common each pending profile's full name is among the customers with a name.

    Two sources, so that a burst of new namesakes is counted before its first pass: the
    customers already indexed (their ``fn`` blocks in ``indexed``, as read from the table,
    and one indexed count of everyone with an ``fn`` key) and every customer still waiting
    for the matcher, by display name (one grouped query). A pending customer indexed
    before its profile changed counts twice: an estimate, off by the few that changed."""
    names = {f.normalized.name_key: name_blocking_key(f.normalized) for f in features.values() if f.normalized.name_key}
    if not names:
        return {}
    K, C = BlockingKey.__table__, Customer.__table__
    # The fn keys as an index range. The bound is "fo", not "fn;": a linguistic collation
    # (en_US on PostgreSQL) ignores the colon, and no other kind starts with the letters "fn".
    named = (K.c.key >= "fn:") & (K.c.key < "fo")
    population = session.execute(select(func.count()).where(named)).scalar_one()
    pass_ids = list(features)
    for i in range(0, len(pass_ids), 500):  # this pass's profiles are counted as pending below
        population -= session.execute(select(func.count()).where(named, K.c.customer_id.in_(pass_ids[i:i + 500]))).scalar_one()
    waiting: dict[str, int] = {}
    for display, n in session.execute(select(C.c.display_name, func.count()).where(
            C.c.needs_match.is_(True), C.c.status == "active", C.c.display_name.is_not(None)).group_by(C.c.display_name)):
        name = _name_key(display)
        if name:
            waiting[name] = waiting.get(name, 0) + n
    for name, n in waiting.items():
        population += n
    pass_set = set(pass_ids)
    counts = {name: len(indexed.get(key, set()) - pass_set) + waiting.get(name, 0) for name, key in names.items()}
    return matcher.model.name_frequencies(counts, population)


@lru_cache(maxsize=100_000)
def _name_key(display_name: str) -> str | None:
    """The full-name key of a display name. Cached: every pass groups all the customers still
    waiting, and under a burst of new authors the same names come back pass after pass."""
    return ProfileFeatures(display_name=display_name).normalized.name_key


class _Profile:
    """What :meth:`Matcher.features` reads of a customer."""

    __slots__ = ("profile",)

    def __init__(self, profile: dict | None) -> None:
        self.profile = profile


def _identifiers_of_many(session: Session, customer_ids: list[str]) -> dict[str, list[tuple[str, str]]]:
    found: dict[str, list[tuple[str, str]]] = {}
    for i in range(0, len(customer_ids), 500):
        for kind, value, customer_id in session.execute(select(I.c.type, I.c.value, I.c.customer_id).where(
                I.c.customer_id.in_(customer_ids[i:i + 500])).order_by(I.c.id)):
            found.setdefault(customer_id, []).append((kind, value))
    return found
