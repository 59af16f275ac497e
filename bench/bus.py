"""Bus throughput: publish and consume N events of 1 KiB through the local bus and the
Kafka bus (on the Tansu broker), side by side with raw aiokafka in the same run.

Targets: local bus >= 50,000 events/s publish+consume; Kafka bus >= 70% of raw aiokafka.
``BENCH_BUS_N`` sets N (default 100,000 local, 50,000 Kafka).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from pathlib import Path

from socialzone_common.bus import Bus, OutgoingMessage
from socialzone_common.bus.local import LocalBus
from socialzone_common.envelope import Envelope, now_utc, to_binary
from socialzone_common.settings import KafkaSettings, LocalBusSettings

from bench.results import report

BATCH = 1000
PAYLOAD = "x" * 900  # with the envelope attributes: about 1 KiB per event


def events(n: int) -> list[Envelope]:
    now = now_utc()
    return [Envelope(id=str(uuid.uuid4()), source="bench", type="bench.event.happened", subject=f"c{i % 1000}",
                     time=now, partitionkey=f"c{i % 1000}", data={"seq": i, "text": PAYLOAD})
            for i in range(n)]


async def through_bus(bus: Bus, batch: list[Envelope], topic: str, partitions: int) -> tuple[float, float]:
    """Seconds to publish all, then to consume (and commit) all."""
    await bus.ensure_topics({topic: partitions})
    started = time.perf_counter()
    for i in range(0, len(batch), BATCH):
        await bus.publish([OutgoingMessage(topic, e) for e in batch[i:i + BATCH]])
    published = time.perf_counter()
    consumer = bus.consumer(group=f"bench-{uuid.uuid4().hex[:6]}", topics=[topic])
    await consumer.start()
    consumed, started_consume = 0, time.perf_counter()
    while consumed < len(batch):
        records = await consumer.poll(max_records=BATCH, timeout=1.0)
        if records:
            await consumer.commit(records)
            consumed += len(records)
    done = time.perf_counter()
    await consumer.close()
    return published - started, done - started_consume


async def raw_aiokafka(bootstrap: str, batch: list[Envelope], topic: str, partitions: int) -> tuple[float, float]:
    """The limit: aiokafka alone, with records pre-encoded (binary mode, same bytes)."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, partitions, 1)])
    await admin.close()
    encoded = [to_binary(e) for e in batch]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False,
                                linger_ms=5, max_batch_size=1 << 20)
    await producer.start()
    started = time.perf_counter()
    for i in range(0, len(encoded), BATCH):
        futures = [await producer.send(topic, value=v, key=k, headers=h) for k, h, v in encoded[i:i + BATCH]]
        await asyncio.gather(*futures)
    published = time.perf_counter()
    await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"raw-{uuid.uuid4().hex[:6]}",
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    consumed, started_consume = 0, time.perf_counter()
    while consumed < len(encoded):
        got = await consumer.getmany(timeout_ms=1000, max_records=BATCH)
        for records in got.values():
            consumed += len(records)
        if got:
            await consumer.commit()
    done = time.perf_counter()
    await consumer.stop()
    return published - started, done - started_consume


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds else float("inf")


async def run() -> dict:
    n_local = int(os.environ.get("BENCH_BUS_N", 100_000))
    n_kafka = int(os.environ.get("BENCH_BUS_KAFKA_N", n_local // 2))
    figures: dict[str, float | int] = {"events_local": n_local, "events_kafka": n_kafka,
                                       "event_bytes": len(to_binary(events(1)[0])[2])}
    with tempfile.TemporaryDirectory() as folder:
        local = LocalBus(LocalBusSettings(), Path(folder) / "bus.db")
        await local.start()
        pub, con = await through_bus(local, events(n_local), "bench.local", 12)
        await local.close()
    figures |= {"local_publish_per_s": rate(n_local, pub), "local_consume_per_s": rate(n_local, con),
                "local_events_per_s": rate(n_local, pub + con)}

    from socialzone_common.bus.kafka import KafkaBus
    from tests.kafka_broker import start_broker, stop_broker

    broker = start_broker()
    try:
        sample = events(n_kafka)
        raw_pub, raw_con = await raw_aiokafka(broker.bootstrap, sample, "bench.raw", 12)
        kafka = KafkaBus(KafkaSettings(bootstrap_servers=broker.bootstrap))
        await kafka.start()
        pub, con = await through_bus(kafka, sample, "bench.kafka", 12)
        await kafka.close()
    finally:
        stop_broker(broker)
    figures |= {"kafka_publish_per_s": rate(n_kafka, pub), "kafka_consume_per_s": rate(n_kafka, con),
                "kafka_events_per_s": rate(n_kafka, pub + con),
                "raw_aiokafka_publish_per_s": rate(n_kafka, raw_pub),
                "raw_aiokafka_consume_per_s": rate(n_kafka, raw_con),
                "raw_aiokafka_events_per_s": rate(n_kafka, raw_pub + raw_con)}
    figures["kafka_vs_raw"] = figures["kafka_events_per_s"] / figures["raw_aiokafka_events_per_s"]
    figures["local_target_met"] = int(figures["local_events_per_s"] >= 50_000)
    figures["kafka_target_met"] = int(figures["kafka_vs_raw"] >= 0.70)
    return figures


def main() -> None:
    figures = asyncio.run(run())
    report("bus", figures, notes={
        "local_events_per_s": "target >= 50,000 (publish then consume, N / total seconds)",
        "kafka_vs_raw": "target >= 0.70: Kafka bus / raw aiokafka, same broker, same events",
    })


if __name__ == "__main__":
    main()
