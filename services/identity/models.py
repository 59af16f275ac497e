"""Identity tables (SQLModel). They live in this service's own database or schema.

The API models (what callers send and receive) are in :mod:`socialzone_identity.schemas`.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, Integer, Numeric, UniqueConstraint
from sqlmodel import Field

from socialzone_common.db import UtcDateTime, new_table_base
from socialzone_common.envelope import now_utc

IdentityTable = new_table_base("IdentityTable")


class Customer(IdentityTable, table=True):
    """One person. A merged customer keeps its row and points at its survivor
    (``merged_into``); an erased one keeps only its id and ``status = erased``."""

    __tablename__ = "customers"

    id: str = Field(primary_key=True, max_length=40)
    status: str = Field(default="active", max_length=16)  # active | merged | erased
    merged_into: str | None = Field(default=None, max_length=40, index=True)
    created_at: datetime = Field(sa_type=UtcDateTime)
    updated_at: datetime = Field(default_factory=now_utc, sa_type=UtcDateTime)
    created_from: str = Field(default="interaction", max_length=16)
    display_name: str | None = Field(default=None, max_length=256)
    search_text: str | None = Field(default=None, max_length=2000)
    """Lower-cased names the customer is known by, for search by name."""
    profile: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    """Reconciled fields: ``{field: {"v", "src", "trust", "at", "from"}}`` plus ``names`` and ``locations``."""
    needs_match: bool = Field(default=False, index=True)
    """The profile is new or changed: the matcher scores it against its blocking candidates."""


class IdentifierLink(IdentityTable, table=True):
    """An identifier of a customer, with its evidence. ``(type, value)`` is unique: an
    identifier belongs to one customer at a time, which is also what makes concurrent
    resolution safe (see resolution.py)."""

    __tablename__ = "identifiers"
    __table_args__ = (UniqueConstraint("type", "value", name="uq_identifiers_type_value"),)

    id: int | None = Field(default=None, primary_key=True)
    type: str = Field(max_length=64)
    value: str = Field(max_length=512)
    customer_id: str = Field(max_length=40, index=True)
    origin_customer_id: str = Field(max_length=40)
    """The customer it was first linked to (an unmerge gives it back)."""
    strength: str = Field(max_length=8)
    rule: str = Field(max_length=64)
    evidence_event_id: str | None = Field(default=None, max_length=64)
    evidence_agent: str | None = Field(default=None, max_length=128)
    anchor_id: int | None = None
    """For a handle: the identifier row of the stable platform id it belongs to."""
    linked_at: datetime = Field(sa_type=UtcDateTime)
    last_seen_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class TimelineEntry(IdentityTable, table=True):
    """One event on a customer's timeline (the projection every department reads)."""

    __tablename__ = "timeline"
    __table_args__ = (
        Index("ix_timeline_customer_time", "customer_id", "occurred_at", "id"),
        Index("ix_timeline_interaction", "interaction_id"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger().with_variant(Integer(), "sqlite"),
                                                           primary_key=True, autoincrement=True))
    customer_id: str = Field(max_length=40)
    origin_customer_id: str = Field(max_length=40)
    via_identifier_id: int | None = None
    event_id: str = Field(max_length=64)
    event_type: str = Field(max_length=128)
    department: str = Field(max_length=32)
    occurred_at: datetime = Field(sa_type=UtcDateTime)
    summary: str = Field(max_length=300)
    channel: str | None = Field(default=None, max_length=64)
    interaction_id: str | None = Field(default=None, max_length=128)
    ref_id: str | None = Field(default=None, max_length=128)
    """The case, lead or deal the entry is about."""
    sentiment: float | None = None
    language: str | None = Field(default=None, max_length=16)
    amount: Decimal | None = Field(default=None, sa_column=Column(Numeric(18, 4)))
    currency: str | None = Field(default=None, max_length=3)
    retracted: bool = False
    event: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    """The event's data (for ``include=event``)."""


class Merge(IdentityTable, table=True):
    __tablename__ = "merges"

    id: int | None = Field(default=None, primary_key=True)
    survivor_id: str = Field(max_length=40, index=True)
    merged_id: str = Field(max_length=40, index=True)
    rule: str = Field(max_length=64)
    reason: str | None = Field(default=None, max_length=1000)
    actor: str = Field(max_length=128)
    evidence: list[Any] | None = Field(default=None, sa_column=Column(JSON))
    survivor_profile_before: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    event_id: str | None = Field(default=None, max_length=64)
    merged_at: datetime = Field(sa_type=UtcDateTime)
    unmerged_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class MatchSuggestion(IdentityTable, table=True):
    __tablename__ = "match_suggestions"
    __table_args__ = (UniqueConstraint("customer_a", "customer_b", name="uq_match_suggestions_pair"),)

    id: int | None = Field(default=None, primary_key=True)
    customer_a: str = Field(max_length=40, index=True)
    customer_b: str = Field(max_length=40, index=True)
    status: str = Field(default="open", max_length=16, index=True)  # open | accepted | rejected | superseded
    rule: str = Field(max_length=64)
    """Why: weak_identifier (a shared weak identifier), cap_exceeded, match_model."""
    probability: float | None = None
    weight: float | None = None
    features: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    evidence_event_id: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(sa_type=UtcDateTime)
    decided_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    decided_by: str | None = Field(default=None, max_length=128)
    decision_reason: str | None = Field(default=None, max_length=1000)


class BlockingKey(IdentityTable, table=True):
    """Blocking keys of a customer's profile: candidates for matching in one indexed lookup."""

    __tablename__ = "blocking_keys"

    key: str = Field(primary_key=True, max_length=200)
    customer_id: str = Field(primary_key=True, max_length=40, index=True)


class ConsentRecord(IdentityTable, table=True):
    """The full history of consents; the current consent for a purpose is its latest row."""

    __tablename__ = "consents"
    __table_args__ = (Index("ix_consents_customer_purpose", "customer_id", "purpose"),)

    id: int | None = Field(default=None, primary_key=True)
    customer_id: str = Field(max_length=40)
    origin_customer_id: str = Field(max_length=40)
    purpose: str = Field(max_length=64)
    granted: bool
    source: str = Field(max_length=64)
    changed_at: datetime = Field(sa_type=UtcDateTime)
    recorded_at: datetime = Field(default_factory=now_utc, sa_type=UtcDateTime)
    actor: str | None = Field(default=None, max_length=128)
    reason: str | None = Field(default=None, max_length=1000)


class Erasure(IdentityTable, table=True):
    __tablename__ = "erasures"

    id: str = Field(primary_key=True, max_length=40)
    customer_id: str = Field(max_length=40, index=True)
    merged_ids: list[str] | None = Field(default=None, sa_column=Column(JSON))
    status: str = Field(default="pending", max_length=16)  # pending | completed
    requested_at: datetime = Field(sa_type=UtcDateTime)
    requested_by: str = Field(max_length=128)
    reason: str | None = Field(default=None, max_length=1000)
    expected: list[str] | None = Field(default=None, sa_column=Column(JSON))
    completions: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    completed_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class Suppression(IdentityTable, table=True):
    """Salted hashes of erased persons' identifiers: ingested content with one of them
    is never attributed again, so the person is not re-created."""

    __tablename__ = "suppressions"

    hash: str = Field(primary_key=True, max_length=64)
    erasure_id: str = Field(max_length=40)
    created_at: datetime = Field(default_factory=now_utc, sa_type=UtcDateTime)


class AuditEntry(IdentityTable, table=True):
    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=now_utc, sa_type=UtcDateTime, index=True)
    actor: str = Field(max_length=128)
    action: str = Field(max_length=32, index=True)
    customer_id: str | None = Field(default=None, max_length=40, index=True)
    reason: str | None = Field(default=None, max_length=1000)
    detail: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
