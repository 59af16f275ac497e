"""The Fellegi–Sunter match model: levels, m/u probabilities, prior, posterior.

For a pair of profiles each comparison falls into one level (or is missing on a side).
A level ``l`` of comparison ``k`` has ``m = P(level | same person)`` and
``u = P(level | different people)``; its Bayes factor is ``m/u`` and its weight
``log2(m/u)``. The pair's weight is the sum over the comparisons that are not missing,
and its probability the posterior::

    odds = prior / (1 - prior) * 2 ** weight;   probability = odds / (1 + odds)

``prior`` is the probability that a *candidate* pair (one sharing a blocking key) is a
match. Parameters live in ``data/match_model.json``; ``training.py`` reproduces them.

Name frequency: the name levels' ``u`` is an average over all names, which overstates a
common name ("Ana Silva" shared by hundreds of customers). When two profiles show the same
full name and the caller knows how often that name occurs among the other customers
(:meth:`MatchModel.name_frequency`), the names together weigh at most
``log2(m / frequency)``, with ``m`` of ``full_name`` exact (how often one person shows the
same name twice): a rare name keeps its weight, a common one loses the excess (Splink's
term-frequency adjustment, applied downwards only).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from collections.abc import Mapping
from typing import Any

from socialzone_identity.matching import blocking
from socialzone_identity.matching.comparisons import BY_NAME, COMPARISONS, MISSING, Comparison
from socialzone_identity.matching.features import ProfileFeatures

PARAMETERS_FILE = "match_model.json"
_MIN_PROB = 1e-9
NAME_COMPARISONS = frozenset({"given_name", "surname", "full_name"})
NAME_FREQUENCY_PSEUDO_CUSTOMERS = 10_000
"""How many customers' worth of the model's own name rate a name frequency is smoothed with:
a handful of namesakes in a new, small population moves it little."""


@dataclass(frozen=True, slots=True)
class FeatureComparison:
    level: str
    weight: float
    """log2 Bayes factor of this level: positive is evidence for a match."""


@dataclass(frozen=True, slots=True)
class Match:
    probability: float
    """Posterior probability that the two profiles are the same person, 0..1."""
    weight: float
    """Sum of the log2 Bayes factors of the compared features (the prior not included)."""
    features: dict[str, FeatureComparison] = field(default_factory=dict)
    """The compared features (missing ones are left out), in the model's order."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, e.g. to store with a match suggestion."""
        return {"probability": self.probability, "weight": self.weight,
                "features": {k: {"level": v.level, "weight": v.weight} for k, v in self.features.items()}}


def _weight(m: float, u: float) -> float:
    return math.log2(max(m, _MIN_PROB) / max(u, _MIN_PROB))


class MatchModel:
    """Scores pairs of ``ProfileFeatures`` and gives their blocking keys."""

    def __init__(self, parameters: dict[str, Any]) -> None:
        self.parameters = parameters
        self.prior: float = float(parameters["prior"])
        self.threshold: float = float(parameters["threshold"])
        """Probability from which a candidate pair becomes a match suggestion."""
        self._prior_weight = math.log2(self.prior / (1 - self.prior))
        table: list[tuple[Comparison, tuple[str, ...], tuple[float, ...], tuple[FeatureComparison, ...], bool]] = []
        for comparison in COMPARISONS:
            spec = parameters["comparisons"].get(comparison.name)
            if spec is None:
                continue  # a comparison the parameters leave out is not used
            levels = spec["levels"]
            weights = tuple(_weight(levels[lv]["m"], levels[lv]["u"]) for lv in comparison.levels)
            table.append((comparison, comparison.levels, weights,
                          tuple(FeatureComparison(lv, round(w, 3)) for lv, w in zip(comparison.levels, weights)),
                          comparison.name in NAME_COMPARISONS))
        self._table = tuple(table)
        full_name = parameters["comparisons"].get("full_name")
        exact = full_name["levels"]["exact"] if full_name else None
        self._name_m, self._name_u = (float(exact["m"]), float(exact["u"])) if exact else (None, None)

    # --- construction -----------------------------------------------------------------------

    @classmethod
    def default(cls) -> MatchModel:
        """The parameters shipped with the package (``data/match_model.json``)."""
        return _default()

    @classmethod
    def from_file(cls, path: str | Path) -> MatchModel:
        return cls(json.loads(Path(path).read_text()))

    def without(self, *names: str) -> MatchModel:
        """The same model with some comparisons switched off (e.g. ``"ssn", "birth_date"``)."""
        unknown = set(names) - set(BY_NAME)
        if unknown:
            raise ValueError(f"unknown comparisons: {sorted(unknown)}")
        params = dict(self.parameters)
        params["comparisons"] = {k: v for k, v in self.parameters["comparisons"].items() if k not in names}
        return MatchModel(params)

    # --- scoring ------------------------------------------------------------------------------

    def probability_of(self, weight: float) -> float:
        total = self._prior_weight + weight
        if total > 60:
            return 1.0
        if total < -60:
            return 0.0
        odds = 2.0 ** total
        return odds / (1.0 + odds)

    def name_frequency(self, others_with_name: int, others: int) -> float | None:
        """The share of *other* customers (``others`` of them) showing a name that
        ``others_with_name`` of them show, smoothed toward the model's own rate with
        ``NAME_FREQUENCY_PSEUDO_CUSTOMERS``; None if the model compares no full names."""
        if self._name_u is None:
            return None
        pseudo = NAME_FREQUENCY_PSEUDO_CUSTOMERS
        return (max(0, others_with_name) + pseudo * self._name_u) / (max(0, others) + pseudo)

    def name_frequencies(self, counts: Mapping[str, int], population: int) -> dict[str, float]:
        """``score``'s ``name_frequencies`` from how many profiles of ``population`` show each
        name (by ``normalized.name_key``): a scored pair is two of them, the others count."""
        if self._name_u is None:
            return {}
        return {name: self.name_frequency(n - 2, population - 2) for name, n in counts.items()}

    def score(self, a: ProfileFeatures, b: ProfileFeatures, *,
              name_frequencies: Mapping[str, float] | None = None) -> Match:
        """Compare two profiles. Symmetric: ``score(a, b) == score(b, a)``.

        ``name_frequencies``: :meth:`name_frequency` by ``normalized.name_key``; when both
        show the same name and its frequency is known, the name weighs at most
        ``log2(m / frequency)`` (the cut shows as the ``name_frequency`` feature)."""
        na, nb = a.normalized, b.normalized
        total = names = 0.0
        features: dict[str, FeatureComparison] = {}
        for comparison, _levels, weights, shown, is_name in self._table:
            level = comparison.compare(na, nb)
            if level != MISSING:
                total += weights[level]
                if is_name:
                    names += weights[level]
                features[comparison.name] = shown[level]
        if name_frequencies:
            cut = self._name_cut(na, nb, names, name_frequencies)
            if cut is not None:
                total += cut[0]
                features["name_frequency"] = cut[1]
        return Match(self.probability_of(total), round(total, 6), features)

    def _name_cut(self, na, nb, names: float, frequencies: Mapping[str, float]) -> tuple[float, FeatureComparison] | None:
        key = na.name_key
        if not key or key != nb.name_key or self._name_m is None:
            return None
        frequency = frequencies.get(key)
        if not frequency:
            return None
        cut = math.log2(self._name_m / frequency) - names
        if cut >= 0:
            return None
        return cut, FeatureComparison(f"1_in_{max(1, round(1 / frequency))}", round(cut, 3))

    def weight(self, a: ProfileFeatures, b: ProfileFeatures, *,
               name_frequencies: Mapping[str, float] | None = None) -> float:
        """The pair's weight alone: for bulk scoring."""
        return self.score(a, b, name_frequencies=name_frequencies).weight

    def levels(self, a: ProfileFeatures, b: ProfileFeatures) -> list[int]:
        """The level index of every comparison (``-1``: missing), in ``COMPARISONS`` order: for training."""
        na, nb = a.normalized, b.normalized
        return [c.compare(na, nb) for c in COMPARISONS]

    def is_suggestion(self, match: Match) -> bool:
        return match.probability >= self.threshold

    # --- blocking -----------------------------------------------------------------------------

    def blocking_keys(self, p: ProfileFeatures) -> set[str]:
        """Keys under which identity indexes the profile; candidates are profiles sharing one."""
        return blocking.blocking_keys(p.normalized)

    # --- explanation --------------------------------------------------------------------------

    def explain(self, match: Match) -> list[str]:
        """Short reasons, strongest first, e.g. ``"same surname (+11.2)"``."""
        p = match.probability
        shown = ">99.99%" if p >= 0.9999 else "<0.01%" if p <= 0.0001 else f"{p:.2%}"
        lines = [f"match probability {shown} (weight {match.weight:+.1f}, prior {self.prior:.0%})"]
        ranked = sorted(match.features.items(), key=lambda item: -abs(item[1].weight))
        for name, fc in ranked:
            if abs(fc.weight) < 0.05:
                continue
            lines.append(f"{_phrase(name, fc.level)} ({fc.weight:+.1f})")
        if len(lines) == 1:
            lines.append("no comparable details: neither for nor against a match")
        return lines

    def describe(self) -> list[dict[str, Any]]:
        """Every comparison level with m, u and weight: the model card."""
        rows = []
        for comparison, levels, weights, _shown, _name in self._table:
            spec = self.parameters["comparisons"][comparison.name]["levels"]
            for level, w in zip(levels, weights):
                rows.append({"comparison": comparison.name, "level": level, "m": spec[level]["m"],
                             "u": spec[level]["u"], "weight": round(w, 2)})
        return rows


_LABELS = {
    "given_name": "given name", "surname": "surname", "full_name": "name", "birth_date": "birth date",
    "ssn": "national id", "street_number": "house number", "street": "street", "city": "city",
    "postcode": "postcode", "region": "region", "country": "country", "location": "location",
    "handles": "handle", "avatar_url": "avatar", "emails": "e-mail", "phones": "phone number",
    "name_frequency": "name",
}


def _phrase(name: str, level: str) -> str:
    label = _LABELS.get(name, name)
    if name == "name_frequency":
        return f"a common name: about 1 in {int(level.rsplit('_', 1)[-1]):,} customers has it"
    if level == "exact":
        return f"same {label}"
    if level == "else":
        return f"different {label}"
    if level.startswith("jw_"):
        return f"similar {label} (Jaro-Winkler ≥ {level[3:]})"
    special = {
        "nickname": f"{label}s are nicknames of each other",
        "swapped": "given name and surname swapped",
        "initial": f"{label} matches an initial",
        "transposed_day_month": "birth date with day and month swapped",
        "one_part_differs": "birth date differs in day, month or year only",
        "year_only": "same birth year, other date",
        "one_edit": f"{label} differs by one typo",
        "prefix": f"{label} in the same district",
        "same_local_part": "same e-mail user name at another provider",
    }
    return special.get(level, f"{label}: {level}")


@cache
def _default() -> MatchModel:
    text = resources.files("socialzone_identity.matching").joinpath("data", PARAMETERS_FILE).read_text()
    return MatchModel(json.loads(text))
