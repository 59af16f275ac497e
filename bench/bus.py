"""Bus throughput: publish and consume N events of 1 KiB through the local bus and the
Kafka bus (on the Tansu broker), side by side with raw aiokafka in the same run.

Targets: local bus >= 50,000 events/s publish+consume; Kafka bus >= 70% of raw aiokafka.
``BENCH_BUS_N`` sets N (default 100,000 local, 50,000 Kafka).
"""

from __future__ import annotations

import asyncio
import gc
import os
import tempfile
import time
import uuid
from pathlib import Path

from socialzone_common.bus import Bus, OutgoingMessage
from socialzone_common.bus.local import LocalBus
from socialzone_common.envelope import Envelope, now_utc, to_binary, to_structured
from socialzone_common.service import tune_gc
from socialzone_common.settings import KafkaSettings, LocalBusSettings

from bench.results import report

BATCH = 1000
PAYLOAD = "x" * 900  # with the envelope attributes: about 1 KiB per event


def events(n: int) -> list[Envelope]:
    now = now_utc()
    return [Envelope(id=str(uuid.uuid4()), source="bench", type="bench.event.happened", subject=f"c{i % 1000}",
                     time=now, partitionkey=f"c{i % 1000}", data={"seq": i, "text": PAYLOAD})
            for i in range(n)]


async def through_bus(bus: Bus, batch: list[Envelope], topic: str, partitions: int) -> dict[str, float]:
    """Seconds to publish all then consume (and commit) all, and seconds for the same
    flow when a producer and a consumer run at the same time (sustained throughput)."""
    await bus.ensure_topics({topic: partitions, topic + ".flow": partitions})

    async def publish(name: str) -> None:
        for i in range(0, len(batch), BATCH):
            await bus.publish([OutgoingMessage(name, e) for e in batch[i:i + BATCH]])

    async def consume(name: str) -> None:
        consumer = bus.consumer(group=f"bench-{uuid.uuid4().hex[:6]}", topics=[name])
        await consumer.start()
        consumed = 0
        while consumed < len(batch):
            records = await consumer.poll(max_records=BATCH, timeout=1.0)
            if records:
                await consumer.commit(records)
                consumed += len(records)
        await consumer.close()

    started = time.perf_counter()
    await publish(topic)
    published = time.perf_counter()
    await consume(topic)
    consumed = time.perf_counter()
    await asyncio.gather(publish(topic + ".flow"), consume(topic + ".flow"))
    flowed = time.perf_counter()
    return {"publish_s": published - started, "consume_s": consumed - published, "flow_s": flowed - consumed}


async def raw_aiokafka(bootstrap: str, batch: list[Envelope], topic: str, partitions: int) -> dict[str, float]:
    """The limit: aiokafka alone, records pre-encoded (binary mode, the same bytes), the
    same producer settings (acks=all) and the same consumer commits as the Kafka bus."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, partitions, 1), NewTopic(topic + ".flow", partitions, 1)])
    await admin.close()
    encoded = [to_binary(e) for e in batch]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=5)
    await producer.start()

    async def publish(name: str) -> None:
        for i in range(0, len(encoded), BATCH):
            futures = [await producer.send(name, value=v, key=k, headers=h) for k, h, v in encoded[i:i + BATCH]]
            await asyncio.gather(*futures)

    async def consume(name: str) -> None:
        consumer = AIOKafkaConsumer(name, bootstrap_servers=bootstrap, group_id=f"raw-{uuid.uuid4().hex[:6]}",
                                    enable_auto_commit=False, auto_offset_reset="earliest")
        await consumer.start()
        consumed = 0
        while consumed < len(encoded):
            got = await consumer.getmany(timeout_ms=1000, max_records=BATCH)
            for records in got.values():
                consumed += len(records)
            if got:
                await consumer.commit()
        await consumer.stop()

    started = time.perf_counter()
    await publish(topic)
    published = time.perf_counter()
    await consume(topic)
    consumed = time.perf_counter()
    await asyncio.gather(publish(topic + ".flow"), consume(topic + ".flow"))
    flowed = time.perf_counter()
    await producer.stop()
    return {"publish_s": published - started, "consume_s": consumed - published, "flow_s": flowed - consumed}


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds else float("inf")


def figures_for(prefix: str, n: int, seconds: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}_publish_per_s": rate(n, seconds["publish_s"]),
            f"{prefix}_consume_per_s": rate(n, seconds["consume_s"]),
            f"{prefix}_sequential_events_per_s": rate(n, seconds["publish_s"] + seconds["consume_s"]),
            f"{prefix}_events_per_s": rate(n, seconds["flow_s"])}


async def run() -> dict:
    n_local = int(os.environ.get("BENCH_BUS_N", 100_000))
    n_kafka = int(os.environ.get("BENCH_BUS_KAFKA_N", n_local // 2))
    figures: dict[str, float | int] = {"events_local": n_local, "events_kafka": n_kafka,
                                       "event_bytes": len(to_structured(events(1)[0]))}
    tune_gc()  # what `socialzone run` does at start-up
    with tempfile.TemporaryDirectory() as folder:
        local = LocalBus(LocalBusSettings(), Path(folder) / "bus.db")
        await local.start()
        sample = events(n_local)
        gc.freeze()  # the pre-built sample is not the bus's garbage
        figures |= figures_for("local", n_local, await through_bus(local, sample, "bench.local", 12))
        await local.close()

    from socialzone_common.bus.kafka import KafkaBus
    from tests.kafka_broker import start_broker, stop_broker

    broker = start_broker()
    try:
        sample = events(n_kafka)
        gc.freeze()
        figures |= figures_for("raw_aiokafka", n_kafka,
                               await raw_aiokafka(broker.bootstrap, sample, "bench.raw", 12))
        kafka = KafkaBus(KafkaSettings(bootstrap_servers=broker.bootstrap))
        await kafka.start()
        figures |= figures_for("kafka", n_kafka, await through_bus(kafka, sample, "bench.kafka", 12))
        await kafka.close()
    finally:
        stop_broker(broker)
    figures["kafka_vs_raw"] = figures["kafka_events_per_s"] / figures["raw_aiokafka_events_per_s"]
    figures["kafka_vs_raw_sequential"] = (figures["kafka_sequential_events_per_s"]
                                          / figures["raw_aiokafka_sequential_events_per_s"])
    figures["local_target_met"] = int(figures["local_events_per_s"] >= 50_000)
    figures["kafka_target_met"] = int(figures["kafka_vs_raw"] >= 0.70)
    return figures


def main() -> None:
    figures = asyncio.run(run())
    report("bus", figures, notes={
        "local_events_per_s": "target >= 50,000: producer and consumer at once, N / seconds to the last commit",
        "local_sequential_events_per_s": "publish all, then consume all: N / (both durations)",
        "kafka_vs_raw": "target >= 0.70: Kafka bus / raw aiokafka, same broker, same events",
    })


if __name__ == "__main__":
    main()
