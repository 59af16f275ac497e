"""Fixtures of the ingest tests: the ingest service started with real HTTP (ASGI), its
outbox, and the events it published on the local bus."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import socket
import threading
import time
from contextlib import asynccontextmanager, contextmanager

import httpx
import orjson
import pytest
import uvicorn
from sqlmodel import select

from socialzone_common.catalog import parse_payload
from socialzone_common.envelope import from_structured
from socialzone_common.outbox import OutboxMessage
from socialzone_common.settings import ApiKey
from socialzone_common.web import build_host_app
from socialzone_ingest.service import SERVICE
from socialzone_ingest.settings import IngestSettings
from socialzone_ingest.models import InteractionRow

from tests.conftest import TEST_KEYS

META_SECRET = "meta-app-secret-for-tests"
META_VERIFY = "meta-verify-token-for-tests"
MASTODON_SECRET = "mastodon-webhook-secret-for-tests"

WRITER = {"Authorization": "Bearer ingest-writer-key"}
READER = {"Authorization": "Bearer ingest-reader-key"}


@pytest.fixture
def ingest_settings(settings) -> IngestSettings:
    keys = settings.api_keys + [ApiKey(name="ingest-writer", key="ingest-writer-key", scopes=["ingest:write"]),
                                ApiKey(name="ingest-reader", key="ingest-reader-key", scopes=["ingest:read"])]
    return IngestSettings(**{**settings.model_dump(), "api_keys": keys},
                          meta_app_secret=META_SECRET, meta_verify_token=META_VERIFY,
                          ingest_enrichment_processes=0,  # the process pool has tests of its own
                          mastodon_webhook_secret=MASTODON_SECRET,
                          brands=[{"name": "Acme", "handles": ["@acme"], "aliases": ["acme corp"],
                                   "products": ["RoadRunner 3000"]},
                                  {"name": "Globex", "kind": "competitor", "handles": ["@globex"]}])


def ingest_host(settings: IngestSettings):
    return build_host_app([SERVICE], settings=settings, service_settings={"ingest": settings})


@asynccontextmanager
async def serving(settings: IngestSettings):
    host = ingest_host(settings)
    async with host.router.lifespan_context(host):
        transport = httpx.ASGITransport(app=host, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            client.host_app = host
            client.runtime = host.state.runtimes["ingest"]
            yield client


@pytest.fixture
async def client(ingest_settings):
    async with serving(ingest_settings) as client:
        yield client


def outbox_events(client, event_type: str | None = None) -> list:
    """The typed payloads ingest wrote to its outbox, in order."""
    with client.runtime.sessions() as session:
        rows = session.exec(select(OutboxMessage).order_by(OutboxMessage.id)).all()
    envelopes = [from_structured(r.envelope) for r in rows]
    return [(e, parse_payload(e)) for e in envelopes if event_type is None or e.type == event_type]


def stored(client) -> list[InteractionRow]:
    with client.runtime.sessions() as session:
        return list(session.exec(select(InteractionRow)).all())


async def bus_events(client, topic: str, count: int, timeout: float = 15.0) -> list:
    """Read ``count`` events of ``topic`` from the bus as a fresh consumer group would."""
    bus = client.host_app.state.bus
    consumer = bus.consumer(group=f"test-{time.monotonic_ns()}", topics=[topic], start_from="earliest")
    await consumer.start()
    found = []
    deadline = time.monotonic() + timeout
    try:
        while len(found) < count and time.monotonic() < deadline:
            found += [r.envelope for r in await consumer.poll(max_records=500, timeout=0.5)]
    finally:
        await consumer.close()
    return found


async def wait_for(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def dumps(value) -> bytes:
    return orjson.dumps(value)


# --- a real HTTP server on a loopback port, for the pollers ---------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def http_server(app):
    """Serve ``app`` with uvicorn on a free loopback port in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


__all__ = ["TEST_KEYS"]
