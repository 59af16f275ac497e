"""Fixtures of the identity tests: a migrated identity database (SQLite or PostgreSQL),
the resolution context, and helpers to run consumers and read the outbox."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from socialzone_common import db
from socialzone_common.catalog import parse_payload
from socialzone_common.envelope import from_structured
from socialzone_common.inbox import handle_once
from socialzone_common.outbox import OutboxMessage
from socialzone_identity import resolution
from socialzone_identity.consumers import on_department_event, resolution_handler
from socialzone_identity.service import SERVICE
from socialzone_identity.settings import IdentitySettings


@pytest.fixture
def identity_settings(settings) -> IdentitySettings:
    return IdentitySettings(**settings.model_dump())


class Identity:
    """An identity database with the consumers' handlers, as the worker runs them."""

    def __init__(self, settings: IdentitySettings, *, batched: bool = False) -> None:
        self.settings = settings
        self.batched = batched
        self.engine = db.create_db_engine(settings.database_url_for("identity"),
                                          schema=settings.database_schema_for("identity"))
        db.run_migrations(self.engine, SERVICE.migrations)
        self.sessions = db.session_factory(self.engine)
        self.ctx = resolution.Context.from_settings(settings)
        self.handler = resolution_handler(self.ctx)

    def ingest(self, *envelopes) -> None:
        if self.batched:
            return self.ingest_batch(*envelopes)
        for envelope in envelopes:
            handle_once(self.sessions, group="identity-resolution", envelope=envelope, handler=self.handler)

    def ingest_batch(self, *envelopes) -> None:
        """As the batch consumer does: the batch prepared (and on SQLite speculatively resolved)
        before its transaction takes the writer turn, then one transaction, bulk inbox claims,
        the batch resolver."""
        from socialzone_common.inbox import claim_many
        from socialzone_identity.fastpath import BatchResolver

        resolver = BatchResolver(self.ctx)
        with self.sessions() as session:
            prepared = resolver.prepare(session, list(envelopes))
            db.begin_writing(session)
            fresh = claim_many(session, group="identity-resolution", envelopes=list(envelopes))
            resolver.resolve(session, fresh, prepared)
            session.commit()

    def match(self) -> int:
        from socialzone_identity.matcher import load_matcher, match_pending

        with self.sessions() as session:
            scored = match_pending(session, load_matcher(), threshold=self.settings.suggestion_threshold(),
                                   max_candidates=self.settings.match_max_candidates)
            session.commit()
            return scored

    def project(self, *envelopes) -> None:
        for envelope in envelopes:
            handle_once(self.sessions, group="identity-timeline", envelope=envelope, handler=on_department_event)

    def published(self, event_type: str | None = None) -> list:
        with self.sessions() as session:
            rows = session.execute(select(OutboxMessage).order_by(OutboxMessage.id)).scalars().all()
        envelopes = [from_structured(r.envelope) for r in rows]
        return [e for e in envelopes if event_type is None or e.type == event_type]

    def payloads(self, event_type: str) -> list:
        return [parse_payload(e) for e in self.published(event_type)]

    def customer_of(self, envelope) -> str:
        attributed = [p for p in self.payloads("identity.interaction.attributed")
                      if p.interaction.interaction_id == envelope.data["interaction"]["interaction_id"]]
        assert attributed, "the interaction was not attributed"
        return attributed[-1].customer_id


@pytest.fixture(params=["one_by_one", "batched"])
def identity(request, identity_settings) -> Identity:
    """Each resolution test runs twice: one transaction per event, and the batch resolver
    with everything the test ingests at once in one batch (the two must agree)."""
    store = Identity(identity_settings, batched=request.param == "batched")
    yield store
    store.engine.dispose()


@pytest.fixture
def pg_identity(pg_settings) -> Identity:
    store = Identity(IdentitySettings(**pg_settings.model_dump()))
    yield store
    store.engine.dispose()
