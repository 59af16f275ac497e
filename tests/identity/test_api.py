"""The identity API end to end: events published on the local bus, real HTTP through the
host app, answers as a care agent, an analyst or an admin sees them."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from socialzone_common.bus import OutgoingMessage
from socialzone_common.events.care import CaseOpened, CaseResolved
from socialzone_common.events.marketing import TierChanged
from socialzone_common.events.privacy import CareErasureCompleted
from socialzone_common.events.sales import LeadCreated
from socialzone_common.web import build_host_app
from socialzone_identity.service import SERVICE

from tests.conftest import bearer
from tests.identity.factory import BASE, crm, recorded

ADMIN, AGENT = bearer("admin"), bearer("care_agent")


async def eventually(check, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


class Platform:
    def __init__(self, host, client):
        self.host, self.client = host, client

    async def publish(self, *envelopes, topic: str | None = None):
        from socialzone_common.catalog import entry_for

        await self.host.state.bus.publish([OutgoingMessage(topic or entry_for(e.type).topic.name, e) for e in envelopes])

    async def customer_by(self, identifier: str, headers=ADMIN) -> str:
        async def found():
            r = await self.client.get("/identity/v1/customers", params={"identifier": identifier}, headers=headers)
            return r.json()["items"][0]["id"] if r.status_code == 200 and r.json()["items"] else None
        return await eventually(found)

    async def timeline(self, customer_id: str, headers=ADMIN, **params):
        r = await self.client.get(f"/identity/v1/customers/{customer_id}/timeline", params=params, headers=headers)
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture
async def platform(settings):
    host = build_host_app([SERVICE], settings=settings)
    async with host.router.lifespan_context(host):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=host), base_url="http://test") as client:
            yield Platform(host, client)


async def test_customer_360_is_built_from_interactions_and_department_events(platform):
    await platform.publish(
        recorded(("x", "500"), ("x_handle", "ana_fan"), display_name="Ana Fan", sentiment=0.5, language="en",
                 attributes={"city": "Lisbon", "country": "PT"}),
        crm(("crm:shop", "S-1"), ("x", "500"), ("email", "ana@acme-mail.com"),
            transaction={"type": "order", "amount": "100.00", "currency": "EUR"}),
        crm(("crm:shop", "S-1"), transaction={"type": "refund", "amount": "20.00", "currency": "EUR"}),
    )
    cid = await platform.customer_by("x_handle:@Ana_Fan")
    await eventually(lambda: _count(platform, cid, 3))
    await platform.publish(
        CaseOpened(case_id="case-1", customer_id=cid, opened_from="agent", channel="x", priority="high",
                   queue="billing", sla_policy="standard").to_envelope(source="socialzone/care"),
        CaseOpened(case_id="case-2", customer_id=cid, opened_from="agent", channel="x", priority="low",
                   queue="general", sla_policy="standard").to_envelope(source="socialzone/care"),
        CaseResolved(case_id="case-2", customer_id=cid, resolution="solved", responses=1,
                     seconds_to_resolve=60).to_envelope(source="socialzone/care"),
        TierChanged(customer_id=cid, previous_tier="none", tier="silver", score=42).to_envelope(source="socialzone/marketing"),
        LeadCreated(lead_id="lead-1", customer_id=cid, source="agent", score=70).to_envelope(source="socialzone/sales"),
    )
    await eventually(lambda: _count(platform, cid, 8, department=None))
    r = await platform.client.get(f"/identity/v1/customers/{cid}", headers=ADMIN)
    body = r.json()
    assert r.status_code == 200
    assert body["display_name"] == "Ana Fan" and "Lisbon, PT" in body["locations"]
    assert body["interactions"] == {"total": 3, "by_channel": {"x": 1, "crm": 2}}
    assert body["lifetime_value"] == {"EUR": "80.00"}
    assert body["average_sentiment"] == 0.5 and body["languages"] == {"en": 1}
    assert [c["case_id"] for c in body["open_cases"]] == ["case-1"]
    assert body["advocate_tier"]["tier"] == "silver"
    assert [lead["lead_id"] for lead in body["open_leads"]] == ["lead-1"]
    assert {i["type"] for i in body["identifiers"]} == {"x", "x_handle", "crm:shop", "email"}


async def _count(platform, cid, n, department="interactions"):
    params = {"limit": 100}
    if department:
        params["department"] = department
    page = await platform.timeline(cid, **params)
    return len(page["items"]) >= n


async def test_callers_without_pii_scope_see_masked_emails_and_phones(platform):
    await platform.publish(crm(("crm:shop", "M-1"), ("email", "maria.silva@acme-mail.com"), ("phone", "+351912345678")))
    cid = await platform.customer_by("crm:shop:M-1")
    agent = (await platform.client.get(f"/identity/v1/customers/{cid}/identifiers", headers=AGENT)).json()
    values = {i["type"]: i["value"] for i in agent["items"]}
    assert values["email"] == "m***@acme-mail.com" and values["phone"].startswith("+35") and "912345" not in values["phone"]
    events = await platform.timeline(cid, headers=AGENT, include="event", department="interactions")
    author = events["items"][0]["event"]["interaction"]["author"]["identifiers"]
    assert all("maria.silva" not in i["value"] for i in author)
    admin = (await platform.client.get(f"/identity/v1/customers/{cid}/identifiers", headers=ADMIN)).json()
    assert {i["value"] for i in admin["items"]} >= {"maria.silva@acme-mail.com", "+351912345678"}
    audit = (await platform.client.get("/identity/v1/audit", params={"action": "pii_read"}, headers=ADMIN)).json()
    assert audit["items"][0]["actor"] == "admin" and audit["items"][0]["customer_id"] == cid
    forbidden = await platform.client.get("/identity/v1/audit", headers=AGENT)
    assert forbidden.status_code == 403 and "identity:pii" in forbidden.json()["detail"]


async def test_merge_and_unmerge_round_trip_with_timelines(platform):
    await platform.publish(recorded(("x", "1"), display_name="Old", text="first"),
                           recorded(("x", "1"), text="second"),
                           recorded(("facebook", "fb-9"), display_name="New", text="third"))
    older = await platform.customer_by("x:1")
    newer = await platform.customer_by("facebook:fb-9")
    await eventually(lambda: _count(platform, older, 2))
    await platform.publish(CaseOpened(case_id="case-9", customer_id=newer, opened_from="agent", channel="facebook",
                                      priority="normal", queue="q", sla_policy="standard").to_envelope(source="socialzone/care"))
    await eventually(lambda: _count(platform, newer, 1, department="care"))

    preview = await platform.client.post("/identity/v1/merges", json={"customer_ids": [newer, older], "dry_run": True},
                                         headers=ADMIN)
    assert preview.status_code == 200 and preview.json()["survivor_id"] == older
    assert len((await platform.timeline(newer))["items"]) == 3  # nothing written

    started = time.perf_counter()
    merged = await platform.client.post("/identity/v1/merges", json={"customer_ids": [newer, older], "reason": "same"},
                                        headers=ADMIN)
    assert merged.status_code == 201, merged.text
    survivor_timeline = await platform.timeline(older, department="interactions")
    assert time.perf_counter() - started < 1.0
    assert [i["summary"].split(": ")[-1] for i in survivor_timeline["items"]] == ["third", "second", "first"]
    via_old_id = await platform.client.get(f"/identity/v1/customers/{newer}", headers=ADMIN)
    assert via_old_id.json()["id"] == older and via_old_id.json()["merged_into"] == older

    again = await platform.client.post("/identity/v1/merges", json={"customer_ids": [older, newer]}, headers=ADMIN)
    assert again.status_code == 422 and "already one customer" in again.json()["detail"]

    unmerged = await platform.client.post(f"/identity/v1/customers/{older}/unmerge",
                                          json={"restored_customer_id": newer, "reason": "different people"},
                                          headers=ADMIN)
    assert unmerged.status_code == 200, unmerged.text
    assert unmerged.json()["identifiers_moved"] == 1
    assert [i["summary"].split(": ")[-1] for i in (await platform.timeline(older, department="interactions"))["items"]] == ["second", "first"]
    restored = await platform.timeline(newer)
    assert {i["type"] for i in restored["items"]} >= {"identity.interaction.attributed", "care.case.opened"}
    assert (await platform.customer_by("facebook:fb-9")) == newer
    never = await platform.client.post(f"/identity/v1/customers/{older}/unmerge",
                                       json={"restored_customer_id": newer}, headers=ADMIN)
    assert never.status_code == 422 and "never merged" in never.json()["detail"]


async def test_timeline_filters_and_cursor_pagination(platform):
    await platform.publish(*[recorded(("x", "77"), text=f"post {i}") for i in range(7)])
    cid = await platform.customer_by("x:77")
    await eventually(lambda: _count(platform, cid, 7))
    seen, cursor = [], None
    while True:
        params = {"limit": 3, "types": "identity.interaction.attributed"}
        if cursor:
            params["cursor"] = cursor
        page = await platform.timeline(cid, **params)
        seen += [i["summary"] for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == [f"post on x: post {i}" for i in reversed(range(7))]
    window = await platform.timeline(cid, since=(BASE.replace(year=2025)).isoformat(), types="identity.*")
    assert len(window["items"]) == 8  # 7 interactions + created
    bad = await platform.client.get(f"/identity/v1/customers/{cid}/timeline", params={"cursor": "nope"}, headers=ADMIN)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "cursor"
    bad = await platform.client.get(f"/identity/v1/customers/{cid}/timeline", params={"department": "hr"}, headers=ADMIN)
    assert bad.status_code == 422 and "department" in bad.json()["detail"]


async def test_consents_keep_history_and_the_most_restrictive_wins_on_merge(platform):
    await platform.publish(recorded(("x", "11")), recorded(("x", "22")))
    a, b = await platform.customer_by("x:11"), await platform.customer_by("x:22")
    ok = await platform.client.put(f"/identity/v1/customers/{a}/consents/marketing",
                                   json={"granted": True, "source": "web_form"}, headers=ADMIN)
    assert ok.status_code == 200 and ok.json()["current"]["granted"] is True
    await platform.client.put(f"/identity/v1/customers/{b}/consents/marketing",
                              json={"granted": False, "source": "email_unsubscribe"}, headers=ADMIN)
    bad = await platform.client.put(f"/identity/v1/customers/{a}/consents/astrology",
                                    json={"granted": True, "source": "x"}, headers=ADMIN)
    assert bad.status_code == 422 and "purpose" in bad.json()["detail"]
    await platform.client.post("/identity/v1/merges", json={"customer_ids": [a, b]}, headers=ADMIN)
    consents = (await platform.client.get(f"/identity/v1/customers/{a}/consents", headers=ADMIN)).json()
    assert consents["current"][0]["granted"] is False
    assert [h["source"] for h in consents["history"]][:2] == ["web_form", "email_unsubscribe"]


async def test_erasure_forgets_the_customer_tracks_services_and_suppresses_re_creation(platform):
    await platform.publish(crm(("crm:shop", "E-1"), ("email", "erase.me@acme-mail.com")))
    cid = await platform.customer_by("email:erase.me@acme-mail.com")
    refused = await platform.client.delete(f"/identity/v1/customers/{cid}", headers=AGENT)
    assert refused.status_code == 403
    accepted = await platform.client.delete(f"/identity/v1/customers/{cid}", params={"reason": "GDPR art. 17"},
                                            headers=ADMIN)
    assert accepted.status_code == 202
    erasure_id = accepted.json()["erasure_id"]
    assert (await platform.client.get(f"/identity/v1/customers/{cid}", headers=ADMIN)).status_code == 404
    gone = await platform.client.get("/identity/v1/customers", params={"identifier": "email:erase.me@acme-mail.com"},
                                     headers=ADMIN)
    assert gone.json()["items"] == []
    await platform.publish(CareErasureCompleted(erasure_id=erasure_id, customer_id=cid, completed_at=BASE,
                                                records_purged=3).to_envelope(source="socialzone/care"))

    async def care_done():
        r = await platform.client.get(f"/identity/v1/erasures/{erasure_id}", headers=ADMIN)
        return r.json() if r.json()["services"]["care"] else None
    status = await eventually(care_done)
    assert status["status"] == "pending" and "care" not in status["pending"] and "sales" in status["pending"]
    # the same person shows up again in ingested content: not re-created
    await platform.publish(recorded(("email", "Erase.Me@acme-mail.com"), ("x", "999")), recorded(("x", "12345")))
    await platform.customer_by("x:12345")
    still_gone = await platform.client.get("/identity/v1/customers", params={"identifier": "x:999"}, headers=ADMIN)
    assert still_gone.json()["items"] == []


async def test_export_returns_everything_and_is_audited(platform):
    await platform.publish(recorded(("x", "31"), display_name="Exported"))
    cid = await platform.customer_by("x:31")
    r = await platform.client.get(f"/identity/v1/customers/{cid}/export", params={"reason": "SAR 7"}, headers=ADMIN)
    assert r.status_code == 200
    body = r.json()
    assert body["customer"]["id"] == cid and body["identifiers"][0]["value"] == "31" and body["timeline"]
    assert (await platform.client.get(f"/identity/v1/customers/{cid}/export", headers=AGENT)).status_code == 403
    audit = (await platform.client.get("/identity/v1/audit", params={"action": "export"}, headers=ADMIN)).json()
    assert audit["items"][0]["reason"] == "SAR 7"


async def test_bad_input_is_a_problem_naming_it_and_changes_nothing(platform):
    r = await platform.client.get("/identity/v1/customers", params={"identifier": "email:not-an-email"}, headers=ADMIN)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "identifier"
    assert r.headers["content-type"].startswith("application/problem+json")
    r = await platform.client.get("/identity/v1/customers/cus_nope", headers=ADMIN)
    assert r.status_code == 404 and "cus_nope" in r.json()["detail"]
    r = await platform.client.post("/identity/v1/merges", json={"customer_ids": ["cus_a"]}, headers=ADMIN)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "customer_ids"
    await platform.publish(recorded(("x", "808")))
    cid = await platform.customer_by("x:808")
    r = await platform.client.post("/identity/v1/merges", json={"customer_ids": [cid, cid]}, headers=ADMIN)
    assert r.status_code == 422 and "itself" in r.json()["detail"]
    r = await platform.client.post("/identity/v1/merges", json={"customer_ids": [cid, "cus_nope"]}, headers=ADMIN)
    assert r.status_code == 404
    r = await platform.client.post("/identity/v1/merges", json={"customer_ids": [cid, "cus_nope"]}, headers=AGENT)
    assert r.status_code == 403
    r = await platform.client.get("/identity/v1/customers", params={"identifier": "x:808"})
    assert r.status_code == 401


async def test_match_suggestions_can_be_accepted_as_a_merge_or_rejected(platform):
    await platform.publish(recorded(("x", "61")), recorded(("facebook", "f61"), ("email", "twin@acme-mail.com")),
                           recorded(("x", "62")), recorded(("facebook", "f62"), ("email", "twin2@acme-mail.com")))
    a = await platform.customer_by("x:61")
    await platform.customer_by("x:62")
    await platform.publish(recorded(("x", "61"), ("email", "twin@acme-mail.com")),
                           recorded(("x", "62"), ("email", "twin2@acme-mail.com")))

    async def two_open():
        r = await platform.client.get("/identity/v1/match-suggestions", headers=AGENT)
        return r.json()["items"] if len(r.json()["items"]) == 2 else None
    first, second = await eventually(two_open)
    accept = await platform.client.post(f"/identity/v1/match-suggestions/{second['id']}/accept",
                                        json={"reason": "same person"}, headers=ADMIN)
    assert accept.status_code == 200 and accept.json()["status"] == "accepted"
    assert (await platform.client.get(f"/identity/v1/customers/{second['customer_ids'][1]}", headers=ADMIN)).json()["id"] \
        == (await platform.client.get(f"/identity/v1/customers/{second['customer_ids'][0]}", headers=ADMIN)).json()["id"]
    reject = await platform.client.post(f"/identity/v1/match-suggestions/{first['id']}/reject", json={}, headers=ADMIN)
    assert reject.status_code == 200 and reject.json()["status"] == "rejected"
    twice = await platform.client.post(f"/identity/v1/match-suggestions/{first['id']}/reject", json={}, headers=ADMIN)
    assert twice.status_code == 409
    merges = (await platform.client.get("/identity/v1/audit", params={"action": "merge"}, headers=ADMIN)).json()
    assert merges["items"][0]["actor"] == "admin"
    assert a


async def test_timeline_stream_sends_new_entries_as_server_sent_events(platform):
    await platform.publish(recorded(("x", "4040")))
    cid = await platform.customer_by("x:4040")

    async def read_stream():
        return await platform.client.get(f"/identity/v1/customers/{cid}/timeline/stream",
                                         params={"max_seconds": 1.5}, headers=AGENT)
    reader = asyncio.create_task(read_stream())
    await asyncio.sleep(0.3)
    await platform.publish(recorded(("x", "4040"), text="live one"))
    response = await reader
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "event: timeline" in response.text and "live one" in response.text


async def test_an_agent_links_an_identifier_with_evidence_and_a_taken_one_is_a_conflict(platform):
    await platform.publish(recorded(("x", "7001")), recorded(("x", "7002"), ("email", "taken@acme-mail.com")))
    cid = await platform.customer_by("x:7001")
    await platform.customer_by("x:7002")
    linked = await platform.client.post(f"/identity/v1/customers/{cid}/identifiers",
                                        json={"type": "phone", "value": "+1 415 555 2671", "reason": "phone call"},
                                        headers=ADMIN)
    assert linked.status_code == 201 and linked.json()["value"] == "+14155552671"
    items = (await platform.client.get(f"/identity/v1/customers/{cid}/identifiers", headers=ADMIN)).json()["items"]
    phone = next(i for i in items if i["type"] == "phone")
    assert phone["evidence"]["agent"] == "admin" and phone["rule"] == "agent" and phone["evidence"]["event_id"]
    taken = await platform.client.post(f"/identity/v1/customers/{cid}/identifiers",
                                       json={"type": "email", "value": "TAKEN@acme-mail.com"}, headers=ADMIN)
    assert taken.status_code == 409 and "merge" in taken.json()["detail"]
    invalid = await platform.client.post(f"/identity/v1/customers/{cid}/identifiers",
                                         json={"type": "phone", "value": "12"}, headers=ADMIN)
    assert invalid.status_code == 422 and invalid.json()["errors"][0]["field"] == "value"


async def test_a_retried_merge_with_the_same_idempotency_key_is_not_done_twice(platform):
    await platform.publish(recorded(("x", "8001")), recorded(("x", "8002")))
    a, b = await platform.customer_by("x:8001"), await platform.customer_by("x:8002")
    headers = {**ADMIN, "Idempotency-Key": "merge-8001-8002"}
    first = await platform.client.post("/identity/v1/merges", json={"customer_ids": [a, b]}, headers=headers)
    again = await platform.client.post("/identity/v1/merges", json={"customer_ids": [a, b]}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers.get("idempotent-replayed") == "true" and again.json() == first.json()
    merges = (await platform.client.get("/identity/v1/audit", params={"action": "merge"}, headers=ADMIN)).json()
    assert len(merges["items"]) == 1


async def test_customers_are_found_by_part_of_a_name(platform):
    await platform.publish(recorded(("x", "9101"), display_name="Beatriz Fonseca"),
                           recorded(("x", "9102"), display_name="Bea_tz 100%"),
                           recorded(("x", "9103"), display_name="Someone Else"))
    cid = await platform.customer_by("x:9101")
    await platform.customer_by("x:9103")
    found = (await platform.client.get("/identity/v1/customers", params={"q": "fonsec"}, headers=AGENT)).json()
    assert [c["id"] for c in found["items"]] == [cid]
    literal = (await platform.client.get("/identity/v1/customers", params={"q": "100%"}, headers=AGENT)).json()
    assert [c["display_name"] for c in literal["items"]] == ["Bea_tz 100%"]
    both = await platform.client.get("/identity/v1/customers", params={"q": "be", "identifier": "x:1"}, headers=AGENT)
    assert both.status_code == 422
