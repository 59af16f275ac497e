"""Builders of the events the identity tests feed in."""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime, timedelta, timezone

from socialzone_common.envelope import Envelope
from socialzone_common.events.common import Author, AuthorAttributes, Enrichment, Identifier, Interaction, Sentiment, Transaction
from socialzone_common.events.ingest import InteractionRecorded, InteractionRetracted

_seq = itertools.count()
BASE = datetime(2026, 1, 1, tzinfo=timezone.utc)


def interaction(*identifiers: tuple[str, str], source: str = "x", kind: str = "post", text: str | None = "hello",
                display_name: str | None = None, verified: bool | None = None, attributes: dict | None = None,
                verified_identifiers: tuple[str, ...] = (), authenticated: bool | None = None,
                transaction: dict | None = None, sentiment: float | None = None, language: str | None = None,
                at: datetime | None = None, interaction_id: str | None = None) -> Interaction:
    n = next(_seq)
    at = at or BASE + timedelta(minutes=n)
    attrs = dict(attributes or {})
    if verified is not None:
        attrs["verified"] = verified
    enrichment = Enrichment(language=language, sentiment=Sentiment(
        label="positive" if (sentiment or 0) > 0 else "negative" if (sentiment or 0) < 0 else "neutral",
        score=sentiment) if sentiment is not None else None)
    return Interaction(
        interaction_id=interaction_id or f"int_{uuid.uuid4().hex[:12]}", source=source, kind=kind,
        external_id=str(n), occurred_at=at, recorded_at=at + timedelta(seconds=1),
        author=Author(identifiers=tuple(Identifier(type=t, value=v, verified=True if t in verified_identifiers else None)
                                        for t, v in identifiers),
                      display_name=display_name, attributes=AuthorAttributes(**attrs) if attrs else None,
                      authenticated=authenticated),
        text=text, transaction=Transaction(**transaction) if transaction else None, enrichment=enrichment)


def recorded(*identifiers: tuple[str, str], **options) -> Envelope:
    return InteractionRecorded(interaction=interaction(*identifiers, **options)).to_envelope(source="socialzone/ingest")


def retracted(envelope: Envelope, reason: str = "deleted") -> Envelope:
    data = envelope.data["interaction"]
    ident = data["author"]["identifiers"][0]
    import hashlib

    key = "author:" + hashlib.sha256(f"{ident['type']}:{ident['value']}".encode()).hexdigest()[:32]
    return InteractionRetracted(interaction_id=data["interaction_id"], author_key=key, source=data["source"],
                                external_id=data.get("external_id"), retracted_at=BASE + timedelta(days=30),
                                reason=reason).to_envelope(source="socialzone/ingest")


def crm(*identifiers: tuple[str, str], **options) -> Envelope:
    options.setdefault("source", "crm")
    options.setdefault("kind", "transaction")
    options.setdefault("text", None)
    return recorded(*identifiers, **options)
