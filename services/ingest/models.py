"""Ingest tables (SQLModel) and the API models of the canonical interaction.

The tables live in this service's own database or schema. The event contracts
(``socialzone_common.events``) are kept apart from them: a table can change
without breaking a published schema.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import Column, ForeignKey, String, Text, UniqueConstraint
from sqlmodel import Field as Col

from socialzone_common.db import UtcDateTime, new_table_base
from socialzone_common.envelope import now_utc
from socialzone_common.events.common import Enrichment, InteractionKind

IngestTable = new_table_base("IngestTable")


_INT64 = 2**63 - 1
Count = Annotated[int, Field(ge=-_INT64 - 1, le=_INT64)]
"""A count as JSON carries it everywhere downstream (64-bit, like PostgreSQL's BIGINT)."""


# --- tables ------------------------------------------------------------------------------------

class InteractionRow(IngestTable, table=True):
    """One recorded interaction. ``document`` is the canonical ``Interaction`` (JSON) as published,
    enrichment included; retraction and erasure rewrite it without the personal data."""

    __tablename__ = "interactions"
    __table_args__ = (UniqueConstraint("source", "external_id", name="uq_interactions_source_external_id"),)

    id: str = Col(primary_key=True, max_length=64)
    source: str = Col(max_length=64)
    external_id: str = Col(max_length=512)
    kind: str = Col(max_length=32)
    author_key: str = Col(max_length=64, index=True)
    customer_id: str | None = Col(default=None, max_length=128, index=True)
    """The customer identity attributed the interaction to (from identity.interaction.attributed)."""
    occurred_at: datetime = Col(sa_type=UtcDateTime)
    recorded_at: datetime = Col(default_factory=now_utc, sa_type=UtcDateTime)
    retracted_at: datetime | None = Col(default=None, sa_type=UtcDateTime)
    erased_at: datetime | None = Col(default=None, sa_type=UtcDateTime)
    document: str = Col(sa_column=Column(Text, nullable=False))


class InteractionAlias(IngestTable, table=True):
    """Other ids the source gives the same interaction (an edited X post's later versions)."""

    __tablename__ = "interaction_aliases"

    source: str = Col(primary_key=True, max_length=64)
    external_id: str = Col(primary_key=True, max_length=512)
    interaction_id: str = Col(max_length=64, index=True)


class Tombstone(IngestTable, table=True):
    """A deletion the source reported before the item itself arrived (a delete notice that
    overtook a slow poll): the item is not recorded when it comes."""

    __tablename__ = "tombstones"

    source: str = Col(primary_key=True, max_length=64)
    external_id: str = Col(primary_key=True, max_length=512)
    retracted_at: datetime = Col(sa_type=UtcDateTime)
    reason: str = Col(max_length=32)


class Feed(IngestTable, table=True):
    """An RSS or Atom feed subscription, polled on a schedule."""

    __tablename__ = "feeds"

    id: str = Col(primary_key=True, max_length=64)
    url: str = Col(sa_column=Column(String(2048), nullable=False, unique=True))
    source: str = Col(default="rss", max_length=64)
    kind: str = Col(default="post", max_length=32)
    title: str | None = Col(default=None, max_length=512)
    etag: str | None = Col(default=None, max_length=512)
    last_modified: str | None = Col(default=None, max_length=128)
    created_at: datetime = Col(default_factory=now_utc, sa_type=UtcDateTime)
    next_poll_at: datetime = Col(default_factory=now_utc, sa_type=UtcDateTime, index=True)
    last_polled_at: datetime | None = Col(default=None, sa_type=UtcDateTime)
    last_status: int | None = None
    last_error: str | None = Col(default=None, max_length=1000)
    entries_seen: int = 0


class FeedEntry(IngestTable, table=True):
    """An entry id already taken from a feed (it is never recorded twice)."""

    __tablename__ = "feed_entries"

    feed_id: str = Col(sa_column=Column(String(64), ForeignKey("feeds.id", ondelete="CASCADE"),
                                        primary_key=True))
    entry_id: str = Col(primary_key=True, max_length=1024)
    interaction_id: str | None = Col(default=None, max_length=64)
    seen_at: datetime = Col(default_factory=now_utc, sa_type=UtcDateTime)


class PollCursor(IngestTable, table=True):
    """Where a poller stopped in one stream (e.g. Mastodon ``tag:acme``): the newest id seen."""

    __tablename__ = "poll_cursors"

    connector: str = Col(primary_key=True, max_length=64)
    stream: str = Col(primary_key=True, max_length=512)
    since_id: str | None = Col(default=None, max_length=128)
    polled_at: datetime | None = Col(default=None, sa_type=UtcDateTime)
    last_error: str | None = Col(default=None, max_length=1000)


class ErasedCustomer(IngestTable, table=True):
    """A customer whose data was erased: an attribution that arrives later is purged at once."""

    __tablename__ = "erased_customers"

    customer_id: str = Col(primary_key=True, max_length=128)
    erasure_id: str = Col(max_length=128)
    erased_at: datetime = Col(default_factory=now_utc, sa_type=UtcDateTime)


# --- the canonical interaction, as clients send it -------------------------------------------

Source = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_.-]*$",
                              examples=["x", "facebook", "instagram", "mastodon", "reddit", "rss", "email",
                                        "crm", "web"])]


class _Strict(BaseModel):
    # Unknown fields are refused: a typo ("extrenal_id") must not be silently dropped.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class IdentifierIn(_Strict):
    type: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*(:[a-z0-9][a-z0-9_.-]*)?$",
                      examples=["x", "x_handle", "email", "phone", "crm", "crm:salesforce"])
    value: str = Field(min_length=1, max_length=512)
    verified: bool | None = None


class AttributesIn(_Strict):
    given_name: str | None = Field(default=None, max_length=200)
    surname: str | None = Field(default=None, max_length=200)
    birth_date: date | None = None
    street: str | None = Field(default=None, max_length=300)
    city: str | None = Field(default=None, max_length=200)
    postcode: str | None = Field(default=None, max_length=32)
    region: str | None = Field(default=None, max_length=200)
    country: str | None = Field(default=None, pattern=r"^[A-Za-z]{2}$")
    location: str | None = Field(default=None, max_length=300)
    avatar_url: str | None = Field(default=None, max_length=2048)
    bio: str | None = Field(default=None, max_length=2000)
    verified: bool | None = None

    @field_validator("country")
    @classmethod
    def _upper(cls, value: str | None) -> str | None:
        return value.upper() if value else value


class AuthorIn(_Strict):
    identifiers: list[IdentifierIn] = Field(min_length=1, max_length=50)
    display_name: str | None = Field(default=None, max_length=300)
    followers: int | None = Field(default=None, ge=0, le=_INT64)
    attributes: AttributesIn | None = None
    authenticated: bool | None = None


class TransactionItemIn(_Strict):
    sku: str | None = Field(default=None, max_length=128)
    name: str = Field(min_length=1, max_length=500)
    quantity: int = Field(default=1, ge=1, le=_INT64)
    unit_price: Decimal | None = Field(default=None, max_digits=18, decimal_places=4, allow_inf_nan=False)


class TransactionIn(_Strict):
    type: Literal["order", "refund", "call", "email", "ticket"]
    amount: Decimal | None = Field(default=None, max_digits=18, decimal_places=4, allow_inf_nan=False)
    currency: str | None = Field(default=None, pattern=r"^[A-Za-z]{3}$")
    items: list[TransactionItemIn] = Field(default_factory=list, max_length=1000)

    @field_validator("currency")
    @classmethod
    def _upper(cls, value: str | None) -> str | None:
        return value.upper() if value else value

    @model_validator(mode="after")
    def _currency_with_amount(self) -> TransactionIn:
        if self.amount is not None and self.currency is None:
            raise ValueError("currency is required with an amount")
        return self


_LANG = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")


def _bcp47(value: str) -> str:
    if not _LANG.match(value):
        raise ValueError("not a BCP 47 language tag (e.g. en, pt-BR)")
    return value


LanguageTag = Annotated[str, Field(max_length=35), AfterValidator(_bcp47)]
"""A declared language. The check sits on the text, so that a missing language (most items)
costs no call into Python: a validator of the whole field runs for ``None`` too."""


class InteractionIn(_Strict):
    """One interaction in the canonical form ``POST /v1/interactions`` takes."""

    source: Source
    kind: InteractionKind
    external_id: str | None = Field(default=None, min_length=1, max_length=512)
    """The item's id at its source. Without one, a hash of the item stands in for it (so an
    identical re-delivery is still recognised)."""
    url: str | None = Field(default=None, max_length=2048)
    occurred_at: AwareDatetime
    author: AuthorIn
    text: str | None = Field(default=None, max_length=100_000)
    language: LanguageTag | None = None
    conversation_id: str | None = Field(default=None, max_length=512)
    in_reply_to: str | None = Field(default=None, max_length=512)
    metrics: dict[str, Count] = Field(default_factory=dict, max_length=50)
    """Engagement counts, e.g. likes, reposts, replies, views (a Reddit score may be negative)."""
    transaction: TransactionIn | None = None

    @field_validator("external_id", "conversation_id", "in_reply_to", mode="before")
    @classmethod
    def _ids_as_text(cls, value):
        # Networks' numeric ids are often sent as JSON numbers; they are ids, not numbers.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


# --- answers --------------------------------------------------------------------------------------

class FieldError(BaseModel):
    field: str
    message: str


class ItemResult(BaseModel):
    index: int
    """Position of the item in the request (0-based)."""
    line: int | None = None
    """Line (NDJSON) or row (CSV, header = row 1) of the item, when it came from one."""
    path: str | None = None
    """Where the item is in a platform's payload, e.g. ``data[2]`` or ``entry[0].changes[1]``."""
    status: Literal["accepted", "duplicate", "retracted", "rejected", "ignored"]
    """accepted: recorded now; duplicate: already recorded (its existing id); retracted: a deletion
    that was applied; rejected: invalid (see errors), nothing written; ignored: nothing to record
    (e.g. a deletion of something never recorded, a webhook change of another kind)."""
    interaction_id: str | None = None
    errors: list[FieldError] | None = None


class BatchResult(BaseModel):
    accepted: int
    duplicates: int
    retracted: int = 0
    rejected: int
    ignored: int = 0
    results: list[ItemResult]


class SingleResult(BaseModel):
    interaction_id: str | None
    """None only when ignored (its source had already reported it deleted)."""
    status: Literal["accepted", "duplicate", "ignored"]
    errors: list[FieldError] | None = None


class InteractionPublic(BaseModel):
    """A recorded interaction: the canonical interaction as published, and its state here."""

    interaction: dict
    retracted_at: datetime | None = None
    erased_at: datetime | None = None
    customer_id: str | None = None


class EnrichIn(_Strict):
    text: str = Field(max_length=100_000)
    language: LanguageTag | None = None


class EnrichOut(BaseModel):
    enrichment: Enrichment


class FeedCreate(_Strict):
    url: str = Field(min_length=8, max_length=2048, pattern=r"^https?://", examples=["https://blog.example.org/feed"])
    kind: Literal["post", "review", "comment"] = "post"
    """Kind of the feed's entries: blog posts, reviews (review sites) or comments."""
    source: Source = "rss"


class FeedPublic(BaseModel):
    id: str
    url: str
    source: str
    kind: str
    title: str | None
    etag: str | None
    last_modified: str | None
    created_at: datetime
    next_poll_at: datetime
    last_polled_at: datetime | None
    last_status: int | None
    last_error: str | None
    entries_seen: int
