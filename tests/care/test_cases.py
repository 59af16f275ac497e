"""Cases from the zone stream and by hand, threading, the lifecycle and its events."""

from __future__ import annotations

from tests.care.conftest import ADMIN, AGENT, LEAD, READER, attributed


async def test_complaint_on_the_zone_stream_opens_a_case_and_publishes_care_case_opened(care):
    await care.publish(attributed("cus-1", "my parcel never arrived, delivery is a joke", keywords=("delivery",)))

    [case] = await care.until(lambda: care.cases(customer_id="cus-1"))
    assert case.topic == "delivery" and case.rule == "delivery" and case.status == "open"
    [opened] = care.events("care.case.opened")
    assert opened["case_id"] == case.id and opened["subject"] == "cus-1"
    assert opened["opened_from"] == "interaction" and opened["channel"] == "x"
    assert opened["intents"] == ["complaint"] and opened["queue"] == "general"
    assert opened["sla_policy"] == "standard" and opened["first_response_due"].startswith("2026-03-02T14:00")
    # the relay moves it to the bus
    await care.until(lambda: care.runtime.status()["outbox_backlog"] == 0)


async def test_praise_and_plain_posts_open_no_case(care):
    await care.publish(attributed("cus-2", "love it", intents=("praise",), sentiment=0.9),
                       attributed("cus-2", "just a post", intents=()))
    await care.until(lambda: care.runtime.workers[0].state.handled >= 2)
    assert care.cases(customer_id="cus-2") == []


async def test_a_reply_in_the_same_conversation_attaches_to_the_open_case(care):
    first = attributed("cus-3", "my invoice is wrong", keywords=("invoice",), conversation_id="conv-9",
                       external_id="tw-1")
    await care.publish(first)
    [case] = await care.until(lambda: care.cases(customer_id="cus-3"))
    # a reply to the first tweet, and another message in the conversation with other intents
    await care.publish(attributed("cus-3", "hello??", intents=(), in_reply_to="tw-1", external_id="tw-2"),
                       attributed("cus-3", "I will cancel", intents=("churn_risk",), conversation_id="conv-9"))
    await care.until(lambda: care.runtime.workers[0].state.handled >= 3)
    assert [c.id for c in care.cases(customer_id="cus-3")] == [case.id]
    detail = await care.get(case.id)
    assert [m["text"] for m in detail["messages"]] == ["my invoice is wrong", "hello??", "I will cancel"]
    assert "churn_risk" in detail["intents"]
    assert len(care.events("care.case.opened")) == 1


async def test_one_open_case_per_customer_and_topic(care):
    await care.publish(attributed("cus-4", "refund my charge now", keywords=("refund",)),
                       attributed("cus-4", "still no refund", keywords=("refund",)),
                       attributed("cus-4", "and where is my parcel", keywords=("parcel",)))
    await care.until(lambda: care.runtime.workers[0].state.handled >= 3)
    assert sorted(c.topic for c in care.cases(customer_id="cus-4")) == ["billing", "delivery"]


async def test_a_redelivered_event_opens_no_second_case(care):
    payload = attributed("cus-5")
    envelope = payload.to_envelope(source="socialzone/identity")
    from socialzone_common.bus import OutgoingMessage

    await care.host.state.bus.publish([OutgoingMessage("zone.interactions", envelope)] * 2)
    await care.until(lambda: care.runtime.workers[0].state.duplicates >= 1)
    assert len(care.cases(customer_id="cus-5")) == 1


async def test_rules_are_configurable_channels_keywords_and_minimum_priority(care):
    await care.put("/rules/vip_outage", {"position": 1, "intents": ["complaint"], "channels": ["mastodon"],
                                         "keywords": ["outage"], "topic": "outage", "min_priority": 1})
    await care.put("/rules/complaint", {"position": 50, "intents": ["complaint"], "topic": "general",
                                        "min_priority": 90})
    await care.publish(attributed("cus-6", "total outage again", source="mastodon", keywords=("outage",)),
                       attributed("cus-7", "meh, small complaint"))
    await care.until(lambda: care.runtime.workers[0].state.handled >= 2)
    assert [c.topic for c in care.cases(customer_id="cus-6")] == ["outage"]
    assert care.cases(customer_id="cus-7") == []  # below the rule's minimum priority
    rules = (await care.client.get("/care/v1/rules", headers=AGENT)).json()
    assert [r["name"] for r in rules] == ["vip_outage", "complaint"]


async def test_manual_case_and_the_whole_lifecycle_publish_each_event(care):
    created = await care.client.post("/care/v1/cases", headers=AGENT, json={
        "customer_id": "cus-10", "channel": "phone", "topic": "billing", "subject": "double charge",
        "text": "I was charged twice", "intents": ["complaint"]})
    assert created.status_code == 201, created.text
    case = created.json()
    assert created.headers["location"] == f"/care/v1/cases/{case['id']}"
    assert case["status"] == "open" and case["opened_from"] == "agent" and 1 <= case["priority"] <= 100

    await care.put("/agents/ann", {"name": "Ann", "queues": ["general"]})
    assert (await care.get(case["id"]))["assignee_id"] == "ann"

    care.clock.advance(minutes=30)
    reply = await care.client.post(f"/care/v1/cases/{case['id']}/responses", headers=AGENT,
                                   json={"text": "Sorry! Refund is on its way.", "public": False})
    assert reply.status_code == 201 and reply.json()["state"] == "sent"
    note = await care.client.post(f"/care/v1/cases/{case['id']}/responses", headers=AGENT,
                                  json={"kind": "note", "text": "checked the ledger"})
    assert note.status_code == 201
    resolved = await care.client.post(f"/care/v1/cases/{case['id']}/resolve", headers=AGENT,
                                      json={"resolution": "refunded"})
    assert resolved.json()["status"] == "resolved"
    csat = await care.client.post(f"/care/v1/cases/{case['id']}/csat", headers=AGENT,
                                  json={"score": 5, "comment": "quick!", "channel": "email"})
    assert csat.status_code == 201
    reopened = await care.client.post(f"/care/v1/cases/{case['id']}/reopen", headers=AGENT,
                                      json={"reason": "charged again"})
    assert reopened.json()["status"] == "assigned" and reopened.json()["assignee_id"] == "ann"

    types = [e["type"] for e in care.events(case_id=case["id"])]
    assert types == ["care.case.opened", "care.case.assigned", "care.case.responded", "care.case.resolved",
                     "care.csat.recorded", "care.case.reopened", "care.case.assigned"]
    responded = care.events("care.case.responded")[0]
    assert responded["first_response"] is True and responded["seconds_since_opened"] == 1800
    assert responded["public"] is False and responded["responder_id"] == "care_agent"
    resolved_event = care.events("care.case.resolved")[0]
    assert resolved_event["responses"] == 1 and resolved_event["resolution"] == "refunded"
    assert care.events("care.csat.recorded")[0]["score"] == 5
    assert [h["kind"] for h in (await care.get(case["id"]))["history"]][:4] == [
        "opened", "assigned", "responded", "note"]


async def test_a_customer_follow_up_reopens_a_recently_resolved_case(care):
    await care.publish(attributed("cus-11", "broken again", conversation_id="c-11", external_id="m1"))
    [case] = await care.until(lambda: care.cases(customer_id="cus-11"))
    await care.client.post(f"/care/v1/cases/{case.id}/resolve", headers=AGENT, json={})
    await care.publish(attributed("cus-11", "no it is not fixed", intents=(), in_reply_to="m1"))
    await care.until(lambda: care.events("care.case.reopened"))
    [reopened] = care.events("care.case.reopened")
    assert reopened["reopened_by"] == "customer" and reopened["interaction_id"]
    assert care.cases(customer_id="cus-11")[0].status == "open"


async def test_case_list_filters_and_paginates_by_priority(care):
    for i in range(5):
        await care.client.post("/care/v1/cases", headers=AGENT, json={
            "customer_id": f"cus-l{i}", "channel": "email", "topic": f"t{i}",
            "intents": ["churn_risk"] if i % 2 else ["question"]})
    page = (await care.client.get("/care/v1/cases", params={"limit": 2, "status": "open"}, headers=READER)).json()
    seen = [c["id"] for c in page["items"]]
    priorities = [c["priority"] for c in page["items"]]
    while page["next_cursor"]:
        page = (await care.client.get("/care/v1/cases", params={"limit": 2, "status": "open",
                                                                "cursor": page["next_cursor"]},
                                      headers=READER)).json()
        seen += [c["id"] for c in page["items"]]
        priorities += [c["priority"] for c in page["items"]]
    assert len(set(seen)) == 5 and priorities == sorted(priorities, reverse=True)
    high = (await care.client.get("/care/v1/cases", params={"priority_min": priorities[0]},
                                  headers=READER)).json()["items"]
    assert high and all(c["priority"] >= priorities[0] for c in high)
    unassigned = (await care.client.get("/care/v1/cases", params={"assignee": "none", "queue": "general"},
                                        headers=READER)).json()["items"]
    assert len(unassigned) == 5


async def test_bad_input_is_a_problem_and_changes_nothing(care):
    created = (await care.client.post("/care/v1/cases", headers=AGENT, json={
        "customer_id": "cus-20", "channel": "phone", "topic": "billing"})).json()
    case_id = created["id"]
    before = len(care.events())

    unknown = await care.client.get("/care/v1/cases/nope", headers=AGENT)
    assert unknown.status_code == 404 and unknown.headers["content-type"] == "application/problem+json"
    assert (await care.client.post("/care/v1/cases/nope/resolve", headers=AGENT, json={})).status_code == 404

    for score in (0, 6):
        bad = await care.client.post(f"/care/v1/cases/{case_id}/csat", headers=AGENT, json={"score": score})
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "score"
    too_early = await care.client.post(f"/care/v1/cases/{case_id}/csat", headers=AGENT, json={"score": 4})
    assert too_early.status_code == 409

    not_resolved = await care.client.post(f"/care/v1/cases/{case_id}/reopen", headers=AGENT, json={})
    assert not_resolved.status_code == 409
    assert (await care.client.post(f"/care/v1/cases/{case_id}/resolve", headers=AGENT, json={})).status_code == 200
    twice = await care.client.post(f"/care/v1/cases/{case_id}/resolve", headers=AGENT, json={})
    assert twice.status_code == 409 and "already resolved" in twice.json()["detail"]
    after_resolve = len(care.events())

    reply = await care.client.post(f"/care/v1/cases/{case_id}/responses", headers=AGENT, json={"text": "hi"})
    assert reply.status_code == 409
    neither = await care.client.post(f"/care/v1/cases/{case_id}/responses", headers=AGENT, json={})
    assert neither.status_code in (409, 422)
    missing = await care.client.post("/care/v1/cases", headers=AGENT, json={"channel": "phone"})
    assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "customer_id"
    bad_policy = await care.client.post("/care/v1/cases", headers=AGENT, json={
        "customer_id": "cus-21", "channel": "phone", "sla_policy": "platinum-plus"})
    assert bad_policy.status_code == 422 and bad_policy.json()["errors"][0]["field"] == "sla_policy"
    bad_cursor = await care.client.get("/care/v1/cases", params={"cursor": "garbage"}, headers=AGENT)
    assert bad_cursor.status_code == 422
    bad_agent = await care.client.post(f"/care/v1/cases/{case_id}/reopen", headers=AGENT, json={})
    assert bad_agent.status_code == 200
    nobody = await care.client.post(f"/care/v1/cases/{case_id}/assign", headers=AGENT,
                                    json={"assignee_id": "ghost"})
    assert nobody.status_code == 422 and nobody.json()["errors"][0]["field"] == "assignee_id"

    assert len(care.events()) == after_resolve + 1  # only the reopen published
    assert before < after_resolve
    assert care.cases(customer_id="cus-21") == []


async def test_scopes_reader_lead_and_no_key(care):
    assert (await care.client.get("/care/v1/cases")).status_code == 401
    assert (await care.client.get("/care/v1/cases", headers=READER)).status_code == 200
    denied = await care.client.post("/care/v1/cases", headers=READER, json={"customer_id": "c", "channel": "x"})
    assert denied.status_code == 403 and denied.json()["required_scope"] == "care:write"
    not_lead = await care.client.put("/care/v1/queues/vip", headers=AGENT, json={})
    assert not_lead.status_code == 403 and not_lead.json()["required_scope"] == "care:lead"
    assert (await care.client.put("/care/v1/queues/vip", headers=LEAD, json={})).status_code == 200
    assert (await care.client.put("/care/v1/queues/vip2", headers=ADMIN, json={})).status_code == 200


async def test_canned_responses_fill_in_customer_name_and_case_number(care):
    await care.put("/canned-responses/sorry", {"body": "Hi {customer_name}, case {case_number} is with "
                                                       "{agent_name}. {eta}"})
    await care.publish(attributed("cus-30", "broken", name="Kim"))
    [case] = await care.until(lambda: care.cases(customer_id="cus-30"))
    missing = await care.client.post(f"/care/v1/cases/{case.id}/responses", headers=AGENT,
                                     json={"canned": "sorry"})
    assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "variables.eta"
    unknown = await care.client.post(f"/care/v1/cases/{case.id}/responses", headers=AGENT,
                                     json={"canned": "nope"})
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "canned"
    sent = await care.client.post(f"/care/v1/cases/{case.id}/responses", headers=AGENT,
                                  json={"canned": "sorry", "variables": {"eta": "Fixed by noon."}})
    assert sent.status_code == 201
    assert sent.json()["text"] == f"Hi Kim, case {case.number} is with care_agent. Fixed by noon."


async def test_two_customers_in_one_public_thread_each_keep_their_own_case(care):
    await care.publish(attributed("cus-40", "my parcel is lost", keywords=("parcel",), conversation_id="thr"))
    [a] = await care.until(lambda: care.cases(customer_id="cus-40"))
    await care.publish(attributed("cus-41", "mine too, parcel lost!", keywords=("parcel",), conversation_id="thr"))
    [b] = await care.until(lambda: care.cases(customer_id="cus-41"))
    await care.publish(attributed("cus-40", "any news?", intents=(), conversation_id="thr"))
    await care.until(lambda: care.runtime.workers[0].state.handled >= 3)
    assert [m["text"] for m in (await care.get(a.id))["messages"]] == ["my parcel is lost", "any news?"]
    assert len((await care.get(b.id))["messages"]) == 1
