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


def compute(inputs: Inputs, weights: dict[str, float]) -> tuple[int, str, list[dict]]:
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
