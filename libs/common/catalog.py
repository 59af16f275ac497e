"""The event catalog: every event type socialzone publishes, its topic, version and model.

An event type is declared once, as a frozen pydantic model that subclasses
:class:`Event` with its ``type``, ``topic`` and ``version``::

    class CaseResolved(Event, type="care.case.resolved", topic=CARE, version=1):
        case_id: str

Declaring the class registers it; :data:`CATALOG` maps type -> entry. The models
live in :mod:`socialzone_common.events` (one module per department) and are
kept apart from table models so that a database refactor cannot break a contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from socialzone_common.envelope import Envelope, new_event_id, now_utc


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int
    description: str

    @property
    def dlq(self) -> str:
        return f"{self.name}.dlq"


RAW_INTERACTIONS = Topic("zone.interactions.raw", 12, "Interactions as ingest recorded them, before attribution.")
INTERACTIONS = Topic("zone.interactions", 12, "Interactions attributed to one customer: the shared zone stream.")
CUSTOMERS = Topic("zone.customers", 6, "Customer lifecycle: creation, merges, identifiers, consent.")
PRIVACY = Topic("zone.privacy", 3, "Erasure requests and each service's completion.")
CARE = Topic("zone.care", 6, "Customer care cases, SLAs and satisfaction.")
MARKETING = Topic("zone.marketing", 6, "Advocates, rewards and campaigns.")
SALES = Topic("zone.sales", 6, "Leads, pipeline and deals.")
INSIGHTS = Topic("zone.insights", 3, "Alerts raised and resolved by insights.")

TOPICS: dict[str, Topic] = {
    t.name: t
    for t in (RAW_INTERACTIONS, INTERACTIONS, CUSTOMERS, PRIVACY, CARE, MARKETING, SALES, INSIGHTS)
}


def topic_partitions(name: str) -> int:
    """Partition count of a catalog topic; a DLQ topic has as many as its source."""
    base = name.removesuffix(".dlq")
    return TOPICS[base].partitions if base in TOPICS else 1


@dataclass(frozen=True)
class CatalogEntry:
    type: str
    version: int
    topic: Topic
    model: type[Event]
    summary: str

    @cached_property  # asked for every event written
    def dataschema(self) -> str:
        return f"urn:socialzone:event:{self.type}:v{self.version}"


CATALOG: dict[str, CatalogEntry] = {}


class Event(BaseModel):
    """Base of every event payload: an immutable fact, past tense, versioned."""

    # extra="ignore": a consumer built against v1 must accept the optional fields
    # that a newer producer adds (the compatibility rule of the catalog).
    model_config = ConfigDict(frozen=True, extra="ignore")

    event_type: ClassVar[str]
    event_version: ClassVar[int]
    event_topic: ClassVar[Topic]

    def __init_subclass__(cls, *, type: str | None = None, topic: Topic | None = None,
                          version: int = 1, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if type is None:
            return  # an abstract intermediate base, not an event type
        if topic is None:
            raise TypeError(f"event {type} needs a topic")
        if type in CATALOG and CATALOG[type].model.__qualname__ != cls.__qualname__:
            raise TypeError(f"event type {type} is declared twice")
        cls.event_type, cls.event_version, cls.event_topic = type, version, topic
        summary = (cls.__doc__ or type).strip().splitlines()[0]
        CATALOG[type] = CatalogEntry(type, version, topic, cls, summary)


def entry_for(event_type: str) -> CatalogEntry:
    entry = CATALOG.get(event_type)
    if entry is None:  # the event modules import on first use (asked for every event written)
        load_catalog()
        entry = CATALOG.get(event_type)
        if entry is None:
            raise KeyError(f"unknown event type {event_type!r}: not in the catalog")
    return entry


def load_catalog() -> dict[str, CatalogEntry]:
    """Import every event module so that the catalog is complete."""
    import socialzone_common.events  # noqa: F401  (declaring the classes registers them)

    return CATALOG


def make_envelope(payload: Event, *, source: str, subject: str | None,
                  partitionkey: str | None = None, time: datetime | None = None,
                  event_id: str | None = None, traceparent: str | None = None) -> Envelope:
    """Wrap a payload in its envelope. The partition key defaults to the subject."""
    key = partitionkey or subject
    if not key:
        raise ValueError(f"{payload.event_type}: an event needs a subject or a partition key")
    entry = CATALOG[payload.event_type]
    return Envelope(
        id=event_id or new_event_id(),
        source=source,
        type=entry.type,
        subject=subject,
        time=time or now_utc(),
        dataschema=entry.dataschema,
        partitionkey=key,
        traceparent=traceparent,
        data=payload.model_dump(mode="json"),
    )


def parse_payload(envelope: Envelope) -> Event:
    """The typed payload of an envelope (validates it against its catalog model)."""
    return entry_for(envelope.type).model.model_validate(envelope.data)
