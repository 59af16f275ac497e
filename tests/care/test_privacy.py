"""Erasure purges a customer's personal data from cases and keeps anonymous counts;
merges and unmerges move cases to the right customer."""

from __future__ import annotations

from datetime import datetime, timezone

from socialzone_common.events.identity import CustomerMerged, CustomerUnmerged
from socialzone_common.events.common import Identifier
from socialzone_common.events.privacy import ErasureRequested

from tests.care.conftest import AGENT, attributed, order


async def test_erasure_purges_personal_data_keeps_counts_and_publishes_completion(care):
    await care.publish(attributed("cus-e1", "I am Eve, call me on 0170 1234567", name="Eve Example",
                                  handle="@eve", conversation_id="conv-e1"),
                       order("cus-e1", "120"))
    [case] = await care.until(lambda: care.cases(customer_id="cus-e1"))
    await care.client.post(f"/care/v1/cases/{case.id}/responses", headers=AGENT, json={"text": "Hi Eve!"})
    await care.client.post(f"/care/v1/cases/{case.id}/resolve", headers=AGENT, json={})
    await care.client.post(f"/care/v1/cases/{case.id}/csat", headers=AGENT,
                           json={"score": 2, "comment": "Eve is unhappy"})
    # an earlier profile merged into cus-e1 also had a case
    await care.client.post("/care/v1/cases", headers=AGENT, json={
        "customer_id": "cus-e0", "channel": "email", "text": "old complaint from Eve"})

    await care.publish(ErasureRequested(erasure_id="er-1", customer_id="cus-e1", merged_ids=("cus-e0",),
                                        requested_at=datetime.now(timezone.utc)))
    [completed] = await care.until(lambda: care.events("care.erasure.completed"))
    assert completed["erasure_id"] == "er-1" and completed["subject"] == "cus-e1"
    assert completed["records_purged"] >= 6

    assert care.cases(customer_id="cus-e1") == [] and care.cases(customer_id="cus-e0") == []
    erased = care.cases(erased=True)
    assert len(erased) == 2
    detail = await care.get(case.id)
    assert detail["customer"] == {"available": False, "reason": "the customer's data was erased"}
    assert detail["customer_id"].startswith("erased:")
    assert (detail["subject"], detail["customer_name"], detail["customer_handle"]) == (None, None, None)
    assert detail["csat"] == {"score": 2, "comment": None}
    assert {m["text"] for m in detail["messages"]} == {None}
    assert "Eve" not in str(detail) and "0170" not in str(detail) and "@eve" not in str(detail)
    stats = (await care.client.get("/care/v1/stats", headers=AGENT)).json()
    # the open one (cus-e0's) is closed by the erasure: nobody can ever answer it
    assert stats["cases"] == 2 and stats["erased_cases"] == 2 and stats["by_status"] == {"resolved": 2}

    before = len(care.events())
    reply = await care.client.post(f"/care/v1/cases/{erased[1].id}/responses", headers=AGENT, json={"text": "hi"})
    assert reply.status_code == 410 and reply.headers["content-type"] == "application/problem+json"
    reopen = await care.client.post(f"/care/v1/cases/{case.id}/reopen", headers=AGENT, json={})
    assert reopen.status_code == 410
    new_case = await care.client.post("/care/v1/cases", headers=AGENT,
                                      json={"customer_id": "cus-e1", "channel": "email"})
    assert new_case.status_code == 410 and new_case.json()["errors"][0]["field"] == "customer_id"
    assert len(care.events()) == before

    # a replay of the request changes nothing and publishes nothing new
    await care.publish(ErasureRequested(erasure_id="er-1", customer_id="cus-e1",
                                        requested_at=datetime.now(timezone.utc)))
    await care.until(lambda: len(care.events("care.erasure.completed")) == 2)
    assert care.events("care.erasure.completed")[1]["records_purged"] == 0


async def test_a_merge_moves_cases_to_the_survivor_and_an_unmerge_moves_them_back(care):
    await care.publish(attributed("cus-m2", "my parcel is lost", keywords=("parcel",)), order("cus-m2", "5000"))
    [case] = await care.until(lambda: care.cases(customer_id="cus-m2"))
    await care.until(lambda: care.runtime.workers[0].state.handled >= 2)
    await care.publish(CustomerMerged(survivor_id="cus-m1", merged_id="cus-m2", rule="strong_identifier"))
    await care.until(lambda: care.cases(customer_id="cus-m1"))
    moved = await care.get(case.id)
    assert moved["customer_id"] == "cus-m1"
    assert next(f for f in moved["priority_factors"] if f["name"] == "customer_value")["value"] == 5000
    # the survivor's next message on the same topic attaches to the moved case
    await care.publish(attributed("cus-m1", "still no parcel", keywords=("parcel",)))
    await care.until(lambda: care.runtime.workers[0].state.handled >= 3)
    assert len(care.cases()) == 1

    await care.publish(CustomerUnmerged(customer_id="cus-m1", restored_customer_id="cus-m2",
                                        identifiers_moved=(Identifier(type="x", value="@m2"),)))
    await care.until(lambda: care.cases(customer_id="cus-m2"))
    assert care.cases(customer_id="cus-m1") == []


async def test_unmerges_after_a_chain_of_merges_move_each_case_back_to_its_own_customer(care):
    for customer in ("cus-A", "cus-B"):
        response = await care.client.post("/care/v1/cases", headers=AGENT,
                                          json={"customer_id": customer, "channel": "email"})
        assert response.status_code == 201
    await care.publish(CustomerMerged(survivor_id="cus-B", merged_id="cus-A", rule="manual"))
    await care.until(lambda: len(care.cases(customer_id="cus-B")) == 2)
    await care.publish(CustomerMerged(survivor_id="cus-C", merged_id="cus-B", rule="manual"))
    await care.until(lambda: len(care.cases(customer_id="cus-C")) == 2)

    await care.publish(CustomerUnmerged(customer_id="cus-C", restored_customer_id="cus-B",
                                        identifiers_moved=(Identifier(type="x", value="@b"),)))
    await care.until(lambda: len(care.cases(customer_id="cus-B")) == 2)
    # A's case is back with B, still knowing it came from A
    assert sorted(c.merged_from or "-" for c in care.cases(customer_id="cus-B")) == ["-", "cus-A"]
    await care.publish(CustomerUnmerged(customer_id="cus-B", restored_customer_id="cus-A",
                                        identifiers_moved=(Identifier(type="x", value="@a"),)))
    await care.until(lambda: care.cases(customer_id="cus-A"))
    assert [(c.customer_id, c.merged_from) for c in care.cases()] == [("cus-A", None), ("cus-B", None)]
