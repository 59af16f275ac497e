"""The bus interface. Two implementations share it and one conformance suite:

- ``local``: a durable append-only log in SQLite (the embedded default);
- ``kafka``: aiokafka against a Kafka cluster.

Only the outbox relay and the consumer worker talk to a bus.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from socialzone_common.envelope import DecodeError, Envelope, Headers

StartFrom = Literal["earliest", "latest"]


@dataclass(frozen=True)
class OutgoingMessage:
    """One event to append to a topic, with extra headers (e.g. DLQ metadata)."""

    topic: str
    envelope: Envelope
    headers: Headers = field(default_factory=list)


@dataclass(frozen=True)
class StructuredMessage:
    """An event already serialized in structured mode (how the outbox stores it): the
    relay hands the stored bytes on without decoding them again. The local bus appends
    them as they are; the Kafka bus decodes them into binary mode."""

    topic: str
    key: bytes
    value: bytes
    event_type: str


@dataclass(frozen=True)
class RawMessage:
    """Bytes that are not (or no longer) a valid event: only ever sent to a DLQ."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers = field(default_factory=list)


@dataclass(frozen=True)
class Record:
    """A message read from a topic. ``envelope`` is None when the bytes did not decode."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    envelope: Envelope | None
    decode_error: str | None = None
    skipped_type: str | None = None
    """Set, with ``envelope`` None, when the consumer asked for other event types only:
    the type came from the ``ce_type`` header and the value was never decoded."""


TYPE_HEADER = "ce_type"


def decoded(envelope_factory, topic, partition, offset, key, value, headers,
            types: frozenset[str] | None = None) -> Record:
    """Build a Record, keeping undecodable bytes for the DLQ instead of raising. With
    ``types``, a record whose ``ce_type`` header names another type is not decoded at all
    (most of a consumer's cost is decoding; a group often reads a topic for a few types)."""
    if types is not None:
        for name, raw in headers:
            if name == TYPE_HEADER:
                try:
                    event_type = raw.decode()
                except (AttributeError, UnicodeDecodeError):
                    break  # let the decoder judge the record
                if event_type not in types:
                    return Record(topic, partition, offset, key, value, headers, None, skipped_type=event_type)
                break
    try:
        envelope = envelope_factory(headers, value)
        return Record(topic, partition, offset, key, value, headers, envelope)
    except DecodeError as exc:
        return Record(topic, partition, offset, key, value, headers, None, str(exc))


class Consumer(ABC):
    """A member of a consumer group. Offsets are committed only by :meth:`commit`."""

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def poll(self, *, max_records: int = 500, timeout: float = 1.0) -> list[Record]:
        """Records from the member's assigned partitions, in offset order per partition."""

    @abstractmethod
    async def commit(self, records: Sequence[Record]) -> None:
        """Mark these records (and everything before them in their partitions) as done."""

    @abstractmethod
    async def lag(self) -> dict[str, int]:
        """Per topic: messages appended but not yet committed by this group (assigned partitions)."""

    @abstractmethod
    async def close(self) -> None:
        """Leave the group; uncommitted records are redelivered to whoever takes over."""


class Bus(ABC):
    kind: str

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def publish(self, messages: Sequence[OutgoingMessage | StructuredMessage | RawMessage]) -> None:
        """Append durably: when this returns, every message is acknowledged and will not be lost."""

    @abstractmethod
    def consumer(self, *, group: str, topics: Sequence[str], start_from: StartFrom = "earliest",
                 client_id: str | None = None, ephemeral: bool = False,
                 types: frozenset[str] | None = None) -> Consumer:
        """A group member. ``ephemeral``: a throw-away group (``socialzone tail``) whose
        offsets are forgotten when it closes, where the bus can forget them. ``types``: the
        event types the member handles; records of other types come back undecoded, with
        ``skipped_type`` set (they are still delivered, to be committed)."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise if the bus cannot be reached (used by /readyz)."""

    @abstractmethod
    async def ensure_topics(self, topics: dict[str, int]) -> None:
        """Create missing topics with these partition counts, where the bus allows it."""


def create_bus(settings) -> Bus:
    """The bus the settings ask for (``SOCIALZONE_BUS=local|kafka``)."""
    if settings.bus == "kafka":
        from socialzone_common.bus.kafka import KafkaBus

        return KafkaBus(settings.kafka)
    from socialzone_common.bus.local import LocalBus

    return LocalBus(settings.local_bus, settings.local_bus_path())


async def ensure_catalog_topics(bus: Bus, settings) -> None:
    """Create every catalog topic and its DLQ where the services may create topics (the local
    bus always; Kafka when ``kafka.create_topics``: production declares them as KafkaTopics)."""
    from socialzone_common.catalog import TOPICS

    if settings.bus == "local" or settings.kafka.create_topics:
        await bus.ensure_topics({name: t.partitions for name, t in TOPICS.items()}
                                | {t.dlq: t.partitions for t in TOPICS.values()})
