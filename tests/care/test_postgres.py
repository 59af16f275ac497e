"""The same care stories on the real PostgreSQL (the production store)."""

from __future__ import annotations

from datetime import datetime, timezone

import httpx
import pytest

from socialzone_common.events.privacy import ErasureRequested
from socialzone_common.settings import ApiKey
from socialzone_common.web import build_host_app
from socialzone_care.clock import FrozenClock, install
from socialzone_care.service import SERVICE
from socialzone_care.settings import CareSettings

from tests.care.conftest import AGENT, MONDAY_10, Care, attributed

pytestmark = pytest.mark.postgres


@pytest.fixture
async def pg_care(pg_settings):
    values = pg_settings.model_dump()
    values["api_keys"] = list(pg_settings.api_keys) + [
        ApiKey(name="lead-lena", key="test-lead-key", scopes=["care:write", "care:lead"])]
    settings = CareSettings(**values, sla_tick_s=0.05, identity_url="http://127.0.0.1:9/identity",
                            identity_timeout_s=0.3)
    host = build_host_app([SERVICE], settings=settings, service_settings={"care": settings})
    clock = install(host.state.runtimes["care"], FrozenClock(MONDAY_10))
    async with host.router.lifespan_context(host):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=host), base_url="http://test") as client:
            yield Care(host, client, clock)


async def test_case_story_on_postgresql(pg_care):
    care = pg_care
    await care.put("/agents/ann", {"name": "Ann", "queues": ["general"]})
    await care.publish(attributed("cus-pg", "my invoice is wrong", keywords=("invoice",), conversation_id="c-pg"))
    [case] = await care.until(lambda: care.cases(customer_id="cus-pg"))
    await care.publish(attributed("cus-pg", "hello?", intents=(), conversation_id="c-pg"))
    await care.until(lambda: len((care.cases(customer_id="cus-pg")[0].intents)) >= 1
                     and care.runtime.workers[0].state.handled >= 2)
    assert len(care.cases(customer_id="cus-pg")) == 1 and case.assignee_id == "ann"

    await care.advance(hours=4)
    [breach] = care.events("care.sla.breached")
    assert breach["metric"] == "first_response"
    reply = await care.client.post(f"/care/v1/cases/{case.id}/responses", headers=AGENT, json={"text": "sorry"})
    assert reply.status_code == 201
    assert (await care.client.post(f"/care/v1/cases/{case.id}/resolve", headers=AGENT, json={})).status_code == 200
    assert (await care.client.post(f"/care/v1/cases/{case.id}/resolve", headers=AGENT, json={})).status_code == 409
    page = (await care.client.get("/care/v1/cases", params={"status": "resolved"}, headers=AGENT)).json()
    assert [c["id"] for c in page["items"]] == [case.id]

    await care.publish(ErasureRequested(erasure_id="er-pg", customer_id="cus-pg",
                                        requested_at=datetime.now(timezone.utc)))
    [done] = await care.until(lambda: care.events("care.erasure.completed"))
    assert done["records_purged"] > 0 and care.cases(customer_id="cus-pg") == []
    assert (await care.get(case.id))["messages"][0]["text"] is None


async def test_an_edited_cursor_with_numbers_beyond_the_columns_is_an_empty_or_full_page(pg_care):
    """The cursor's numbers are checked to fit 64 bits; care's columns are 32-bit on
    PostgreSQL: a value between 2^31 and 2^63 was a 500 there."""
    import base64

    import orjson

    care = pg_care
    await care.publish(attributed("cus-cur", "my invoice is wrong", keywords=("invoice",)))
    await care.until(lambda: care.cases(customer_id="cus-cur"))

    def cursor(p: int, n: int) -> str:
        return base64.urlsafe_b64encode(orjson.dumps({"p": p, "n": n})).decode().rstrip("=")

    beyond = await care.client.get("/care/v1/cases", params={"cursor": cursor(2**40, 2**40)}, headers=AGENT)
    assert beyond.status_code == 200, beyond.text
    assert [c["customer_id"] for c in beyond.json()["items"]] == ["cus-cur"]  # every priority is below
    below = await care.client.get("/care/v1/cases", params={"cursor": cursor(-(2**40), 0)}, headers=AGENT)
    assert below.status_code == 200 and below.json()["items"] == []
