"""Explained priority: each factor, its weight, and the recomputation when a factor changes."""

from __future__ import annotations

from datetime import datetime, timezone

from socialzone_common.events.common import TimeWindow
from socialzone_common.events.insights import AlertRaised, AlertResolved
from socialzone_common.events.marketing import TierChanged
from socialzone_common.events.sales import DealLost, LeadCreated

from tests.care.conftest import AGENT, attributed, factor, order

FACTORS = ["base", "intent", "sentiment", "reach", "customer_value", "advocate_tier", "open_deals", "crisis",
           "sla", "escalation"]


async def one_case(care, customer_id: str, **kwargs) -> dict:
    await care.publish(attributed(customer_id, **kwargs))
    [case] = await care.until(lambda: care.cases(customer_id=customer_id))
    return await care.get(case.id)


async def test_every_factor_and_its_weight_is_stored_and_returned(care):
    case = await one_case(care, "cus-p1")
    assert [f["name"] for f in case["priority_factors"]] == FACTORS
    weights = care.runtime.settings.priority_weights
    for f in case["priority_factors"]:
        assert f["weight"] == weights[f["name"]] and 0 <= f["points"] <= f["weight"] and f["explanation"]
    assert case["priority"] == round(sum(f["points"] for f in case["priority_factors"]))
    assert case["priority_label"] in ("low", "normal", "high", "urgent")


async def test_negative_sentiment_raises_priority(care):
    angry = await one_case(care, "cus-p2", sentiment=-0.9)
    calm = await one_case(care, "cus-p3", sentiment=0.1)
    assert factor(angry, "sentiment")["value"] == -0.9 and factor(angry, "sentiment")["points"] == 13.5
    assert factor(calm, "sentiment")["points"] == 0
    assert angry["priority"] > calm["priority"]


async def test_an_author_with_a_large_reach_comes_first(care):
    famous = await one_case(care, "cus-p4", followers=1_000_000)
    unknown = await one_case(care, "cus-p5", followers=3)
    assert factor(famous, "reach")["points"] == factor(famous, "reach")["weight"]
    assert factor(unknown, "reach")["points"] <= 1
    assert famous["priority"] > unknown["priority"]


async def test_customer_value_from_transactions_counts_and_updates_open_cases(care):
    await care.publish(order("cus-p6", "900.00"), order("cus-p6", "99.99"))
    case = await one_case(care, "cus-p6")
    assert factor(case, "customer_value")["value"] == 999.99
    before = case["priority"]
    await care.publish(order("cus-p6", "9000"))
    await care.until(lambda: care.cases(customer_id="cus-p6")[0].priority > before)
    case = await care.get(case["id"])
    assert factor(case, "customer_value")["value"] == 9999.99
    assert any(h["kind"] == "priority_changed" and h["reason"] == "customer value changed" for h in case["history"])


async def test_advocate_tier_from_marketing_recomputes_priority(care):
    case = await one_case(care, "cus-p7")
    assert factor(case, "advocate_tier")["value"] == "none"
    await care.publish(TierChanged(customer_id="cus-p7", previous_tier="none", tier="gold", score=88))
    await care.until(lambda: care.cases(customer_id="cus-p7")[0].priority > case["priority"])
    case = await care.get(case["id"])
    assert factor(case, "advocate_tier") | {"explanation": ""} == {
        "name": "advocate_tier", "value": "gold", "weight": 10.0, "points": 8.0, "explanation": ""}
    # a gold advocate's next case runs on the vip SLA policy
    await care.publish(attributed("cus-p7", "my bill is wrong", keywords=("bill",)))
    await care.until(lambda: len(care.cases(customer_id="cus-p7")) == 2)
    assert care.cases(customer_id="cus-p7")[1].sla_policy == "vip"


async def test_open_deals_from_sales_raise_priority_until_the_deal_is_lost(care):
    case = await one_case(care, "cus-p8")
    await care.publish(LeadCreated(lead_id="lead-1", customer_id="cus-p8", source="interaction", score=70))
    await care.until(lambda: factor(care.cases(customer_id="cus-p8")[0].__dict__, "open_deals")["value"] == 1)
    with_deal = care.cases(customer_id="cus-p8")[0].priority
    assert with_deal > case["priority"]
    await care.publish(DealLost(deal_id="d-1", lead_id="lead-1", customer_id="cus-p8", reason="price"))
    await care.until(lambda: care.cases(customer_id="cus-p8")[0].priority == case["priority"])


def alert(topic: str, severity: str = "critical", kind: str = "crisis") -> AlertRaised:
    now = datetime.now(timezone.utc)
    return AlertRaised(alert_id=f"al-{topic}", kind=kind, topic=topic, severity=severity, metric="negative_share",
                       observed=0.8, expected=0.1, window=TimeWindow(start=now, end=now))


async def test_an_active_crisis_on_the_case_topic_raises_priority_until_resolved(care):
    hit = await one_case(care, "cus-p9", brands=("Acme",))
    other = await one_case(care, "cus-p10", brands=("Other",))
    await care.publish(alert("brand:acme"))
    await care.until(lambda: care.cases(customer_id="cus-p9")[0].priority > hit["priority"])
    case = await care.get(hit["id"])
    assert factor(case, "crisis")["value"] == ["brand:acme"] and factor(case, "crisis")["points"] == 15
    assert care.cases(customer_id="cus-p10")[0].priority == other["priority"]
    await care.publish(AlertResolved(alert_id="al-brand:acme", kind="crisis", topic="brand:acme",
                                     resolved_by="recovered", raised_at=datetime.now(timezone.utc)))
    await care.until(lambda: care.cases(customer_id="cus-p9")[0].priority == hit["priority"])


async def test_a_non_crisis_alert_does_not_count(care):
    case = await one_case(care, "cus-p11", keywords=("outage",))
    await care.publish(alert("keyword:outage", kind="anomaly"))
    await care.until(lambda: care.runtime.workers[2].state.handled >= 1)
    assert care.cases(customer_id="cus-p11")[0].priority == case["priority"]


async def test_sla_time_used_raises_priority_as_the_clock_runs(care):
    case = await one_case(care, "cus-p12")
    assert factor(case, "sla")["value"] == 0
    await care.advance(hours=2)  # half of the 4 business hours of the first-response target
    case = await care.get(case["id"])
    assert factor(case, "sla")["value"] == 0.5 and factor(case, "sla")["points"] == 5


async def test_the_queue_is_ordered_by_priority(care):
    await care.publish(attributed("cus-q1", sentiment=0.0, followers=0),
                       attributed("cus-q2", sentiment=-1.0, followers=500_000, intents=("churn_risk",)),
                       attributed("cus-q3", sentiment=-0.5, followers=50))
    await care.until(lambda: len(care.cases()) == 3)
    queue = (await care.client.get("/care/v1/queues/general/cases", headers=AGENT)).json()["items"]
    assert [c["customer_id"] for c in queue] == ["cus-q2", "cus-q3", "cus-q1"]
