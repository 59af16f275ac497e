"""``Idempotency-Key``: a client may retry a write and it happens once. Real HTTP
through a test-only service whose writes insert rows, so a doubled write shows."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter, Response
from pydantic import BaseModel
from sqlmodel import Field, select, update

from socialzone_common.db import new_table_base
from socialzone_common.deps import SessionDep, require
from socialzone_common.envelope import now_utc
from socialzone_common.errors import ProblemError, TooManyRequests
from socialzone_common.idempotency import IdempotencyRecord
from socialzone_common.service import ServiceSpec
from socialzone_common.settings import ApiKey
from socialzone_common.web import build_host_app
from tests.conftest import bearer

ORDERS = "/shop/v1/orders"
SLOW = "/shop/v1/slow-orders"
FLAKY = "/shop/v1/flaky-orders"
CRASHING = "/shop/v1/crashing-orders"
BUSY = "/shop/v1/busy-orders"
TAGGED = "/shop/v1/tagged-orders"
CLERK = {"Authorization": "Bearer clerk-key"}

ShopTable = new_table_base("ShopTable")


class Order(ShopTable, table=True):
    __tablename__ = "orders"
    id: int | None = Field(default=None, primary_key=True)
    item: str


class OrderIn(BaseModel):
    item: str


def shop_spec(tmp_path: Path, state: dict) -> ServiceSpec:
    """A service whose writes insert an order; ``state`` lets a test steer the odd ones."""
    router = APIRouter(dependencies=[require("shop:write")])

    def place(body: OrderIn, session: SessionDep) -> dict:
        order = Order(item=body.item)
        session.add(order)
        session.commit()
        return {"id": order.id, "item": order.item}

    @router.post("/orders", status_code=201)
    def create_order(body: OrderIn, session: SessionDep) -> dict:
        return place(body, session)

    @router.post("/slow-orders", status_code=201)
    async def create_slow_order(body: OrderIn, session: SessionDep) -> dict:
        state["started"].set()
        await state["release"].wait()
        return place(body, session)

    @router.post("/flaky-orders", status_code=201)
    def create_flaky_order(body: OrderIn, session: SessionDep) -> dict:
        state["flaky_calls"] += 1
        if state["flaky_calls"] == 1:
            raise ProblemError("the warehouse did not answer", status=503, title="Service unavailable")
        return place(body, session)

    @router.post("/crashing-orders", status_code=201)
    def create_crashing_order(body: OrderIn, session: SessionDep) -> dict:
        state["crash_calls"] += 1
        if state["crash_calls"] == 1:
            raise RuntimeError("connection reset")
        return place(body, session)

    @router.post("/busy-orders", status_code=201)
    def create_busy_order(body: OrderIn, session: SessionDep) -> dict:
        state["busy_calls"] += 1
        if state["busy_calls"] == 1:
            raise TooManyRequests("the warehouse is busy; retry later", headers={"Retry-After": "1"})
        return place(body, session)

    @router.post("/tagged-orders", status_code=201)
    def create_tagged_order(body: OrderIn, session: SessionDep, response: Response) -> dict:
        response.headers["X-Warehouse"] = "north"
        response.headers["Location"] = "/shop/v1/orders/1"
        return place(body, session)

    migrations = tmp_path / "shop_migrations"
    (migrations / "versions").mkdir(parents=True)
    (migrations / "env.py").write_text(
        "from sqlalchemy import MetaData\n"
        "from socialzone_common.db import run_alembic_env\n"
        "run_alembic_env(MetaData())\n")
    (migrations / "versions" / "0001_orders.py").write_text(
        "import sqlalchemy as sa\nfrom alembic import op\n"
        "revision = 'shop_0001'\ndown_revision = None\n"
        "def upgrade():\n"
        "    op.create_table('orders', sa.Column('id', sa.Integer(), primary_key=True),\n"
        "                    sa.Column('item', sa.String(100), nullable=False))\n")
    return ServiceSpec(name="shop", title="Shop", description="test only", migrations=migrations,
                       metadata=ShopTable.metadata, routers=lambda: [router])


@pytest.fixture
def state() -> dict:
    return {"started": asyncio.Event(), "release": asyncio.Event(), "flaky_calls": 0, "crash_calls": 0,
            "busy_calls": 0}


def shop_host(settings, tmp_path, state):
    settings = settings.model_copy(update={"api_keys": [
        *settings.api_keys, ApiKey(name="clerk", key="clerk-key", scopes=["shop:write"])]})
    return build_host_app([shop_spec(tmp_path, state)], settings=settings, service_settings={"shop": settings})


@pytest.fixture
def host(settings, tmp_path, state):
    return shop_host(settings, tmp_path, state)


@asynccontextmanager
async def serving(host):
    async with host.router.lifespan_context(host):
        transport = httpx.ASGITransport(app=host, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


def orders(host) -> list[str]:
    with host.state.runtimes["shop"].sessions() as session:
        return [o.item for o in session.exec(select(Order).order_by(Order.id))]


def age_keys(host, *, by: timedelta, unfinished: bool = False) -> None:
    """Move every stored key ``by`` into the past (optionally as if its request never finished)."""
    values = {"created_at": now_utc() - by} | ({"status_code": None, "body": None} if unfinished else {})
    with host.state.runtimes["shop"].sessions() as session:
        session.exec(update(IdempotencyRecord).values(**values))
        session.commit()


def with_key(key: str, auth: dict = CLERK) -> dict:
    return {**auth, "Idempotency-Key": key}


async def test_a_retried_write_is_replayed_and_happens_once(host):
    async with serving(host) as client:
        first = await client.post(ORDERS, json={"item": "mug"}, headers=with_key("order-1"))
        retry = await client.post(ORDERS, json={"item": "mug"}, headers=with_key("order-1"))
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    assert retry.status_code == 201
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.json() == first.json()
    assert retry.headers["content-type"] == first.headers["content-type"]
    assert orders(host) == ["mug"]


async def test_writes_without_a_key_are_not_deduplicated(host):
    async with serving(host) as client:
        for _ in range(2):
            assert (await client.post(ORDERS, json={"item": "mug"}, headers=CLERK)).status_code == 201
    assert orders(host) == ["mug", "mug"]


async def test_a_different_request_with_a_used_key_is_refused_and_changes_nothing(host):
    async with serving(host) as client:
        await client.post(ORDERS, json={"item": "mug"}, headers=with_key("order-1"))
        other = await client.post(ORDERS, json={"item": "teapot"}, headers=with_key("order-1"))
    assert other.status_code == 422
    assert other.headers["content-type"] == "application/problem+json"
    assert other.json()["errors"][0]["field"] == "Idempotency-Key"
    assert "Idempotency-Key" in other.json()["detail"]
    assert orders(host) == ["mug"]


async def test_a_server_error_is_not_stored_so_the_retry_runs_for_real(host, state):
    async with serving(host) as client:
        failed = await client.post(FLAKY, json={"item": "mug"}, headers=with_key("order-1"))
        retry = await client.post(FLAKY, json={"item": "mug"}, headers=with_key("order-1"))
        again = await client.post(FLAKY, json={"item": "mug"}, headers=with_key("order-1"))
    assert failed.status_code == 503
    assert retry.status_code == 201 and "idempotent-replayed" not in retry.headers
    assert again.headers["idempotent-replayed"] == "true" and again.json() == retry.json()
    assert state["flaky_calls"] == 2
    assert orders(host) == ["mug"]


async def test_an_unexpected_exception_is_not_stored_so_the_retry_runs_for_real(host, state):
    async with serving(host) as client:
        crashed = await client.post(CRASHING, json={"item": "mug"}, headers=with_key("order-1"))
        retry = await client.post(CRASHING, json={"item": "mug"}, headers=with_key("order-1"))
    assert crashed.status_code == 500
    assert retry.status_code == 201 and "idempotent-replayed" not in retry.headers
    assert state["crash_calls"] == 2
    assert orders(host) == ["mug"]


async def test_a_429_is_not_stored_so_the_retry_after_retry_after_runs(host, state):
    async with serving(host) as client:
        busy = await client.post(BUSY, json={"item": "mug"}, headers=with_key("order-1"))
        retry = await client.post(BUSY, json={"item": "mug"}, headers=with_key("order-1"))
    assert busy.status_code == 429 and busy.headers["retry-after"] == "1"
    assert retry.status_code == 201 and "idempotent-replayed" not in retry.headers
    assert state["busy_calls"] == 2
    assert orders(host) == ["mug"]


async def test_a_keyed_write_to_the_trailing_slash_url_follows_the_redirect_and_happens_once(host):
    async with serving(host) as client:
        first = await client.post(ORDERS + "/", json={"item": "mug"}, headers=with_key("order-1"),
                                  follow_redirects=True)
        retry = await client.post(ORDERS + "/", json={"item": "mug"}, headers=with_key("order-1"),
                                  follow_redirects=True)
    assert [r.status_code for r in first.history] == [307]
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    assert retry.status_code == 201 and retry.headers["idempotent-replayed"] == "true"
    assert retry.json() == first.json()
    assert orders(host) == ["mug"]


async def test_a_replay_carries_the_original_headers(host):
    async with serving(host) as client:
        first = await client.post(TAGGED, json={"item": "mug"}, headers=with_key("order-1"))
        retry = await client.post(TAGGED, json={"item": "mug"}, headers=with_key("order-1"))
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.status_code == first.status_code == 201
    for name in ("x-warehouse", "location", "content-type"):
        assert retry.headers[name] == first.headers[name], name
    assert retry.headers.get_list("content-length") == [str(len(first.content))]
    assert orders(host) == ["mug"]


async def test_keys_are_scoped_to_the_caller(host):
    async with serving(host) as client:
        clerk = await client.post(ORDERS, json={"item": "mug"}, headers=with_key("order-1"))
        admin = await client.post(ORDERS, json={"item": "mug"}, headers=with_key("order-1", bearer("admin")))
    assert clerk.status_code == admin.status_code == 201
    assert "idempotent-replayed" not in admin.headers
    assert clerk.json()["id"] != admin.json()["id"]
    assert orders(host) == ["mug", "mug"]


async def test_keys_are_scoped_to_the_route(host):
    async with serving(host) as client:
        order = await client.post(ORDERS, json={"item": "mug"}, headers=with_key("order-1"))
        tagged = await client.post(TAGGED, json={"item": "mug"}, headers=with_key("order-1"))
    assert order.status_code == tagged.status_code == 201
    assert "idempotent-replayed" not in tagged.headers
    assert orders(host) == ["mug", "mug"]


async def test_a_key_longer_than_255_characters_is_refused(host):
    async with serving(host) as client:
        too_long = await client.post(ORDERS, json={"item": "mug"}, headers=with_key("k" * 256))
        longest = await client.post(ORDERS, json={"item": "teapot"}, headers=with_key("k" * 255))
    assert too_long.status_code == 422
    assert too_long.json()["errors"][0]["field"] == "Idempotency-Key"
    assert longest.status_code == 201
    assert orders(host) == ["teapot"]


async def test_an_expired_key_runs_again(host):
    async with serving(host) as client:
        await client.post(ORDERS, json={"item": "mug"}, headers=with_key("order-1"))
        age_keys(host, by=timedelta(hours=25))
        later = await client.post(ORDERS, json={"item": "mug"}, headers=with_key("order-1"))
    assert later.status_code == 201 and "idempotent-replayed" not in later.headers
    assert orders(host) == ["mug", "mug"]


async def test_a_twin_sent_while_the_first_is_running_gets_409(host, state):
    async with serving(host) as client:
        first = asyncio.create_task(client.post(SLOW, json={"item": "mug"}, headers=with_key("order-1")))
        await asyncio.wait_for(state["started"].wait(), 10)
        twin = await client.post(SLOW, json={"item": "mug"}, headers=with_key("order-1"))
        state["release"].set()
        first = await asyncio.wait_for(first, 10)
        retry = await client.post(SLOW, json={"item": "mug"}, headers=with_key("order-1"))
    assert twin.status_code == 409
    assert twin.headers["content-type"] == "application/problem+json"
    assert twin.json()["errors"][0]["field"] == "Idempotency-Key"
    assert first.status_code == 201
    assert retry.headers["idempotent-replayed"] == "true" and retry.json() == first.json()
    assert orders(host) == ["mug"]


async def test_a_request_that_never_finished_blocks_its_key_only_until_the_lock_times_out(host):
    async with serving(host) as client:
        await client.post(ORDERS, json={"item": "mug"}, headers=with_key("order-1"))
        age_keys(host, by=timedelta(seconds=1), unfinished=True)  # as if its process was killed
        soon = await client.post(ORDERS, json={"item": "mug"}, headers=with_key("order-1"))
        age_keys(host, by=timedelta(minutes=10), unfinished=True)
        later = await client.post(ORDERS, json={"item": "mug"}, headers=with_key("order-1"))
        replay = await client.post(ORDERS, json={"item": "mug"}, headers=with_key("order-1"))
    assert soon.status_code == 409
    assert later.status_code == 201 and "idempotent-replayed" not in later.headers
    assert replay.headers["idempotent-replayed"] == "true"
    assert orders(host) == ["mug", "mug"]


@pytest.mark.postgres
async def test_a_retried_write_is_replayed_and_happens_once_on_postgresql(pg_settings, tmp_path, state):
    host = shop_host(pg_settings, tmp_path, state)
    async with serving(host) as client:
        first = await client.post(ORDERS, json={"item": "mug"}, headers=with_key("order-1"))
        retry = await client.post(ORDERS, json={"item": "mug"}, headers=with_key("order-1"))
        other = await client.post(ORDERS, json={"item": "teapot"}, headers=with_key("order-1"))
        assert host.state.runtimes["shop"].engine.dialect.name == "postgresql"
        assert orders(host) == ["mug"]
    assert first.status_code == retry.status_code == 201
    assert retry.headers["idempotent-replayed"] == "true" and retry.json() == first.json()
    assert other.status_code == 422


async def test_a_keyed_request_larger_than_the_buffer_cap_is_refused_and_changes_nothing(host, monkeypatch):
    # The middleware buffers a keyed request to fingerprint it: the key must not be a way
    # around a service's own size limit. (The middleware is built on the first request.)
    from socialzone_common import idempotency

    monkeypatch.setattr(idempotency, "MAX_BODY_BYTES", 64)
    async with serving(host) as client:
        big = await client.post(ORDERS, json={"item": "x" * 200}, headers=with_key("big-1"))
        small = await client.post(ORDERS, json={"item": "mug"}, headers=with_key("small-1"))
    assert big.status_code == 413
    assert big.headers["content-type"] == "application/problem+json"
    assert big.json()["errors"][0]["field"] == "body"
    assert small.status_code == 201
    assert orders(host) == ["mug"]
