"""Advocates as first-tier support: a public how-to question goes to an advocate with
accepted answers on its topic, with a timer; an accepted answer resolves the case with
resolved_by_advocate (marketing credits it); no accepted answer in time falls back to an
agent before the first-response SLA would breach."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from socialzone_common.events.common import TimeWindow
from socialzone_common.events.insights import AlertRaised
from socialzone_common.events.marketing import AdvocateFlagged, TierChanged

from tests.care.conftest import AGENT, LEAD, attributed

QUESTION = dict(intents=("question",), sentiment=0.0, kind="post")


async def make_advocate(care, advocate_id: str = "adv-1", tier: str = "gold", answers: int = 3) -> None:
    await care.publish(TierChanged(customer_id=advocate_id, previous_tier="none", tier=tier, score=80))
    await care.until(lambda: care.runtime.workers[2].state.handled >= 1)
    await care.put(f"/advocates/{advocate_id}/topics/how_to", {"accepted_answers": answers})


async def test_a_public_how_to_question_is_offered_to_an_advocate_with_a_timer(care):
    await make_advocate(care)
    await care.put("/agents/ann", {"name": "Ann", "queues": ["general"]})
    await care.publish(attributed("cus-a1", "how do I pair the headset?", external_id="q-1", **QUESTION))
    [case] = await care.until(lambda: care.cases(customer_id="cus-a1"))
    assert (case.assignee_id, case.assignee_kind, case.status) == ("adv-1", "advocate", "assigned")
    assert case.advocate_offer_expires_at == care.clock.now() + timedelta(minutes=30)
    [assigned] = care.events("care.case.assigned")
    assert assigned["assignee_kind"] == "advocate" and assigned["rule"] == "advocate_first_tier"


async def test_an_accepted_advocate_answer_resolves_the_case_and_marketing_sees_the_credit(care):
    await make_advocate(care)
    await care.publish(attributed("cus-a2", "how do I reset it?", external_id="q-2", **QUESTION))
    [case] = await care.until(lambda: care.cases(customer_id="cus-a2"))
    # the advocate answers on the network: a reply to the question, attributed to the advocate
    await care.publish(attributed("adv-1", "hold the button 10s", intents=(), sentiment=0.5, in_reply_to="q-2"))
    await care.until(lambda: care.events("care.case.responded"))
    detail = await care.get(case.id)
    answer = next(m for m in detail["messages"] if m["kind"] == "advocate")
    assert answer["author_id"] == "adv-1" and answer["text"] == "hold the button 10s"
    responded = care.events("care.case.responded")[0]
    assert responded["responder_kind"] == "advocate" and responded["first_response"] is False

    accepted = await care.client.post(f"/care/v1/cases/{case.id}/responses/{answer['id']}/accept", headers=AGENT)
    assert accepted.status_code == 200 and accepted.json()["resolved_by_advocate"] is True
    [resolved] = care.events("care.case.resolved")
    assert resolved["resolved_by_advocate"] is True and resolved["advocate_id"] == "adv-1"
    topics = (await care.client.get("/care/v1/advocates/adv-1/topics", headers=AGENT)).json()
    assert topics[0]["accepted_answers"] == 4

    # what marketing's consumer group reads from the bus
    consumer = care.host.state.bus.consumer(group=f"marketing-{uuid.uuid4().hex[:6]}", topics=["zone.care"])
    await consumer.start()
    seen = []
    for _ in range(50):
        seen += [r.envelope for r in await consumer.poll(timeout=0.2)]
        if any(e.type == "care.case.resolved" for e in seen):
            break
    await consumer.close()
    credit = next(e for e in seen if e.type == "care.case.resolved")
    assert credit.subject == "cus-a2" and credit.data["advocate_id"] == "adv-1"


async def test_no_accepted_answer_in_time_falls_back_to_an_agent(care):
    await make_advocate(care)
    await care.put("/agents/ann", {"name": "Ann", "queues": ["general"]})
    await care.publish(attributed("cus-a3", "how do I export my data?", **QUESTION))
    [case] = await care.until(lambda: care.cases(customer_id="cus-a3"))
    assert case.assignee_kind == "advocate"
    await care.advance(minutes=29)
    assert care.cases(customer_id="cus-a3")[0].assignee_kind == "advocate"
    await care.advance(minutes=2)
    case = care.cases(customer_id="cus-a3")[0]
    assert (case.assignee_id, case.assignee_kind) == ("ann", "agent")
    fallback = care.events("care.case.assigned")[-1]
    assert (fallback["rule"], fallback["previous_assignee_id"]) == ("advocate_fallback", "adv-1")
    assert care.events("care.sla.breached") == []


async def test_the_timer_ends_before_the_first_response_sla_would_breach(care):
    await make_advocate(care)
    care.clock.set(datetime(2026, 3, 6, 16, 50, tzinfo=timezone.utc))  # 10 business minutes left on Friday
    await care.put("/sla-policies/standard", {"first_response_s": 20 * 60, "next_response_s": 3600,
                                              "resolution_s": 8 * 3600})
    await care.publish(attributed("cus-a4", "how do I update firmware?", **QUESTION))
    [case] = await care.until(lambda: care.cases(customer_id="cus-a4"))
    due = datetime(2026, 3, 9, 9, 10, tzinfo=timezone.utc)
    assert case.first_response_due == due
    # the margin is business time: the offer ends when 15 business minutes are left before the
    # due time (16:55 today: 5 left on Friday + 10 on Monday), not 15 wall-clock minutes before
    # Monday 09:10 (which would leave the agent no working time at all)
    assert case.advocate_offer_expires_at == datetime(2026, 3, 6, 16, 55, tzinfo=timezone.utc)
    care.clock.set(datetime(2026, 3, 6, 16, 50, tzinfo=timezone.utc))
    await care.put("/sla-policies/standard", {"first_response_s": 600, "next_response_s": 3600,
                                              "resolution_s": 8 * 3600})
    await care.publish(attributed("cus-a5", "how do I pair two phones?", **QUESTION))
    [tight] = await care.until(lambda: care.cases(customer_id="cus-a5"))
    # due at 17:00 today: less than the margin left, so no offer at all
    assert tight.assignee_kind != "advocate"


async def test_complaints_private_messages_and_flagged_advocates_get_no_offer(care):
    await make_advocate(care)
    await care.publish(attributed("cus-a6", "how do I get a refund, this is awful", intents=("question", "complaint")),
                       attributed("cus-a7", "how do I pair?", kind="direct_message", intents=("question",)))
    await care.until(lambda: len(care.cases()) == 2)
    assert {c.assignee_kind for c in care.cases()} == {None}
    await care.publish(AdvocateFlagged(customer_id="adv-1", reason="burst_activity"))
    await care.until(lambda: care.runtime.workers[2].state.handled >= 2)
    await care.publish(attributed("cus-a8", "how do I pair?", **QUESTION))
    [case] = await care.until(lambda: care.cases(customer_id="cus-a8"))
    assert case.assignee_kind is None


async def test_an_agent_can_record_an_advocate_answer_and_only_those_can_be_accepted(care):
    await make_advocate(care)
    await care.publish(attributed("cus-a9", "how do I pair?", **QUESTION))
    [case] = await care.until(lambda: care.cases(customer_id="cus-a9"))
    no_author = await care.client.post(f"/care/v1/cases/{case.id}/responses", headers=AGENT,
                                       json={"kind": "advocate", "text": "try this"})
    assert no_author.status_code == 422 and no_author.json()["errors"][0]["field"] == "author_id"
    note = (await care.client.post(f"/care/v1/cases/{case.id}/responses", headers=AGENT,
                                   json={"kind": "note", "text": "x"})).json()
    refused = await care.client.post(f"/care/v1/cases/{case.id}/responses/{note['id']}/accept", headers=AGENT)
    assert refused.status_code == 409
    answer = (await care.client.post(f"/care/v1/cases/{case.id}/responses", headers=AGENT,
                                     json={"kind": "advocate", "text": "try this", "author_id": "adv-1"})).json()
    ok = await care.client.post(f"/care/v1/cases/{case.id}/responses/{answer['id']}/accept", headers=AGENT)
    assert ok.status_code == 200 and ok.json()["status"] == "resolved"
    again = await care.client.post(f"/care/v1/cases/{case.id}/responses/{answer['id']}/accept", headers=AGENT)
    assert again.status_code == 409
    assert len(care.events("care.case.resolved")) == 1


async def test_an_answer_recorded_for_an_advocate_needs_an_advocate_as_its_author(care):
    await make_advocate(care)
    await care.publish(attributed("cus-k1", "how do I pair?", **QUESTION))
    [case] = await care.until(lambda: care.cases(customer_id="cus-k1"))
    for author in ("agent-bob", "cus-nobody"):
        refused = await care.client.post(f"/care/v1/cases/{case.id}/responses", headers=AGENT,
                                         json={"kind": "advocate", "author_id": author, "text": "lol"})
        assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "author_id"
    await care.publish(AdvocateFlagged(customer_id="adv-1", reason="burst_activity"))
    await care.until(lambda: care.runtime.workers[2].state.handled >= 2)
    flagged = await care.client.post(f"/care/v1/cases/{case.id}/responses", headers=AGENT,
                                     json={"kind": "advocate", "author_id": "adv-1", "text": "hold it"})
    assert flagged.status_code == 422
    assert care.events("care.case.responded") == []
    assert [m["kind"] for m in (await care.get(case.id))["messages"]] == ["customer"]


async def test_an_advocate_answer_recorded_by_care_waits_for_approval_in_a_crisis(care):
    await make_advocate(care)
    await care.publish(attributed("cus-k2", "how do I pair? #acmefail", hashtags=("#AcmeFail",), **QUESTION))
    [case] = await care.until(lambda: care.cases(customer_id="cus-k2"))
    now = datetime.now(timezone.utc)
    await care.publish(AlertRaised(alert_id="al-1", kind="crisis", topic="hashtag:acmefail", severity="critical",
                                   metric="negative_share", observed=0.7, expected=0.1,
                                   window=TimeWindow(start=now, end=now)))
    await care.until(lambda: care.runtime.workers[2].state.handled >= 2)
    held = await care.client.post(f"/care/v1/cases/{case.id}/responses", headers=AGENT,
                                  json={"kind": "advocate", "author_id": "adv-1", "text": "hold the button"})
    assert held.status_code == 201 and held.json()["state"] == "pending_approval"
    assert care.events("care.case.responded") == []
    early = await care.client.post(f"/care/v1/cases/{case.id}/responses/{held.json()['id']}/accept", headers=AGENT)
    assert early.status_code == 409  # the customer never saw it
    approved = await care.client.post(f"/care/v1/cases/{case.id}/responses/{held.json()['id']}/approve",
                                      headers=LEAD)
    assert approved.status_code == 200
    [responded] = care.events("care.case.responded")
    assert (responded["responder_kind"], responded["responder_id"]) == ("advocate", "adv-1")
    accepted = await care.client.post(f"/care/v1/cases/{case.id}/responses/{held.json()['id']}/accept",
                                      headers=AGENT)
    assert accepted.status_code == 200 and accepted.json()["resolved_by_advocate"] is True
