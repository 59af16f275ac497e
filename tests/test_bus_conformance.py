"""One conformance suite, run unchanged against both buses: the local SQLite log and
Kafka (the real Tansu broker). Each test tells one guarantee the platform relies on."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict

import pytest

from socialzone_common.bus import Bus, OutgoingMessage, RawMessage
from socialzone_common.bus.local import LocalBus
from socialzone_common.db import create_db_engine, run_migrations, session_factory
from socialzone_common.envelope import Envelope, header, now_utc
from socialzone_common.settings import ConsumerSettings, KafkaSettings, LocalBusSettings
from socialzone_common.worker import ConsumerSpec, ConsumerWorker

DEADLINE_S = 45.0
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture(params=["local", pytest.param("kafka", marks=pytest.mark.kafka)])
def make_bus(request, tmp_path):
    """A factory of started buses on one shared log (local file or Kafka cluster)."""
    buses: list[Bus] = []

    async def factory() -> Bus:
        if request.param == "local":
            bus: Bus = LocalBus(LocalBusSettings(session_timeout_s=3.0), tmp_path / "bus.db")
        else:
            from socialzone_common.bus.kafka import KafkaBus

            bootstrap = request.getfixturevalue("kafka_bootstrap")
            # Tansu holds a group join for half the session timeout: keep it short.
            bus = KafkaBus(KafkaSettings(bootstrap_servers=bootstrap, session_timeout_ms=2000,
                                         heartbeat_interval_ms=250))
        await bus.start()
        buses.append(bus)
        return bus

    request.node.buses = buses
    yield factory


@pytest.fixture(autouse=True)
async def _close_buses(request):
    yield
    for bus in getattr(request.node, "buses", []):
        await bus.close()


def event(key: str, seq: int, **extra) -> Envelope:
    return Envelope(id=str(uuid.uuid4()), source="conformance", type="test.thing.happened", subject=key,
                    time=now_utc(), partitionkey=key, data={"key": key, "seq": seq, **extra},
                    traceparent=extra.pop("traceparent", None) if extra else None)


async def new_topic(bus: Bus, partitions: int = 4) -> str:
    topic = f"conformance.{uuid.uuid4().hex[:10]}"
    await bus.ensure_topics({topic: partitions})
    return topic


async def drain(consumer, want: int, *, commit: bool = True, deadline_s: float = DEADLINE_S):
    """Poll until ``want`` records arrived (or the deadline passed)."""
    got = []
    deadline = time.monotonic() + deadline_s
    while len(got) < want and time.monotonic() < deadline:
        records = await consumer.poll(max_records=500, timeout=0.5)
        got.extend(records)
        if commit and records:
            await consumer.commit(records)
    return got


async def run_worker_until(worker: ConsumerWorker, done, *, pause: float = 0.05,
                           deadline_s: float = DEADLINE_S) -> None:
    """Run ``worker`` until ``done()`` holds (or the deadline passed), then stop it."""
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    deadline = time.monotonic() + deadline_s
    while not done() and time.monotonic() < deadline:
        await asyncio.sleep(pause)
    stop.set()
    await task


async def test_one_keys_events_arrive_in_the_order_they_were_published(make_bus):
    bus = await make_bus()
    topic = await new_topic(bus)
    keys = [f"customer-{i}" for i in range(8)]
    for seq in range(25):  # several publish calls: order must hold across batches too
        await bus.publish([OutgoingMessage(topic, event(k, seq)) for k in keys])
    consumer = bus.consumer(group=f"g-{uuid.uuid4().hex[:8]}", topics=[topic])
    await consumer.start()
    records = await drain(consumer, 200)
    await consumer.close()

    seen = defaultdict(list)
    for record in records:
        seen[record.envelope.data["key"]].append(record.envelope.data["seq"])
    assert len(records) == 200
    assert all(seen[k] == list(range(25)) for k in keys), dict(seen)


async def test_records_polled_but_not_committed_are_delivered_again_after_a_crash(make_bus):
    bus = await make_bus()
    topic = await new_topic(bus, partitions=2)
    await bus.publish([OutgoingMessage(topic, event("c1", i)) for i in range(10)])
    group = f"g-{uuid.uuid4().hex[:8]}"

    crashed = bus.consumer(group=group, topics=[topic])
    await crashed.start()
    first = await drain(crashed, 10, commit=False)
    await crashed.close()  # dies before committing

    survivor = bus.consumer(group=group, topics=[topic])
    await survivor.start()
    again = await drain(survivor, 10)
    await survivor.close()
    assert [r.envelope.id for r in first] == [r.envelope.id for r in again]


async def test_a_group_shares_partitions_and_takes_over_when_a_member_leaves(make_bus):
    bus = await make_bus()
    topic = await new_topic(bus, partitions=4)
    group = f"g-{uuid.uuid4().hex[:8]}"
    a = bus.consumer(group=group, topics=[topic], client_id="a")
    b = bus.consumer(group=group, topics=[topic], client_id="b")
    await a.start()
    await b.start()
    await bus.publish([OutgoingMessage(topic, event(f"k{i}", i)) for i in range(200)])

    got_a, got_b = [], []
    deadline = time.monotonic() + DEADLINE_S
    while len({r.envelope.id for r in got_a + got_b}) < 200 and time.monotonic() < deadline:
        for consumer, sink in ((a, got_a), (b, got_b)):
            records = await consumer.poll(max_records=50, timeout=0.2)
            sink.extend(records)
            await consumer.commit(records)
    ids_a = {r.envelope.id for r in got_a}
    ids_b = {r.envelope.id for r in got_b}
    assert len(ids_a | ids_b) == 200
    assert got_a and got_b, "both members should have had partitions"
    assert {r.partition for r in got_a}.isdisjoint({r.partition for r in got_b})

    await b.close()  # b leaves: a takes over every partition, from the committed offsets
    await bus.publish([OutgoingMessage(topic, event(f"k{i}", 1000 + i)) for i in range(200)])
    after = await drain(a, 200)
    await a.close()
    assert {r.envelope.data["seq"] for r in after} == set(range(1000, 1200))
    assert len({r.partition for r in after}) == 4


async def test_headers_and_trace_context_travel_with_the_event(make_bus):
    bus = await make_bus()
    topic = await new_topic(bus, partitions=1)
    sent = event("c7", 1).with_traceparent(TRACEPARENT)
    await bus.publish([OutgoingMessage(topic, sent, headers=[("x-origin", b"conformance")])])
    consumer = bus.consumer(group=f"g-{uuid.uuid4().hex[:8]}", topics=[topic])
    await consumer.start()
    [record] = await drain(consumer, 1)
    await consumer.close()
    assert record.envelope == sent
    assert record.envelope.traceparent == TRACEPARENT
    assert header(record.headers, "x-origin") == "conformance"
    assert record.key == b"c7"


async def test_a_committed_consumer_restarted_gets_only_what_is_new(make_bus):
    bus = await make_bus()
    topic = await new_topic(bus, partitions=3)
    group = f"g-{uuid.uuid4().hex[:8]}"
    await bus.publish([OutgoingMessage(topic, event(f"k{i}", i)) for i in range(30)])
    first = bus.consumer(group=group, topics=[topic])
    await first.start()
    assert len(await drain(first, 30)) == 30
    await first.close()

    await bus.publish([OutgoingMessage(topic, event(f"k{i}", 100 + i)) for i in range(30)])
    restarted = bus.consumer(group=group, topics=[topic])
    await restarted.start()
    records = await drain(restarted, 30)
    extra = await restarted.poll(timeout=1.0)
    await restarted.close()
    assert sorted(r.envelope.data["seq"] for r in records + extra) == list(range(100, 130))


async def test_a_poison_event_is_dead_lettered_with_its_error_and_origin_and_the_rest_go_on(make_bus, tmp_path):
    bus = await make_bus()
    topic = await new_topic(bus, partitions=1)
    await bus.ensure_topics({f"{topic}.dlq": 1})
    engine = create_db_engine(f"sqlite:///{tmp_path / 'svc.db'}")
    run_migrations(engine, None)  # the platform tables (inbox) only
    handled: list[int] = []

    def handler(session, envelope):
        if envelope.data["seq"] == 2:
            raise ValueError("cannot handle seq 2")
        handled.append(envelope.data["seq"])

    await bus.publish([OutgoingMessage(topic, event("c1", i)) for i in range(5)])
    await bus.publish([RawMessage(topic, b"c1", b"\xff not json", [])])
    worker = ConsumerWorker(bus=bus, spec=ConsumerSpec(group=f"g-{uuid.uuid4().hex[:8]}", topics=[topic],
                                                        handler=handler),
                            sessions=session_factory(engine),
                            settings=ConsumerSettings(max_attempts=3, retry_backoff_s=0.01))
    await run_worker_until(worker, lambda: worker.state.dead_lettered >= 2)

    assert handled == [0, 1, 3, 4]
    dlq = bus.consumer(group=f"g-{uuid.uuid4().hex[:8]}", topics=[f"{topic}.dlq"])
    await dlq.start()
    letters = await drain(dlq, 2)
    await dlq.close()
    engine.dispose()
    assert len(letters) == 2
    poison, junk = letters
    assert poison.envelope.data["seq"] == 2
    assert header(poison.headers, "dlq_error") == "ValueError: cannot handle seq 2"
    assert header(poison.headers, "dlq_original_topic") == topic
    assert header(poison.headers, "dlq_original_partition") == "0"
    assert header(poison.headers, "dlq_original_offset") == "2"
    assert header(poison.headers, "dlq_attempts") == "3"
    assert junk.envelope is None and junk.value == b"\xff not json"
    assert header(junk.headers, "dlq_error").startswith("undecodable")


async def test_a_group_reads_past_other_types_without_decoding_them_and_handles_its_own(make_bus, tmp_path):
    bus = await make_bus()
    topic = await new_topic(bus, partitions=1)
    wanted = [event("c1", i) for i in range(3)]
    other = [event("c1", 10 + i).model_copy(update={"type": "test.other.happened"}) for i in range(3)]
    await bus.publish([OutgoingMessage(topic, e) for pair in zip(wanted, other) for e in pair])
    # the raw bytes of an undecodable record whose type header says "not for you"
    await bus.publish([RawMessage(topic, b"c1", b"\xff not json", [("ce_type", b"test.other.happened")])])
    await bus.publish([OutgoingMessage(topic, event("c1", 3))])

    reader = bus.consumer(group=f"g-{uuid.uuid4().hex[:8]}", topics=[topic],
                          types=frozenset({"test.thing.happened"}))
    await reader.start()
    records = await drain(reader, 8)
    await reader.close()
    assert [r.skipped_type for r in records] == [None, "test.other.happened"] * 3 + ["test.other.happened", None]
    assert all(r.envelope is None for r in records if r.skipped_type)
    assert [r.envelope.data["seq"] for r in records if not r.skipped_type] == [0, 1, 2, 3]

    engine = create_db_engine(f"sqlite:///{tmp_path / 'svc.db'}")
    run_migrations(engine, None)
    handled: list[int] = []
    group = f"g-{uuid.uuid4().hex[:8]}"
    worker = ConsumerWorker(bus=bus, spec=ConsumerSpec(group=group, topics=[topic],
                                                        handler=lambda s, e: handled.append(e.data["seq"]),
                                                        types=frozenset({"test.thing.happened"})),
                            sessions=session_factory(engine), settings=ConsumerSettings(max_attempts=1))
    await run_worker_until(worker, lambda: len(handled) >= 4)
    engine.dispose()
    # the skipped records (even the undecodable one) were committed, not dead-lettered
    again = bus.consumer(group=group, topics=[topic])
    await again.start()
    leftover = await again.poll(max_records=100, timeout=1.0)
    await again.close()
    assert handled == [0, 1, 2, 3]
    assert worker.state.dead_lettered == 0 and leftover == []


async def test_a_worker_stopped_while_reading_ahead_loses_nothing_and_doubles_nothing(make_bus, tmp_path):
    bus = await make_bus()
    topic = await new_topic(bus, partitions=2)
    await bus.publish([OutgoingMessage(topic, event(f"c{i % 5}", i)) for i in range(120)])
    engine = create_engine_for_inbox(tmp_path)
    handled: list[int] = []

    def slow_handler(session, envelope):
        time.sleep(0.005)  # the read-ahead poll is in flight meanwhile
        handled.append(envelope.data["seq"])

    group = f"g-{uuid.uuid4().hex[:8]}"
    spec = ConsumerSpec(group=group, topics=[topic], handler=slow_handler)
    settings = ConsumerSettings(batch_size=10)
    first = ConsumerWorker(bus=bus, spec=spec, sessions=session_factory(engine), settings=settings)
    await run_worker_until(first, lambda: len(handled) >= 30, pause=0.01)

    second = ConsumerWorker(bus=bus, spec=spec, sessions=session_factory(engine), settings=settings)
    await run_worker_until(second, lambda: first.state.handled + second.state.handled >= 120, pause=0.02)
    engine.dispose()
    assert 30 <= first.state.handled < 120
    assert sorted(handled) == list(range(120))  # each exactly once: redelivered ones are inbox duplicates


def create_engine_for_inbox(tmp_path):
    engine = create_db_engine(f"sqlite:///{tmp_path / f'svc-{uuid.uuid4().hex[:6]}.db'}")
    run_migrations(engine, None)  # the platform tables (inbox) only
    return engine


async def test_the_local_log_forgets_what_is_older_than_its_retention(tmp_path):
    bus = LocalBus(LocalBusSettings(), tmp_path / "bus.db")
    await bus.start()
    topic = await new_topic(bus, partitions=2)
    await bus.publish([OutgoingMessage(topic, event(f"k{i}", i)) for i in range(20)])
    cutoff = time.time()
    await asyncio.sleep(0.01)
    await bus.publish([OutgoingMessage(topic, event(f"k{i}", 100 + i)) for i in range(20)])

    removed = await asyncio.to_thread(bus.store.prune, cutoff)
    consumer = bus.consumer(group="late-reader", topics=[topic])
    await consumer.start()
    records = await drain(consumer, 20)
    await consumer.close()
    await bus.publish([OutgoingMessage(topic, event("k1", 999))])  # offsets go on after pruning
    offsets = await asyncio.to_thread(bus.store.read, topic, 0, 0, 100) + \
        await asyncio.to_thread(bus.store.read, topic, 1, 0, 100)
    await bus.close()
    assert removed == 20
    assert sorted(r.envelope.data["seq"] for r in records) == list(range(100, 120))
    assert max(o[0] for o in offsets) >= 20


async def test_a_local_group_behind_on_one_topic_still_reads_its_other_topic(tmp_path):
    """Each poll starts at the next partition: with a fixed order, a group whose first
    partition always had more than a batch read nothing of the others until it caught up
    (ingest's attribution consumer, behind on zone.customers, stopped reading zone.interactions)."""
    bus = LocalBus(LocalBusSettings(), tmp_path / "bus.db")
    await bus.start()
    try:
        busy, quiet = "conformance.a-busy", "conformance.b-quiet"  # sorted: the busy one first
        await bus.ensure_topics({busy: 1, quiet: 1})
        await bus.publish([OutgoingMessage(busy, event("k", i)) for i in range(2000)])
        await bus.publish([OutgoingMessage(quiet, event("q", i)) for i in range(5)])
        consumer = bus.consumer(group="g-behind", topics=[busy, quiet])
        await consumer.start()
        seen = []
        for _ in range(4):
            records = await consumer.poll(max_records=100, timeout=0.5)
            seen.extend(r.topic for r in records)
            await consumer.commit(records)
        await consumer.close()
        assert seen.count(quiet) == 5 and seen.count(busy) >= 200
    finally:
        await bus.close()


async def test_a_worker_tells_whether_its_last_poll_found_records(make_bus, tmp_path):
    # background work (identity's matcher) reads this to yield while the consumer has work
    bus = await make_bus()
    topic = await new_topic(bus)
    await bus.publish([OutgoingMessage(topic, event(f"c{i}", i)) for i in range(6)])
    engine = create_engine_for_inbox(tmp_path)
    seen_while_handling: list[int] = []
    worker = ConsumerWorker(bus=bus, spec=ConsumerSpec(group=f"g-{uuid.uuid4().hex[:8]}", topics=[topic],
                                                        handler=lambda s, e: seen_while_handling.append(
                                                            worker.state.last_batch)),
                            sessions=session_factory(engine), settings=ConsumerSettings())
    assert worker.state.last_batch == 0
    await run_worker_until(worker, lambda: len(seen_while_handling) == 6 and worker.state.last_batch == 0)
    engine.dispose()
    assert len(seen_while_handling) == 6 and all(n > 0 for n in seen_while_handling)
    assert worker.state.last_batch == 0  # then a poll found nothing: caught up
