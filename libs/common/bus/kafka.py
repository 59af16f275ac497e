"""The Kafka bus: aiokafka against a Kafka cluster (or any Kafka-protocol broker).

Events travel in CloudEvents binary mode (``ce_*`` headers, JSON value), keyed by
their partition key, so Kafka's default partitioner keeps one key in one
partition, in order. Delivery is at least once: offsets are committed only
explicitly, after the caller has handled the records.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import CommitFailedError, TopicAlreadyExistsError, for_code
from aiokafka.helpers import create_ssl_context
from aiokafka.structs import OffsetAndMetadata

from socialzone_common.bus import (
    Bus, Consumer, OutgoingMessage, RawMessage, Record, StartFrom, StructuredMessage, decoded,
)
from socialzone_common.envelope import from_binary, from_structured, to_binary
from socialzone_common.settings import KafkaSettings

log = logging.getLogger(__name__)

PING_TIMEOUT_S = 5.0
# A little batching for the relay's bursts; publish() waits for delivery anyway.
LINGER_MS = 5


def _connection_options(settings: KafkaSettings) -> dict:
    """What the producer, the consumers and the admin client all need to connect."""
    options: dict = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.security_protocol,
        "request_timeout_ms": settings.request_timeout_ms,
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context(
            cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None,
            certfile=str(settings.ssl_certfile) if settings.ssl_certfile else None,
            keyfile=str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
        )
    if settings.security_protocol.startswith("SASL_"):
        # aiokafka takes the SCRAM credentials under the sasl_plain_* names too.
        options["sasl_mechanism"] = settings.sasl_mechanism or "PLAIN"
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = (
            settings.sasl_password.get_secret_value() if settings.sasl_password else None
        )
    return options


class KafkaBus(Bus):
    kind = "kafka"

    def __init__(self, settings: KafkaSettings) -> None:
        self._settings = settings
        self._options = _connection_options(settings)
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        if self._producer is not None:
            return
        producer = AIOKafkaProducer(
            **self._options,
            client_id=self._settings.client_id,
            # Durable on return: every in-sync replica has the record.
            acks="all",
            # Idempotence needs InitProducerId, which not every Kafka-protocol broker
            # (e.g. Tansu) serves. Ordering per partition still holds: aiokafka keeps
            # at most one batch in flight per partition, so a retry cannot overtake.
            enable_idempotence=False,
            linger_ms=LINGER_MS,
            compression_type=None,
        )
        await producer.start()
        self._producer = producer

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()  # flushes what is still buffered

    async def publish(self, messages: Sequence[OutgoingMessage | StructuredMessage | RawMessage]) -> None:
        if self._producer is None:
            raise RuntimeError("KafkaBus.publish before start()")
        deliveries = []
        try:
            for message in messages:
                if isinstance(message, StructuredMessage):
                    key, headers, value = to_binary(from_structured(message.value))
                elif isinstance(message, OutgoingMessage):
                    key, headers, value = to_binary(message.envelope)
                    headers = headers + list(message.headers)
                else:
                    key, headers, value = message.key, list(message.headers), message.value
                # No partition given: the default partitioner hashes the key (murmur2).
                deliveries.append(await self._producer.send(message.topic, value=value, key=key, headers=headers))
        finally:
            # Wait for every acknowledgement, even when a later message failed to queue,
            # so that no delivery outcome goes unobserved. A caller that retries after a
            # failure may append some messages twice: consumers are idempotent.
            results = await asyncio.gather(*deliveries, return_exceptions=True)
        failures = [result for result in results if isinstance(result, BaseException)]
        if failures:
            raise failures[0]

    def consumer(self, *, group: str, topics: Sequence[str], start_from: StartFrom = "earliest",
                 client_id: str | None = None, ephemeral: bool = False,
                 types: frozenset[str] | None = None) -> KafkaConsumer:
        # Kafka expires the offsets of an empty group by itself (offsets.retention.minutes).
        return KafkaConsumer(self._settings, self._options, group=group, topics=topics,
                             start_from=start_from, client_id=client_id, types=types)

    async def ping(self) -> None:
        if self._producer is None:
            raise RuntimeError("KafkaBus is not started")
        # A fresh metadata request, not the cached cluster view: proves a broker answers now.
        await asyncio.wait_for(self._producer.client.fetch_all_metadata(), PING_TIMEOUT_S)

    async def ensure_topics(self, topics: dict[str, int]) -> None:
        if not self._settings.create_topics or not topics:
            return  # production declares topics as Strimzi KafkaTopic resources
        admin = AIOKafkaAdminClient(**self._options, client_id=f"{self._settings.client_id}-admin")
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [
                NewTopic(name, partitions, self._settings.replication_factor)
                for name, partitions in sorted(topics.items()) if name not in existing
            ]
            if not missing:
                return
            response = await admin.create_topics(missing)
            # create_topics reports per-topic errors in the response instead of raising.
            for topic, code, *message in response.topic_errors:
                if code == 0:
                    log.info("created topic %s", topic)
                    continue
                error = for_code(code)
                if error is TopicAlreadyExistsError:
                    continue  # another replica created it in the meantime
                raise error(f"cannot create topic {topic}: {message[0] if message else ''}")
        finally:
            await admin.close()


class KafkaConsumer(Consumer):
    """One member of a consumer group; offsets move only through :meth:`commit`."""

    def __init__(self, settings: KafkaSettings, options: dict, *, group: str, topics: Sequence[str],
                 start_from: StartFrom, client_id: str | None, types: frozenset[str] | None = None) -> None:
        self.group = group
        self.topics = list(topics)
        self.types = types
        self._settings = settings
        self._options = options
        self._start_from = start_from
        self._client_id = client_id or settings.client_id
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        if self._consumer is not None:
            return
        settings = self._settings
        consumer = AIOKafkaConsumer(
            *self.topics,
            **self._options,
            client_id=self._client_id,
            group_id=self.group,
            # aiokafka's defaults are at-most-once (auto commit, "latest"): both explicit.
            enable_auto_commit=False,
            auto_offset_reset=self._start_from,
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=settings.heartbeat_interval_ms,
            max_poll_interval_ms=settings.max_poll_interval_ms,
        )
        # Joins the group and receives the first assignment. On every later
        # assignment aiokafka positions each partition at the group's committed
        # offset (or start_from when there is none), so records that were polled
        # but not committed before a rebalance are delivered again.
        await consumer.start()
        try:
            # Resolve the positions now: with "latest", a record published after
            # start() returned must be seen, so the reset may not happen lazily later.
            for tp in consumer.assignment():
                await consumer.position(tp)
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer

    @property
    def _running(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError(f"consumer of group {self.group} is not started")
        return self._consumer

    async def poll(self, *, max_records: int = 500, timeout: float = 1.0) -> list[Record]:
        batches = await self._running.getmany(timeout_ms=int(timeout * 1000), max_records=max_records)
        return [
            decoded(from_binary, m.topic, m.partition, m.offset, m.key, m.value, list(m.headers or ()), self.types)
            for messages in batches.values()
            for m in messages  # aiokafka returns each partition's messages in offset order
        ]

    async def commit(self, records: Sequence[Record]) -> None:
        offsets: dict[TopicPartition, int] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            offsets[tp] = max(offsets.get(tp, -1), record.offset + 1)
        # A partition revoked since these records were polled belongs to another
        # member now; it starts from the last committed offset and redelivers them.
        consumer = self._running
        assigned = consumer.assignment()
        lost = [tp for tp in offsets if tp not in assigned]
        if lost:
            log.warning("group %s: not committing revoked partitions %s; their records will be redelivered",
                        self.group, lost)
        to_commit = {tp: OffsetAndMetadata(offset, "") for tp, offset in offsets.items() if tp in assigned}
        if not to_commit:
            return
        try:
            await consumer.commit(to_commit)
        except CommitFailedError as exc:
            # The group rebalanced under us: at least once, the records come again.
            log.warning("group %s: commit failed after a rebalance, records will be redelivered: %s",
                        self.group, exc)

    async def lag(self) -> dict[str, int]:
        lag = dict.fromkeys(self.topics, 0)
        consumer = self._running
        assigned = list(consumer.assignment())
        # The high watermark from the last fetch; ask for the end offset only when
        # there was none yet (some brokers, e.g. Tansu, answer that one imprecisely).
        unknown = [tp for tp in assigned if consumer.highwater(tp) is None]
        ends = await consumer.end_offsets(unknown) if unknown else {}
        for tp in assigned:
            end = consumer.highwater(tp)
            end = ends.get(tp, 0) if end is None else end
            done = await consumer.committed(tp)
            if done is None:
                done = await consumer.position(tp)
            lag[tp.topic] = lag.get(tp.topic, 0) + max(end - done, 0)
        return lag

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            # Commits nothing; sends LeaveGroup so the partitions move at once. (aiokafka
            # skips that in generation 0, Tansu's first: there the session timeout frees them.)
            await consumer.stop()
