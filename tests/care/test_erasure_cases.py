"""Erasure and the case lifecycle: an erased customer's open cases are closed (their agents'
capacity goes to waiting cases), nothing of a late interaction of theirs is kept, and no
trace of them stays in priority factors or, as an advocate, on other customers' cases."""

from __future__ import annotations

from datetime import datetime, timezone

from socialzone_common.events.marketing import TierChanged
from socialzone_common.events.privacy import ErasureRequested

from tests.care.conftest import AGENT, attributed


async def erase(care, customer_id: str, erasure_id: str = "er-x") -> None:
    done = len(care.events("care.erasure.completed"))
    await care.publish(ErasureRequested(erasure_id=erasure_id, customer_id=customer_id,
                                        requested_at=datetime.now(timezone.utc)))
    await care.until(lambda: len(care.events("care.erasure.completed")) > done)


async def open_manual(care, customer_id: str) -> dict:
    response = await care.client.post("/care/v1/cases", headers=AGENT,
                                      json={"customer_id": customer_id, "channel": "email", "text": "hi"})
    assert response.status_code == 201, response.text
    return response.json()


async def test_erasing_a_customer_closes_their_open_case_and_frees_the_agent_for_waiting_cases(care):
    await care.put("/agents/ann", {"name": "Ann", "queues": ["general"], "capacity": 1})
    erased = await open_manual(care, "cus-x")
    waiting = await open_manual(care, "cus-w")
    assert (erased["assignee_id"], waiting["assignee_id"]) == ("ann", None)

    await erase(care, "cus-x")

    detail = await care.get(erased["id"])
    assert detail["erased"] and detail["status"] == "resolved" and detail["assignee_id"] is None
    assert detail["resolution"] == "customer_erased"
    resolved = care.events("care.case.resolved", case_id=erased["id"])
    assert [(e["resolution"], e["subject"].startswith("erased:")) for e in resolved] == [("customer_erased", True)]
    # the waiting case got ann's freed slot at once
    assert (await care.get(waiting["id"]))["assignee_id"] == "ann"
    agents = (await care.client.get("/care/v1/agents", headers=AGENT)).json()
    assert agents[0]["load"] == 1
    # the erased case stays counted, as resolved
    stats = (await care.client.get("/care/v1/stats", headers=AGENT)).json()
    assert stats["erased_cases"] == 1 and stats["by_status"] == {"resolved": 1, "assigned": 1}
    still_gone = await care.client.post(f"/care/v1/cases/{erased['id']}/assign", headers=AGENT, json={})
    assert still_gone.status_code == 410


async def test_an_interaction_of_an_erased_customer_arriving_late_opens_nothing(care):
    await care.publish(attributed("cus-z", "first", name="Zed Z", handle="@zed"))
    await care.until(lambda: care.cases(customer_id="cus-z"))
    await erase(care, "cus-z")
    cases_before = len(care.cases())
    # attributed before the erasure, delivered after it (another topic, another consumer group)
    await care.publish(attributed("cus-z", "my order is broken, I'm Zed, call 0170 555", name="Zed Z",
                                  handle="@zed"))
    await care.until(lambda: care.runtime.workers[0].state.handled >= 2)
    assert care.cases(customer_id="cus-z") == [] and len(care.cases()) == cases_before
    assert all("Zed" not in str(c) and "0170" not in str(c) for c in care.cases())
    manual = await care.client.post("/care/v1/cases", headers=AGENT, json={"customer_id": "cus-z", "channel": "email"})
    assert manual.status_code == 410


async def test_erasure_removes_followers_and_value_from_the_priority_factors(care):
    await care.publish(attributed("cus-f", followers=987654, name="Fred F", handle="@fred"))
    [case] = await care.until(lambda: care.cases(customer_id="cus-f"))
    before = await care.get(case.id)
    await erase(care, "cus-f")
    detail = await care.get(case.id)
    assert "987" not in str(detail)
    reach = next(f for f in detail["priority_factors"] if f["name"] == "reach")
    value = next(f for f in detail["priority_factors"] if f["name"] == "customer_value")
    assert (reach["value"], reach["explanation"]) == (None, "erased")
    assert (value["value"], value["explanation"]) == (None, "erased")
    # the points (and so the priority) stay for the KPIs
    assert reach["points"] == next(f for f in before["priority_factors"] if f["name"] == "reach")["points"]
    assert detail["priority"] == before["priority"]


async def advocate_answered(care, advocate: str, customer: str, question: str):
    """A gold advocate for how-to questions is offered ``customer``'s question and answers
    it in the thread: (the case, the advocate's answer message)."""
    await care.publish(TierChanged(customer_id=advocate, previous_tier="none", tier="gold", score=80))
    await care.until(lambda: care.runtime.workers[2].state.handled >= 1)
    await care.put(f"/advocates/{advocate}/topics/how_to", {"accepted_answers": 2})
    await care.publish(attributed(customer, "how do I pair?", intents=("question",), sentiment=0.0,
                                  external_id=question))
    [case] = await care.until(lambda: care.cases(customer_id=customer))
    assert case.assignee_id == advocate
    await care.publish(attributed(advocate, "hold the button", intents=(), sentiment=0.5, in_reply_to=question))
    await care.until(lambda: care.events("care.case.responded"))
    return case, next(m for m in (await care.get(case.id))["messages"] if m["kind"] == "advocate")


async def test_an_erased_advocate_is_no_longer_named_on_the_cases_they_answered(care):
    case, answer = await advocate_answered(care, "adv-9", "cus-q", "q-9")
    accepted = await care.client.post(f"/care/v1/cases/{case.id}/responses/{answer['id']}/accept", headers=AGENT)
    assert accepted.status_code == 200

    await erase(care, "adv-9")

    detail = await care.get(case.id)
    assert "adv-9" not in str(detail)
    assert (detail["resolver_id"], detail["advocate_id"]) == (None, None)
    # the history keeps its entries (the case's KPIs), without the name
    kinds = [h["kind"] for h in detail["history"]]
    assert {"assigned", "advocate_answer", "resolved"} <= set(kinds)
    assert detail["resolved_by_advocate"] is True and detail["status"] == "resolved"


async def test_a_question_offered_to_an_erased_advocate_goes_to_an_agent(care):
    await care.put("/agents/ann", {"name": "Ann", "queues": ["general"]})
    await care.publish(TierChanged(customer_id="adv-8", previous_tier="none", tier="gold", score=80))
    await care.until(lambda: care.runtime.workers[2].state.handled >= 1)
    await care.put("/advocates/adv-8/topics/how_to", {"accepted_answers": 2})
    await care.publish(attributed("cus-o", "how do I pair?", intents=("question",), sentiment=0.0))
    [case] = await care.until(lambda: care.cases(customer_id="cus-o"))
    assert case.assignee_kind == "advocate"
    await erase(care, "adv-8")
    detail = await care.get(case.id)
    assert (detail["assignee_id"], detail["assignee_kind"]) == ("ann", "agent")
    assert "adv-8" not in str(detail)


async def test_an_erased_advocates_answer_can_no_longer_be_accepted(care):
    case, answer = await advocate_answered(care, "adv-7", "cus-p", "q-7")
    await erase(care, "adv-7")
    refused = await care.client.post(f"/care/v1/cases/{case.id}/responses/{answer['id']}/accept", headers=AGENT)
    assert refused.status_code == 409 and care.events("care.case.resolved") == []
