"""Personal data through the API: masked whatever the case of an identifier type, every
unmasked read audited (the live stream too), an erased identifier never linked again."""

from __future__ import annotations

from tests.conftest import bearer
from tests.identity.factory import crm, recorded
from tests.identity.test_api import platform  # noqa: F401 (the fixture)

ADMIN, AGENT = bearer("admin"), bearer("care_agent")
V = "/identity/v1"


async def _pii_reads(platform) -> list:
    return (await platform.client.get(f"{V}/audit", params={"action": "pii_read"}, headers=ADMIN)).json()["items"]


async def test_the_timeline_stream_with_unmasked_events_is_audited(platform):
    await platform.publish(crm(("crm:shop", "S-9"), ("email", "stream.me@acme-mail.com")))
    cid = await platform.customer_by("crm:shop:S-9")
    before = await _pii_reads(platform)
    resp = await platform.client.get(f"{V}/customers/{cid}/timeline/stream",
                                     params={"max_seconds": 1.0, "include": "event"},
                                     headers={**ADMIN, "Last-Event-ID": "0"})
    assert "stream.me@acme-mail.com" in resp.text
    after = await _pii_reads(platform)
    assert len(after) == len(before) + 1
    assert after[0]["customer_id"] == cid and after[0]["detail"]["what"] == "timeline_stream"
    # masked (no identity:pii) or without events: nothing personal is sent, nothing to audit
    await platform.client.get(f"{V}/customers/{cid}/timeline/stream", params={"max_seconds": 0.5, "include": "event"},
                              headers={**AGENT, "Last-Event-ID": "0"})
    await platform.client.get(f"{V}/customers/{cid}/timeline/stream", params={"max_seconds": 0.5},
                              headers={**ADMIN, "Last-Event-ID": "0"})
    assert len(await _pii_reads(platform)) == len(after)


async def test_identifier_types_in_any_case_are_masked_in_timeline_events(platform):
    await platform.publish(crm(("crm:shop", "U-1"), ("EMAIL", "upper.case@acme-mail.com"), ("Phone", "+351912345678")))
    cid = await platform.customer_by("crm:shop:U-1")
    tl = await platform.timeline(cid, headers=AGENT, include="event", department="interactions")
    author = tl["items"][0]["event"]["interaction"]["author"]["identifiers"]
    values = {i["type"]: i["value"] for i in author}
    assert values["EMAIL"] == "u***@acme-mail.com"
    assert values["Phone"] == "+35********78"
    assert values["crm:shop"] == "U-1"


async def test_an_erased_identifier_cannot_be_linked_by_hand(platform):
    await platform.publish(crm(("crm:shop", "E-7"), ("email", "gone@acme-mail.com")), recorded(("x", "8800")))
    cid = await platform.customer_by("crm:shop:E-7")
    other = await platform.customer_by("x:8800")
    assert (await platform.client.delete(f"{V}/customers/{cid}", headers=ADMIN)).status_code == 202
    r = await platform.client.post(f"{V}/customers/{other}/identifiers",
                                   json={"type": "email", "value": "Gone@acme-mail.com"}, headers=ADMIN)
    assert r.status_code == 409, r.text
    assert "erased" in r.json()["detail"]
    found = (await platform.client.get(f"{V}/customers", params={"identifier": "email:gone@acme-mail.com"},
                                       headers=ADMIN)).json()["items"]
    assert found == []
