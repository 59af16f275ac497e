"""GET /cases/{id} shows the whole customer from the identity service over real HTTP, and
still loads when identity is slow or down (a real local server, not a mock)."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import httpx
import pytest
from pydantic import SecretStr

from socialzone_common.web import build_host_app
from socialzone_care.clock import FrozenClock, install
from socialzone_care.service import SERVICE

from tests.care.conftest import AGENT, MONDAY_10


class IdentityStub:
    """A real HTTP/1.1 server on a loopback port answering like the identity service; with
    ``keep_alive`` it serves several requests per connection (and counts the connections)."""

    def __init__(self, delay_s: float = 0.0, *, keep_alive: bool = False) -> None:
        self.delay_s, self.keep_alive, self.requests, self.connections = delay_s, keep_alive, [], 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line = head.split(b"\r\n", 1)[0].decode()
                auth = [h for h in head.decode().split("\r\n") if h.lower().startswith("authorization:")]
                self.requests.append((line, auth[0] if auth else None))
                await asyncio.sleep(self.delay_s)
                path = line.split(" ")[1]
                if "/timeline" in path:
                    body = {"items": [{"type": "care.case.opened", "time": "2026-03-02T10:00:00Z"},
                                      {"type": "sales.deal.won", "time": "2026-02-01T10:00:00Z"}],
                            "next_cursor": None}
                else:
                    body = {"customer_id": path.rsplit("/", 1)[-1], "display_name": "Dana Doe",
                            "identifiers": [{"type": "x", "value": "@dana"}]}
                data = json.dumps(body).encode()
                connection = b"keep-alive" if self.keep_alive else b"close"
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                             + str(len(data)).encode() + b"\r\nConnection: " + connection + b"\r\n\r\n" + data)
                await writer.drain()
                if not self.keep_alive:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/identity"

    async def __aexit__(self, *exc) -> None:
        self.server.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def open_case_and_get(care_settings, identity_url: str, *, views: int = 1) -> tuple[dict, float]:
    """Open a case, read it ``views`` times; the last view and how long it took."""
    settings = care_settings.model_copy(update={"identity_url": identity_url, "identity_timeout_s": 0.5})
    host = build_host_app([SERVICE], settings=settings, service_settings={"care": settings})
    install(host.state.runtimes["care"], FrozenClock(MONDAY_10))
    async with host.router.lifespan_context(host):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=host), base_url="http://test") as client:
            case = (await client.post("/care/v1/cases", headers=AGENT, json={
                "customer_id": "cus-dana", "channel": "phone", "text": "where is my refund"})).json()
            for _ in range(views):
                started = time.monotonic()
                response = await client.get(f"/care/v1/cases/{case['id']}", headers=AGENT)
                elapsed = time.monotonic() - started
                assert response.status_code == 200, response.text
    return response.json(), elapsed


async def test_case_shows_the_customer_summary_and_recent_timeline_from_identity(care_settings):
    stub = IdentityStub()
    async with stub as url:
        case, _ = await open_case_and_get(care_settings.model_copy(
            update={"identity_api_key": SecretStr("identity-reader-key")}), url)
    assert case["customer"]["available"] is True
    assert case["customer"]["summary"]["display_name"] == "Dana Doe"
    assert [e["type"] for e in case["customer"]["timeline"]] == ["care.case.opened", "sales.deal.won"]
    paths = sorted(line for line, _ in stub.requests)
    assert paths[0].startswith("GET /identity/v1/customers/cus-dana ")
    assert paths[1].startswith("GET /identity/v1/customers/cus-dana/timeline?limit=10 ")
    assert {auth.lower() for _, auth in stub.requests} == {"authorization: bearer identity-reader-key"}


async def test_case_views_reuse_their_connections_to_identity(care_settings):
    """The runtime keeps one client: the second and third views of a case ask identity over the
    connections the first one opened (a client per view would open two more each time)."""
    stub = IdentityStub(keep_alive=True)
    async with stub as url:
        case, _ = await open_case_and_get(care_settings, url, views=3)
    assert case["customer"]["available"] is True
    assert len(stub.requests) == 6
    assert stub.connections <= 2  # the first view's two requests ran side by side


async def test_case_still_loads_when_identity_is_slow(care_settings):
    async with IdentityStub(delay_s=3.0) as url:
        case, elapsed = await open_case_and_get(care_settings, url)
    assert case["customer"] == {"available": False, "reason": "identity did not answer within 0.5s"}
    assert case["status"] == "open" and case["messages"][0]["text"] == "where is my refund"
    assert elapsed < 2.0


async def test_case_still_loads_when_identity_is_down(care_settings):
    case, elapsed = await open_case_and_get(care_settings, f"http://127.0.0.1:{free_port()}/identity")
    assert case["customer"]["available"] is False
    assert "unreachable" in case["customer"]["reason"]
    assert case["priority_factors"] and elapsed < 2.0


@pytest.fixture
def care_settings(care_settings):
    from pydantic import SecretStr

    return care_settings.model_copy(update={"admin_key": SecretStr("test-admin-key")})
