"""A service plugged into the platform end to end: a write commits state and its event
in one transaction, the relay publishes it, a consumer group of another service
handles it once, and a poison flood stops the consumer instead of dead-lettering
everything."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest
from fastapi import APIRouter
from sqlalchemy import MetaData, text

from socialzone_common.bus import OutgoingMessage
from socialzone_common.deps import SessionDep, require
from socialzone_common.envelope import Envelope, now_utc
from socialzone_common.outbox import enqueue
from socialzone_common.service import ServiceSpec
from socialzone_common.settings import ConsumerSettings
from socialzone_common.web import build_host_app
from socialzone_common.worker import ConsumerSpec

from tests.conftest import bearer

TOPIC = "probe.events"


def probe_migrations(tmp_path):
    folder = tmp_path / "probe_migrations"
    (folder / "versions").mkdir(parents=True)
    (folder / "env.py").write_text(
        "from sqlalchemy import MetaData\nfrom socialzone_common.db import run_alembic_env\n"
        "run_alembic_env(MetaData())\n")
    return folder


def make_specs(tmp_path, received: list, *, poison: bool = False):
    """Two services: 'writer' publishes through its outbox, 'reader' consumes."""
    router = APIRouter()

    @router.post("/notes", status_code=201, dependencies=[require("writer:write")])
    def create_note(session: SessionDep) -> dict:
        note_id = str(uuid.uuid4())
        session.execute(text("CREATE TABLE IF NOT EXISTS notes (id TEXT)"))
        session.execute(text("INSERT INTO notes VALUES (:id)"), {"id": note_id})
        enqueue(session, Envelope(id=str(uuid.uuid4()), source="writer", type="test.note.created",
                                  subject=note_id, time=now_utc(), partitionkey=note_id,
                                  data={"note_id": note_id}), topic=TOPIC)
        session.commit()
        return {"id": note_id}

    def handle(session, envelope):
        if poison:
            raise ValueError("this deploy cannot read anything")
        received.append(envelope.data["note_id"])

    migrations = probe_migrations(tmp_path)
    writer = ServiceSpec(name="writer", title="Writer", description="test", migrations=migrations,
                         metadata=MetaData(), routers=lambda: [router])
    reader = ServiceSpec(name="reader", title="Reader", description="test", migrations=migrations,
                         metadata=MetaData(),
                         consumers=lambda runtime: [ConsumerSpec(group="reader", topics=[TOPIC], handler=handle)])
    return [writer, reader]


async def wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture
def writer_key(settings):
    from socialzone_common.settings import ApiKey

    return settings.model_copy(update={"api_keys": settings.api_keys + [
        ApiKey(name="writer", key="writer-key", scopes=["writer:write", "reader:read"])]})


async def test_a_write_reaches_another_services_consumer_through_outbox_relay_and_bus(tmp_path, writer_key):
    received: list[str] = []
    host = build_host_app(make_specs(tmp_path, received), settings=writer_key)
    async with host.router.lifespan_context(host):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=host), base_url="http://test") as client:
            created = await client.post("/writer/v1/notes", headers={"Authorization": "Bearer writer-key"})
            assert created.status_code == 201
            await wait_for(lambda: received == [created.json()["id"]])
            status = (await client.get("/reader/v1/status", headers={"Authorization": "Bearer writer-key"})).json()
            ready = await client.get("/readyz")
    assert status["consumers"][0]["handled"] == 1
    assert ready.status_code == 200


async def test_a_poison_flood_stops_the_consumer_and_readiness_says_why(tmp_path, settings):
    received: list[str] = []
    flood = settings.model_copy(update={"consumer": ConsumerSettings(max_attempts=1, dlq_limit=3, dlq_window_s=60)})
    host = build_host_app(make_specs(tmp_path, received, poison=True), settings=flood,
                          service_settings={"reader": flood, "writer": flood})
    async with host.router.lifespan_context(host):
        bus = host.state.bus
        await bus.publish([OutgoingMessage(TOPIC, Envelope(
            id=str(uuid.uuid4()), source="writer", type="test.note.created", subject=f"n{i}", time=now_utc(),
            partitionkey=f"n{i}", data={"note_id": f"n{i}"})) for i in range(10)])
        worker = host.state.runtimes["reader"].workers[0]
        await wait_for(lambda: worker.state.stopped_reason is not None)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=host), base_url="http://test") as client:
            ready = await client.get("/reader/readyz")
    assert ready.status_code == 503
    assert "dead letters" in ready.json()["checks"]["consumer:reader"]
    assert worker.state.dead_lettered == 3  # the limit: the fourth failure stops the consumer instead
    assert received == []
