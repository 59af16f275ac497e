"""Queues by channel, language and skill; round robin and least loaded within capacity;
a reopened case goes back to its last agent."""

from __future__ import annotations

from tests.care.conftest import AGENT, attributed


async def open_manual(care, customer_id: str, **body) -> dict:
    response = await care.client.post("/care/v1/cases", headers=AGENT, json={
        "customer_id": customer_id, "channel": body.pop("channel", "email"), **body})
    assert response.status_code == 201, response.text
    return response.json()


async def test_a_case_goes_to_the_most_specific_queue_by_channel_language_and_skill(care):
    await care.put("/queues/social-de", {"channels": ["x", "instagram"], "languages": ["de"]})
    await care.put("/queues/billing", {"skills": ["billing"]})
    await care.put("/queues/billing-x", {"channels": ["x"], "skills": ["billing"]})
    await care.put("/queues/email", {"channels": ["email"]})
    await care.publish(attributed("cus-r1", "Paket kaputt", language="de"),
                       attributed("cus-r2", "my invoice is wrong", keywords=("invoice",)),
                       attributed("cus-r3", "my invoice is wrong", source="mastodon", keywords=("invoice",)),
                       attributed("cus-r4", "it broke", source="email"),
                       attributed("cus-r5", "it broke", source="reddit"))
    await care.until(lambda: len(care.cases()) == 5)
    queues = {c.customer_id: c.queue for c in care.cases()}
    assert queues == {"cus-r1": "social-de", "cus-r2": "billing-x", "cus-r3": "billing", "cus-r4": "email",
                      "cus-r5": "general"}


async def test_round_robin_respects_capacity_and_drains_the_queue_when_an_agent_frees_up(care):
    await care.put("/queues/general", {"policy": "round_robin"})
    for agent in ("a", "b", "c"):
        await care.put(f"/agents/{agent}", {"name": agent.upper(), "queues": ["general"], "capacity": 1})
    cases = [await open_manual(care, f"cus-rr{i}", topic=f"t{i}") for i in range(4)]
    assert [c["assignee_id"] for c in cases] == ["a", "b", "c", None]
    assert cases[3]["status"] == "open"
    await care.client.post(f"/care/v1/cases/{cases[1]['id']}/resolve", headers=AGENT, json={})
    assert (await care.get(cases[3]["id"]))["assignee_id"] == "b"
    assigned = [e for e in care.events("care.case.assigned")]
    assert [(e["assignee_id"], e["rule"]) for e in assigned] == [
        ("a", "round_robin"), ("b", "round_robin"), ("c", "round_robin"), ("b", "round_robin")]
    agents = (await care.client.get("/care/v1/agents", headers=AGENT)).json()
    assert {a["id"]: a["load"] for a in agents} == {"a": 1, "b": 1, "c": 1}


async def test_least_loaded_picks_the_agent_with_fewest_open_cases(care):
    await care.put("/queues/general", {"policy": "least_loaded"})
    await care.put("/agents/busy", {"name": "Busy", "queues": ["general"], "capacity": 10})
    first = [await open_manual(care, f"cus-ll{i}", topic=f"t{i}") for i in range(3)]
    assert {c["assignee_id"] for c in first} == {"busy"}
    await care.put("/agents/fresh", {"name": "Fresh", "queues": ["general"], "capacity": 10})
    later = [await open_manual(care, f"cus-lm{i}", topic=f"t{i}") for i in range(4)]
    # fresh catches up to busy's three, then they alternate
    assert [c["assignee_id"] for c in later] == ["fresh", "fresh", "fresh", "busy"]


async def test_agents_need_the_case_language_and_the_queue_skill(care):
    await care.put("/queues/billing", {"skills": ["billing"], "policy": "least_loaded"})
    await care.put("/agents/eng-only", {"name": "E", "queues": ["billing"], "languages": ["en"],
                                        "skills": ["billing"]})
    await care.put("/agents/no-skill", {"name": "N", "queues": ["billing"], "languages": ["fr"]})
    await care.put("/agents/fr-billing", {"name": "F", "queues": ["billing"], "languages": ["fr"],
                                          "skills": ["billing"]})
    french = await open_manual(care, "cus-fr", topic="billing", language="fr-FR")
    english = await open_manual(care, "cus-en", topic="billing", language="en")
    assert (french["queue"], french["assignee_id"]) == ("billing", "fr-billing")
    assert english["assignee_id"] == "eng-only"


async def test_a_reopened_case_goes_back_to_its_last_agent_when_available(care):
    await care.put("/agents/ann", {"name": "Ann", "queues": ["general"], "capacity": 1})
    await care.put("/agents/bob", {"name": "Bob", "queues": ["general"], "capacity": 5})
    case = await open_manual(care, "cus-ro", topic="t")
    assert case["assignee_id"] == "ann"
    await care.client.post(f"/care/v1/cases/{case['id']}/resolve", headers=AGENT, json={})
    reopened = (await care.client.post(f"/care/v1/cases/{case['id']}/reopen", headers=AGENT, json={})).json()
    assert reopened["assignee_id"] == "ann"
    assert care.events("care.case.assigned")[-1]["rule"] == "last_agent"
    # Ann is full now: the next reopen of another case of hers goes by policy
    other = await open_manual(care, "cus-ro2", topic="t")
    assert other["assignee_id"] == "bob"
    await care.client.post(f"/care/v1/cases/{other['id']}/assign", headers=AGENT, json={"assignee_id": "bob"})
    await care.client.post(f"/care/v1/cases/{other['id']}/resolve", headers=AGENT, json={})
    await care.put("/agents/bob", {"name": "Bob", "queues": ["general"], "capacity": 5, "active": False})
    back = (await care.client.post(f"/care/v1/cases/{other['id']}/reopen", headers=AGENT, json={})).json()
    assert back["assignee_id"] is None and back["status"] == "open"  # Bob is away, Ann is full


async def test_manual_assignment_publishes_the_previous_assignee(care):
    await care.put("/agents/ann", {"name": "Ann", "queues": ["general"]})
    await care.put("/agents/zed", {"name": "Zed", "queues": []})
    case = await open_manual(care, "cus-ma", topic="t")
    moved = await care.client.post(f"/care/v1/cases/{case['id']}/assign", headers=AGENT,
                                   json={"assignee_id": "zed"})
    assert moved.status_code == 200 and moved.json()["assignee_id"] == "zed"
    last = care.events("care.case.assigned")[-1]
    assert (last["assignee_id"], last["previous_assignee_id"], last["rule"]) == ("zed", "ann", None)


async def test_round_robin_rotates_in_a_default_queue_without_a_configuration_row(care):
    await care.put("/agents/ann", {"name": "Ann", "queues": ["general"]})
    await care.put("/agents/bob", {"name": "Bob", "queues": ["general"]})
    cases = [await open_manual(care, f"cus-d{i}") for i in range(4)]
    assert [c["assignee_id"] for c in cases] == ["ann", "bob", "ann", "bob"]
    assert (await care.client.get("/care/v1/queues", headers=AGENT)).json() == []  # no row was needed


async def test_escalations_and_manual_assignments_move_the_round_robin_pointer(care):
    await care.put("/sla-policies/quick", {"first_response_s": 600, "next_response_s": 600, "resolution_s": 36000})
    await care.put("/agents/lead1", {"name": "L1", "queues": ["leads"], "lead": True})
    await care.put("/agents/lead2", {"name": "L2", "queues": ["leads"], "lead": True})
    cases = [await open_manual(care, f"cus-e{i}", sla_policy="quick") for i in range(3)]
    await care.advance(minutes=11)
    escalated = [await care.get(c["id"]) for c in cases]
    assert [c["assignee_id"] for c in escalated] == ["lead1", "lead2", "lead1"]
    assert {e["rule"] for e in care.events("care.case.assigned")} == {"sla_escalation"}
    # the plain round robin goes on from the last escalation
    after = await open_manual(care, "cus-e9", queue="leads")
    assert after["assignee_id"] == "lead2"
    # a manual assignment counts as the last one assigned too
    await care.client.post(f"/care/v1/cases/{after['id']}/assign", headers=AGENT, json={"assignee_id": "lead1"})
    assert (await open_manual(care, "cus-e10", queue="leads"))["assignee_id"] == "lead2"


async def test_a_reassignment_gives_the_freed_capacity_to_a_waiting_case(care):
    await care.put("/agents/ann", {"name": "Ann", "queues": ["general"], "capacity": 1})
    await care.put("/agents/bob", {"name": "Bob", "queues": ["other"], "capacity": 5})
    first = await open_manual(care, "cus-a")
    waiting = await open_manual(care, "cus-b")
    assert (first["assignee_id"], waiting["assignee_id"]) == ("ann", None)
    moved = await care.client.post(f"/care/v1/cases/{first['id']}/assign", headers=AGENT,
                                   json={"assignee_id": "bob"})
    assert moved.status_code == 200 and moved.json()["assignee_id"] == "bob"
    assert (await care.get(waiting["id"]))["assignee_id"] == "ann"
    agents = {a["id"]: a["load"] for a in (await care.client.get("/care/v1/agents", headers=AGENT)).json()}
    assert agents == {"ann": 1, "bob": 1}


async def test_an_escalation_gives_the_freed_capacity_to_a_waiting_case(care):
    await care.put("/sla-policies/quick", {"first_response_s": 600, "next_response_s": 600, "resolution_s": 36000})
    await care.put("/agents/ann", {"name": "Ann", "queues": ["general"], "capacity": 1})
    await care.put("/agents/lena", {"name": "Lena", "queues": ["leads"], "lead": True})
    urgent = await open_manual(care, "cus-u", sla_policy="quick")
    waiting = await open_manual(care, "cus-v")
    assert (urgent["assignee_id"], waiting["assignee_id"]) == ("ann", None)
    await care.advance(minutes=11)  # the quick case breaches and moves to the leads
    assert (await care.get(urgent["id"]))["assignee_id"] == "lena"
    assert (await care.get(waiting["id"]))["assignee_id"] == "ann"
