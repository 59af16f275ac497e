"""Value objects shared by the event payloads, and the base every payload extends.

These are public contracts: analysts read them in docs/events, other departments
parse them. Add optional fields only; never rename, retype or remove one.
"""

from __future__ import annotations

import hashlib
from datetime import date
from decimal import Decimal
from operator import attrgetter
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

from socialzone_common.catalog import Event, make_envelope
from socialzone_common.envelope import Envelope

# --- small shared types ------------------------------------------------------------------

Id = Annotated[str, Field(min_length=1, max_length=128)]
"""An opaque identifier assigned by a socialzone service (a UUID in practice)."""

Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", examples=["EUR", "USD"])]
"""ISO 4217 currency code."""


def _fixed_point(value: Decimal) -> str:
    # format "f", not str(): str(Decimal("1E+3")) is "1E+3", which spreadsheets misread.
    return format(value, "f")


Money = Annotated[
    Decimal,
    Field(max_digits=18, decimal_places=4, allow_inf_nan=False),
    PlainSerializer(_fixed_point, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "pattern": r"^-?\d+(\.\d+)?$", "examples": ["19.99"],
                    "description": "A decimal amount as a string, never a float: no rounding."},
                   mode="serialization"),
]
"""An amount of money: a Decimal in Python, a decimal string on the wire."""

Score = Annotated[float, Field(allow_inf_nan=False)]
"""A finite float (JSON has no infinity or NaN)."""

Intent = Literal["complaint", "question", "purchase_intent", "praise", "churn_risk", "referral"]
InteractionKind = Literal["post", "reply", "mention", "direct_message", "review", "comment",
                          "transaction", "contact", "call", "email"]


class ValueObject(BaseModel):
    """Base of the nested payload objects: immutable, tolerant of fields added later."""

    model_config = ConfigDict(frozen=True, extra="ignore", use_attribute_docstrings=True)


class ZoneEvent(Event):
    """Base of every socialzone event payload (not an event type itself).

    Besides the payload it says which field becomes the envelope's ``subject``
    (the customer id once known) and which the Kafka partition key (default: the
    subject), so that every producer keys a type the same way.
    """

    model_config = ConfigDict(use_attribute_docstrings=True)

    subject_field: ClassVar[str] = "customer_id"
    """Dotted path of the payload attribute used as the envelope subject."""
    key_field: ClassVar[str | None] = None
    """Dotted path of the partition key attribute; None: the subject."""
    subject_description: ClassVar[str | None] = None
    """For the docs, when the subject is derived rather than a payload field."""

    def envelope_subject(self) -> str:
        return str(attrgetter(self.subject_field)(self))

    def envelope_key(self) -> str:
        return str(attrgetter(self.key_field or self.subject_field)(self))

    def to_envelope(self, *, source: str, **options: Any) -> Envelope:
        """Wrap this payload with the subject and partition key its type prescribes."""
        return make_envelope(self, source=source, subject=self.envelope_subject(),
                             partitionkey=self.envelope_key(), **options)


# --- who wrote it --------------------------------------------------------------------------

class Identifier(ValueObject):
    """A typed identifier of a person, normalized by ingest (lower-case e-mail, E.164 phone)."""

    type: str = Field(min_length=1, max_length=64,
                      examples=["email", "phone", "x", "facebook", "instagram", "mastodon",
                                "reddit", "crm", "web_cookie"])
    """Kind of identifier: a network name for network accounts, or email, phone, crm, ..."""
    value: str = Field(min_length=1, max_length=512)
    """The identifier itself, e.g. the network's numeric user id or an e-mail address."""
    verified: bool | None = None
    """The source confirmed that the person controls it (a confirmed e-mail address, a
    verified phone number); None: the source does not say."""


class AuthorAttributes(ValueObject):
    """Profile details a source disclosed about the author. Personal data: identity keeps it,
    other departments should not copy it."""

    given_name: str | None = None
    surname: str | None = None
    birth_date: date | None = None
    street: str | None = None
    city: str | None = None
    postcode: str | None = None
    region: str | None = None
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    """ISO 3166-1 alpha-2 country code."""
    location: str | None = None
    """Free-text location from the profile, as the author wrote it."""
    avatar_url: str | None = None
    bio: str | None = None
    verified: bool | None = None
    """Whether the network marks the account as verified; None: the source does not say."""


class Author(ValueObject):
    """The author of an interaction, as the source knows them (before attribution)."""

    identifiers: tuple[Identifier, ...] = Field(min_length=1)
    """The author's identifiers; the first is the one the source keys the author by."""
    display_name: str | None = None
    followers: int | None = Field(default=None, ge=0)
    attributes: AuthorAttributes | None = None
    authenticated: bool | None = None
    """The author was signed in at the source (a web or app session), so every identifier
    here belongs to that one person; None: the source does not say."""

    @property
    def key(self) -> str:
        """The author key: the subject of raw events before identity resolves a customer.

        A hash, because the first identifier may be an e-mail address and keys end
        up in logs and traces.
        """
        first = self.identifiers[0]
        return "author:" + hashlib.sha256(f"{first.type}:{first.value}".encode()).hexdigest()[:32]


# --- what ingest derived ------------------------------------------------------------------

class Sentiment(ValueObject):
    """Sentiment of the text as ingest's classifier judged it."""

    label: Literal["positive", "neutral", "negative", "unknown"]
    score: Score | None = Field(default=None, ge=-1, le=1)
    """Polarity from -1 (most negative) to 1 (most positive); None when unknown."""


class BrandMention(ValueObject):
    """A brand that the text mentions."""

    name: str
    """The canonical brand name from the brand list."""
    kind: Literal["brand", "competitor"]
    """brand: one of ours; competitor: a competitor's (share of voice)."""
    matched: str
    """The text that matched, e.g. a hashtag or a misspelling."""


class Enrichment(ValueObject):
    """What ingest derived from the text."""

    language: str | None = None
    """Detected language (BCP 47), which may differ from what the source declared."""
    sentiment: Sentiment | None = None
    intents: tuple[Intent, ...] = ()
    hashtags: tuple[str, ...] = ()
    mentions: tuple[str, ...] = ()
    """Accounts mentioned in the text, as written (e.g. "@acme")."""
    urls: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    brands: tuple[BrandMention, ...] = ()


# --- transactions from CRM exports --------------------------------------------------------

class TransactionItem(ValueObject):
    """One line of an order or refund."""

    sku: str | None = None
    name: str
    quantity: int = Field(default=1, ge=1)
    unit_price: Money | None = None


class Transaction(ValueObject):
    """A CRM record that came with the interaction: an order, refund, call, e-mail or ticket."""

    type: Literal["order", "refund", "call", "email", "ticket"]
    amount: Money | None = None
    """Total amount; None for records without one (calls, e-mails, tickets)."""
    currency: Currency | None = None
    items: tuple[TransactionItem, ...] = ()


# --- the canonical interaction -------------------------------------------------------------

class Interaction(ValueObject):
    """One interaction in canonical form, whatever network or system it came from."""

    interaction_id: Id
    """Assigned by ingest; the same item from the same source always gets the same id."""
    source: str = Field(min_length=1, max_length=64,
                        examples=["x", "facebook", "instagram", "mastodon", "reddit", "rss",
                                  "email", "crm", "web"])
    """Where it came from: a network, a feed, a mailbox or a CRM."""
    kind: InteractionKind
    external_id: str | None = None
    """The item's id at the source (tweet id, Message-ID, CRM row id)."""
    url: str | None = None
    occurred_at: AwareDatetime
    """When it happened at the source."""
    recorded_at: AwareDatetime
    """When ingest recorded it."""
    author: Author
    text: str | None = Field(default=None, max_length=10_000)
    """The text, cut to 10,000 characters (see `truncated`) to keep events small."""
    truncated: bool = False
    """True when `text` was cut."""
    language: str | None = None
    """Language as the source declared it (BCP 47); see enrichment.language for the detected one."""
    conversation_id: str | None = None
    """The source's thread or conversation id."""
    in_reply_to: str | None = None
    """external_id of the item this one replies to."""
    metrics: dict[str, int] = {}
    """Engagement counts at recording time, e.g. likes, shares, replies, views."""
    transaction: Transaction | None = None
    enrichment: Enrichment = Enrichment()


class TimeWindow(ValueObject):
    """A half-open time interval [start, end)."""

    start: AwareDatetime
    end: AwareDatetime
