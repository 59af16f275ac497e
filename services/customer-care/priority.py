"""Explained priority: 1 (can wait) to 100 (drop everything).

Each factor yields a value in [0, 1]; its points are that value times the factor's
weight (``CareSettings.priority_weights``, the most points it can add). The priority
is the sum, clamped to 1..100. Every factor is stored and returned with the case, so
an agent can see why one case comes before another.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

TIER_VALUE = {"none": 0.0, "bronze": 0.3, "silver": 0.5, "gold": 0.8, "platinum": 1.0}
INTENT_VALUE = {"churn_risk": 1.0, "complaint": 0.6, "question": 0.2, "purchase_intent": 0.4}
SEVERITY_VALUE = {"critical": 1.0, "warning": 0.6, "info": 0.3}


@dataclass(frozen=True)
class Inputs:
    intents: tuple[str, ...] = ()
    sentiment_score: float | None = None
    followers: int | None = None
    lifetime_value: float = 0.0
    advocate_tier: str = "none"
    open_deals: int = 0
    crisis: tuple[tuple[str, str], ...] = ()  # (topic, severity) of active crises on the case's topics
    sla_used: float | None = None  # fraction of the tightest running SLA target used (>= 1: breached)
    sla_metric: str | None = None
    escalated: bool = False


def label(priority: int) -> str:
    if priority >= 75:
        return "urgent"
    if priority >= 50:
        return "high"
    if priority >= 25:
        return "normal"
    return "low"


def _factor(name: str, value, weight: float, share: float, explanation: str) -> dict:
    share = min(1.0, max(0.0, share))
    return {"name": name, "value": value, "weight": weight, "points": round(weight * share, 2),
            "explanation": explanation}


FACTORS = ("base", "intent", "sentiment", "reach", "customer_value", "advocate_tier", "open_deals", "crisis", "sla",
           "escalation")
_MEMO_LIMIT = 4096


def _part(weight: float, share: float, explanation: str) -> tuple[float, str]:
    """A factor's points and explanation (as :func:`_factor`)."""
    return round(weight * min(1.0, max(0.0, share)), 2), explanation


def _intent(weight: float, intents: tuple[str, ...]) -> tuple[float, str]:
    return _part(weight, max((INTENT_VALUE.get(i, 0.0) for i in intents), default=0.0),
                 f"intents: {', '.join(intents) or 'none'}")


def _sentiment(weight: float, s: float) -> tuple[float, str]:
    return _part(weight, -s, f"sentiment {s:+.2f} ({'negative' if s < 0 else 'not negative'})")


def _reach(weight: float, followers: int | None) -> tuple[float, str]:
    f = followers or 0
    return _part(weight, math.log10(1 + f) / 6, f"{f:,} followers (1M or more: full weight)")


def _value(weight: float, lifetime_value: float) -> tuple[float, float, str]:
    v = max(0.0, lifetime_value)
    return (round(lifetime_value, 2),
            *_part(weight, math.log10(1 + v) / 4, f"lifetime value {v:,.2f} from transactions (10,000: full weight)"))


def _tier(weight: float, tier: str) -> tuple[float, str]:
    return _part(weight, TIER_VALUE.get(tier, 0.0), f"advocate tier {tier}")


def _deals(weight: float, n: int) -> tuple[float, str]:
    return _part(weight, 0.0 if n == 0 else 0.7 + 0.3 * (n - 1), f"{n} open lead(s) or deal(s) in sales")


def _crisis(weight: float, crisis: tuple[tuple[str, str], ...]) -> tuple[float, str]:
    return _part(weight, max((SEVERITY_VALUE.get(sev, 0.6) for _, sev in crisis), default=0.0),
                 "active crisis on " + ", ".join(t for t, _ in crisis) if crisis
                 else "no active crisis on the case's topics")


def _sla(weight: float, used: float, metric: str | None) -> tuple[float, float, str]:
    return (round(used, 3), *_part(weight, used or 0.0, f"{min(used, 1) * 100:.0f}% of the {metric} target used"
                                   + (" (breached)" if used >= 1 else "")))


def _remember(memo: dict, key, value):
    if len(memo) >= _MEMO_LIMIT:
        memo.clear()
    memo[key] = value
    return value


def _memo(memo: dict, key, part, *args):
    """``part(*args)``, remembered under ``key``."""
    found = memo.get(key)
    return found if found is not None else _remember(memo, key, part(*args))


def _key(number):
    """A memo key that keeps apart what compares equal but is shown differently (1 and 1.0,
    0.0 and -0.0)."""
    return (type(number), number, math.copysign(1.0, number) if type(number) is float else None)


class _Weights:
    """One set of weights and what the factors made of them so far: a factor's points and
    explanation depend only on its input, and the cases of a batch bring the same inputs
    again and again (formatting the explanations was most of the cost). An input is
    remembered under a key that keeps apart what compares equal but prints differently
    (0.0 and -0.0; 1 and 1.0 by the type checks); other inputs are worked out each time."""

    def __init__(self, weights: dict[str, float]) -> None:
        self.snapshot = dict(weights)
        self.w = w = {name: float(weights.get(name, 0.0)) for name in FACTORS}
        self.base = _part(w["base"], 1.0, "every case starts here")
        self.no_sentiment = _part(w["sentiment"], 0.0, "unknown sentiment")
        self.no_crisis = _crisis(w["crisis"], ())
        self.no_sla = _part(w["sla"], 0.0, "no SLA clock running")
        self.escalation = {True: _part(w["escalation"], 1.0, "escalated after an SLA breach"),
                           False: _part(w["escalation"], 0.0, "not escalated")}
        self.intent: dict = {}
        self.sentiment: dict = {}
        self.reach: dict = {}
        self.value: dict = {}
        self.tier: dict = {}
        self.deals: dict = {}
        self.crisis: dict = {}
        self.sla: dict = {}


_last: list[_Weights] = []


def _weights(weights: dict[str, float]) -> _Weights:
    cached = _last[0] if _last else None
    if cached is None or cached.snapshot != weights:
        cached = _Weights(weights)
        _last[:] = [cached]
    return cached


def compute(inputs: Inputs, weights: dict[str, float]) -> tuple[int, str, list[dict]]:
    """The priority, its label and its factors: the same as :func:`compute_plain`, which
    spells the rules out; this one remembers the parts already worked out (see _Weights)."""
    cw = _weights(weights)
    w = cw.w

    intents = inputs.intents
    intent = _memo(cw.intent, intents, _intent, w["intent"], intents)
    s = inputs.sentiment_score
    sentiment = cw.no_sentiment if s is None else _memo(cw.sentiment, _key(s), _sentiment, w["sentiment"], s)
    followers = inputs.followers
    reach = _memo(cw.reach, _key(followers), _reach, w["reach"], followers)
    lifetime = inputs.lifetime_value
    value = _memo(cw.value, _key(lifetime), _value, w["customer_value"], lifetime)
    tier_name = inputs.advocate_tier
    tier = _memo(cw.tier, tier_name, _tier, w["advocate_tier"], tier_name)
    n = inputs.open_deals
    deals = _memo(cw.deals, _key(n), _deals, w["open_deals"], n)
    crises = inputs.crisis
    crisis = _memo(cw.crisis, crises, _crisis, w["crisis"], crises) if crises else cw.no_crisis
    used, metric = inputs.sla_used, inputs.sla_metric
    sla = (None, *cw.no_sla) if used is None else _memo(cw.sla, (_key(used), metric), _sla, w["sla"], used, metric)

    escalated = inputs.escalated
    escalation = cw.escalation[bool(escalated)]

    factors = [
        {"name": "base", "value": None, "weight": w["base"], "points": cw.base[0], "explanation": cw.base[1]},
        {"name": "intent", "value": list(intents), "weight": w["intent"], "points": intent[0],
         "explanation": intent[1]},
        {"name": "sentiment", "value": s, "weight": w["sentiment"], "points": sentiment[0],
         "explanation": sentiment[1]},
        {"name": "reach", "value": followers, "weight": w["reach"], "points": reach[0], "explanation": reach[1]},
        {"name": "customer_value", "value": value[0], "weight": w["customer_value"], "points": value[1],
         "explanation": value[2]},
        {"name": "advocate_tier", "value": tier_name, "weight": w["advocate_tier"], "points": tier[0],
         "explanation": tier[1]},
        {"name": "open_deals", "value": n, "weight": w["open_deals"], "points": deals[0], "explanation": deals[1]},
        {"name": "crisis", "value": [t for t, _ in crises], "weight": w["crisis"], "points": crisis[0],
         "explanation": crisis[1]},
        {"name": "sla", "value": sla[0], "weight": w["sla"], "points": sla[1], "explanation": sla[2]},
        {"name": "escalation", "value": escalated, "weight": w["escalation"], "points": escalation[0],
         "explanation": escalation[1]},
    ]
    total = sum([f["points"] for f in factors])
    priority = int(min(100, max(1, round(total))))
    return priority, label(priority), factors


def compute_plain(inputs: Inputs, weights: dict[str, float]) -> tuple[int, str, list[dict]]:
    w = lambda name: float(weights.get(name, 0.0))  # noqa: E731
    factors = [_factor("base", None, w("base"), 1.0, "every case starts here")]

    intent_share = max((INTENT_VALUE.get(i, 0.0) for i in inputs.intents), default=0.0)
    factors.append(_factor("intent", list(inputs.intents), w("intent"), intent_share,
                           f"intents: {', '.join(inputs.intents) or 'none'}"))

    s = inputs.sentiment_score
    factors.append(_factor("sentiment", s, w("sentiment"), 0.0 if s is None else -s,
                           "unknown sentiment" if s is None else
                           f"sentiment {s:+.2f} ({'negative' if s < 0 else 'not negative'})"))

    f = inputs.followers or 0
    factors.append(_factor("reach", inputs.followers, w("reach"), math.log10(1 + f) / 6,
                           f"{f:,} followers (1M or more: full weight)"))

    v = max(0.0, inputs.lifetime_value)
    factors.append(_factor("customer_value", round(inputs.lifetime_value, 2), w("customer_value"),
                           math.log10(1 + v) / 4, f"lifetime value {v:,.2f} from transactions (10,000: full weight)"))

    factors.append(_factor("advocate_tier", inputs.advocate_tier, w("advocate_tier"),
                           TIER_VALUE.get(inputs.advocate_tier, 0.0), f"advocate tier {inputs.advocate_tier}"))

    n = inputs.open_deals
    factors.append(_factor("open_deals", n, w("open_deals"), 0.0 if n == 0 else 0.7 + 0.3 * (n - 1),
                           f"{n} open lead(s) or deal(s) in sales"))

    crisis_share = max((SEVERITY_VALUE.get(sev, 0.6) for _, sev in inputs.crisis), default=0.0)
    factors.append(_factor("crisis", [t for t, _ in inputs.crisis], w("crisis"), crisis_share,
                           "active crisis on " + ", ".join(t for t, _ in inputs.crisis) if inputs.crisis
                           else "no active crisis on the case's topics"))

    used = inputs.sla_used
    factors.append(_factor("sla", None if used is None else round(used, 3), w("sla"), used or 0.0,
                           "no SLA clock running" if used is None else
                           f"{min(used, 1) * 100:.0f}% of the {inputs.sla_metric} target used"
                           + (" (breached)" if used >= 1 else "")))

    factors.append(_factor("escalation", inputs.escalated, w("escalation"), 1.0 if inputs.escalated else 0.0,
                           "escalated after an SLA breach" if inputs.escalated else "not escalated"))

    total = sum(f["points"] for f in factors)
    priority = int(min(100, max(1, round(total))))
    return priority, label(priority), factors
