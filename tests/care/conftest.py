"""Customer care under test: the real service in a host app (its consumers, relay and SLA
clock running on the local bus), real HTTP through the ASGI transport, and a frozen clock."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal

import httpx
import pytest
from sqlmodel import col, select

from socialzone_common.bus import OutgoingMessage
from socialzone_common.events.common import (
    Author, BrandMention, Enrichment, Identifier, Interaction, Sentiment, Transaction,
)
from socialzone_common.events.identity import InteractionAttributed
from socialzone_common.outbox import OutboxMessage
from socialzone_common.settings import ApiKey
from socialzone_common.web import build_host_app
from socialzone_care.clock import FrozenClock, install
from socialzone_care.models import Case
from socialzone_care.service import SERVICE
from socialzone_care.settings import CareSettings

from tests.conftest import bearer

# Monday 2 March 2026, 10:00 UTC: inside the default Mon-Fri 09:00-17:00 calendar.
MONDAY_10 = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)
LEAD = {"Authorization": "Bearer test-lead-key"}
AGENT = bearer("care_agent")
ADMIN = bearer("admin")
READER = {"Authorization": "Bearer test-care-reader-key"}


@pytest.fixture
def care_settings(settings) -> CareSettings:
    values = settings.model_dump()
    values["api_keys"] = list(settings.api_keys) + [
        ApiKey(name="lead-lena", key="test-lead-key", scopes=["care:write", "care:lead"]),
        ApiKey(name="reader", key="test-care-reader-key", scopes=["care:read"]),
    ]
    # Nothing listens on port 9: the customer summary is "unavailable" unless a test serves one.
    return CareSettings(**values, sla_tick_s=0.05, identity_url="http://127.0.0.1:9/identity",
                        identity_timeout_s=0.5)


@dataclass
class Care:
    host: object
    client: httpx.AsyncClient
    clock: FrozenClock

    @property
    def runtime(self):
        return self.host.state.runtimes["care"]

    async def publish(self, *payloads, source: str = "socialzone/test") -> list[str]:
        envelopes = [p.to_envelope(source=source) for p in payloads]
        await self.host.state.bus.publish([OutgoingMessage(p.event_topic.name, e)
                                           for p, e in zip(payloads, envelopes)])
        return [e.id for e in envelopes]

    def cases(self, **where) -> list[Case]:
        with self.runtime.sessions() as session:
            statement = select(Case).order_by(col(Case.number))
            for name, value in where.items():
                statement = statement.where(getattr(Case, name) == value)
            return list(session.exec(statement))

    def events(self, event_type: str | None = None, *, case_id: str | None = None) -> list[dict]:
        """What care published, in order (its outbox: written in the same transaction as the change)."""
        with self.runtime.sessions() as session:
            rows = session.exec(select(OutboxMessage).order_by(col(OutboxMessage.id))).all()
        from socialzone_common.envelope import from_structured

        out = []
        for row in rows:
            envelope = from_structured(row.envelope)
            if event_type and envelope.type != event_type:
                continue
            if case_id and envelope.data.get("case_id") != case_id:
                continue
            out.append({"type": envelope.type, "subject": envelope.subject, **envelope.data})
        return out

    async def until(self, predicate, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            await asyncio.sleep(0.02)
        raise AssertionError("condition not met in time")

    async def advance(self, **delta) -> None:
        """Move the frozen clock and wait until the SLA clock (the background task) has made
        a whole pass at the new time."""
        from socialzone_care.service import sla_clock_passes

        self.clock.advance(**delta)
        passes = sla_clock_passes(self.runtime)
        await self.until(lambda: sla_clock_passes(self.runtime) >= passes + 2)

    async def get(self, case_id: str) -> dict:
        response = await self.client.get(f"/care/v1/cases/{case_id}", headers=AGENT)
        assert response.status_code == 200, response.text
        return response.json()

    async def put(self, path: str, body: dict) -> dict:
        response = await self.client.put(f"/care/v1{path}", json=body, headers=LEAD)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
async def care(care_settings):
    host = build_host_app([SERVICE], settings=care_settings, service_settings={"care": care_settings})
    clock = install(host.state.runtimes["care"], FrozenClock(MONDAY_10))
    async with host.router.lifespan_context(host):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=host), base_url="http://test") as client:
            yield Care(host, client, clock)


def attributed(customer_id: str, text: str = "my order is broken and nobody answers", *,
               intents=("complaint",), source: str = "x", kind: str = "post", sentiment: float | None = -0.6,
               followers: int | None = 120, conversation_id: str | None = None, in_reply_to: str | None = None,
               external_id: str | None = None, language: str | None = "en", keywords=(), hashtags=(),
               brands=(), transaction: Transaction | None = None, name: str = "Dana Doe",
               handle: str | None = None) -> InteractionAttributed:
    now = datetime.now(timezone.utc)
    interaction = Interaction(
        interaction_id=f"int-{uuid.uuid4().hex[:12]}", source=source, kind=kind,
        external_id=external_id or uuid.uuid4().hex[:10], occurred_at=now, recorded_at=now,
        author=Author(identifiers=(Identifier(type=source if source != "email" else "email",
                                              value=handle or f"@{customer_id}"),),
                      display_name=name, followers=followers),
        text=text, conversation_id=conversation_id, in_reply_to=in_reply_to, language=language,
        transaction=transaction,
        enrichment=Enrichment(language=language, intents=tuple(intents), keywords=tuple(keywords),
                              hashtags=tuple(hashtags),
                              brands=tuple(BrandMention(name=b, kind="brand", matched=b) for b in brands),
                              sentiment=None if sentiment is None else Sentiment(
                                  label="negative" if sentiment < 0 else "positive", score=sentiment)))
    return InteractionAttributed(customer_id=customer_id, interaction=interaction)


def order(customer_id: str, amount: str) -> InteractionAttributed:
    return attributed(customer_id, None, intents=(), source="crm", kind="transaction", sentiment=None,
                      transaction=Transaction(type="order", amount=Decimal(amount), currency="EUR"))


def factor(case: dict, name: str) -> dict:
    return next(f for f in case["priority_factors"] if f["name"] == name)
