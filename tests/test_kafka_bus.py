"""The Kafka bus against a real Kafka-protocol broker (Tansu, started by tests.kafka_broker).

Every test uses its own topics and groups, so they share one broker safely.
Waits are bounded polling loops: a group (re)join on Tansu takes about half
the session timeout, hence the short session timeout below.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timezone

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from socialzone_common.bus import OutgoingMessage, RawMessage, Record, StartFrom
from socialzone_common.bus.kafka import KafkaBus, KafkaConsumer
from socialzone_common.envelope import Envelope, header
from socialzone_common.settings import KafkaSettings
from tests.kafka_broker import start_broker, stop_broker

pytestmark = pytest.mark.kafka

DEADLINE_S = 30.0
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def kafka_settings(kafka_bootstrap) -> KafkaSettings:
    # Tansu answers a JoinGroup after half the session timeout: keep it short.
    return KafkaSettings(bootstrap_servers=kafka_bootstrap, client_id="test",
                         session_timeout_ms=2_000, heartbeat_interval_ms=250)


@pytest.fixture
async def bus(kafka_settings) -> AsyncIterator[KafkaBus]:
    bus = KafkaBus(kafka_settings)
    await bus.start()
    yield bus
    await bus.close()


def unique(name: str) -> str:
    return f"test.{name}.{uuid.uuid4().hex[:10]}"


def event(key: str, n: int = 0, *, traceparent: str | None = None) -> Envelope:
    return Envelope(
        id=str(uuid.uuid4()), source="tests/kafka", type="test.thing.happened", subject=key,
        time=datetime.now(timezone.utc), partitionkey=key, traceparent=traceparent,
        data={"key": key, "n": n},
    )


async def new_topic(bus: KafkaBus, partitions: int) -> str:
    topic = unique("topic")
    await bus.ensure_topics({topic: partitions})
    return topic


async def publish(bus: KafkaBus, topic: str, events: Sequence[Envelope]) -> None:
    await bus.publish([OutgoingMessage(topic, e) for e in events])


@asynccontextmanager
async def member(bus: KafkaBus, group: str, topic: str,
                 start_from: StartFrom = "earliest") -> AsyncIterator[KafkaConsumer]:
    consumer = bus.consumer(group=group, topics=[topic], start_from=start_from)
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.close()


async def poll_until(consumer: KafkaConsumer, done: Callable[[list[Record]], bool], *,
                     commit: bool = False) -> list[Record]:
    """Poll (committing each batch if asked) until ``done(records so far)``, or fail at the deadline."""
    records: list[Record] = []
    deadline = time.monotonic() + DEADLINE_S
    while not done(records):
        assert time.monotonic() < deadline, f"gave up after {DEADLINE_S} s with {len(records)} records"
        batch = await consumer.poll(timeout=0.2)
        if commit and batch:
            await consumer.commit(batch)
        records += batch
    return records


def at_least(count: int) -> Callable[[list[Record]], bool]:
    return lambda records: len(records) >= count


def ids(records: Sequence[Record]) -> list[str]:
    return [r.envelope.id for r in records]


async def test_published_event_arrives_with_key_headers_and_trace_context(bus):
    topic = await new_topic(bus, 3)
    sent = event("customer-1", traceparent=TRACEPARENT)
    await bus.publish([OutgoingMessage(topic, sent, headers=[("x-origin", b"relay")])])

    async with member(bus, unique("group"), topic) as consumer:
        [record] = await poll_until(consumer, at_least(1))

    assert record.envelope == sent
    assert record.decode_error is None
    assert record.key == b"customer-1"
    assert header(record.headers, "traceparent") == TRACEPARENT
    assert header(record.headers, "ce_type") == "test.thing.happened"
    assert header(record.headers, "x-origin") == "relay"


async def test_events_of_one_key_stay_in_one_partition_in_order(bus):
    topic = await new_topic(bus, 6)
    keys = [f"customer-{k}" for k in range(24)]
    events = [event(key, n) for n in range(10) for key in keys]  # keys interleaved
    await publish(bus, topic, events[:120])
    await publish(bus, topic, events[120:])

    async with member(bus, unique("group"), topic) as consumer:
        records = await poll_until(consumer, at_least(len(events)))

    homes, seen = defaultdict(set), defaultdict(list)
    for record in records:
        homes[record.envelope.partitionkey].add(record.partition)
        seen[record.envelope.partitionkey].append(record.envelope.data["n"])
    assert sorted(ids(records)) == sorted(e.id for e in events)
    assert all(len(p) == 1 for p in homes.values()), "a key spread over partitions"
    assert all(ns == list(range(10)) for ns in seen.values()), "a key's events out of order"
    assert len({r.partition for r in records}) > 1, "all keys hashed to one partition"


async def test_records_polled_but_not_committed_are_delivered_again(bus):
    topic, group = await new_topic(bus, 3), unique("group")
    events = [event(f"customer-{k}") for k in range(9)]
    await publish(bus, topic, events)

    async with member(bus, group, topic) as first:
        polled = await poll_until(first, at_least(len(events)))
    async with member(bus, group, topic) as second:
        again = await poll_until(second, at_least(len(events)))

    assert sorted(ids(again)) == sorted(ids(polled)) == sorted(e.id for e in events)


async def test_restarted_member_gets_only_what_it_did_not_commit(bus):
    topic, group = await new_topic(bus, 1), unique("group")
    old, new = [event("c", n) for n in range(5)], [event("c", n) for n in range(5, 8)]
    await publish(bus, topic, old)
    async with member(bus, group, topic) as consumer:
        await poll_until(consumer, at_least(len(old)), commit=True)
        assert await consumer.lag() == {topic: 0}

    await publish(bus, topic, new)
    async with member(bus, group, topic) as consumer:
        # One partition: a redelivered old record would come before the new ones.
        records = await poll_until(consumer, at_least(len(new)))
        assert await consumer.lag() == {topic: len(new)}  # polled, not yet committed

    assert ids(records) == [e.id for e in new]


async def start_pair(bus: KafkaBus, group: str, topic: str) -> tuple[KafkaConsumer, KafkaConsumer]:
    a = bus.consumer(group=group, topics=[topic], client_id="member-a")
    b = bus.consumer(group=group, topics=[topic], client_id="member-b")
    # Joining together: one generation, no rebalance once records flow.
    await asyncio.gather(a.start(), b.start())
    await wait_for_split(a, b)
    return a, b


async def wait_for_split(a: KafkaConsumer, b: KafkaConsumer) -> None:
    """Each start() returns on its own member's assignment; wait until both have the new one."""
    deadline = time.monotonic() + DEADLINE_S
    while not (partitions(a) and partitions(b) and not partitions(a) & partitions(b)):
        assert time.monotonic() < deadline, f"no split: {partitions(a)} / {partitions(b)}"
        await asyncio.sleep(0.05)


async def poll_both(a: KafkaConsumer, b: KafkaConsumer, total: int, *, commit: bool):
    """Poll both members until they have ``total`` records together."""
    got_a: list[Record] = []
    got_b: list[Record] = []
    deadline = time.monotonic() + DEADLINE_S
    while len(got_a) + len(got_b) < total:
        assert time.monotonic() < deadline, f"gave up with {len(got_a)} + {len(got_b)} of {total}"
        batch_a, batch_b = await asyncio.gather(a.poll(timeout=0.2), b.poll(timeout=0.2))
        if commit:
            await asyncio.gather(a.commit(batch_a), b.commit(batch_b))
        got_a += batch_a
        got_b += batch_b
    return got_a, got_b


def partitions(consumer: KafkaConsumer) -> set[int]:
    return {tp.partition for tp in consumer._running.assignment()}


async def test_two_members_share_the_partitions_and_see_each_record_once(bus):
    topic, group = await new_topic(bus, 4), unique("group")
    a, b = await start_pair(bus, group, topic)
    try:
        owned_a, owned_b = partitions(a), partitions(b)
        assert owned_a | owned_b == {0, 1, 2, 3}
        events = [event(f"customer-{k}") for k in range(40)]
        await publish(bus, topic, events)

        got_a, got_b = await poll_both(a, b, len(events), commit=True)
    finally:
        await asyncio.gather(a.close(), b.close())

    assert sorted(ids(got_a) + ids(got_b)) == sorted(e.id for e in events)  # each exactly once
    assert {r.partition for r in got_a} <= owned_a and {r.partition for r in got_b} <= owned_b


async def test_when_a_member_leaves_the_other_takes_over_what_it_did_not_commit(bus):
    topic, group = await new_topic(bus, 4), unique("group")
    a, b = await start_pair(bus, group, topic)
    try:
        await publish(bus, topic, [event(f"early-{k}") for k in range(20)])
        await poll_both(a, b, 20, commit=True)
        events = [event(f"customer-{k}") for k in range(20)]
        await publish(bus, topic, events)
        got_a, got_b = await poll_both(a, b, len(events), commit=False)
        await a.commit(got_a)
        assert got_b, "b got no partition with records"

        await b.close()  # leaves without committing its share
        uncommitted = set(ids(got_b))
        taken_over = await poll_until(a, lambda records: uncommitted <= set(ids(records)))
        assert partitions(a) == {0, 1, 2, 3}
    finally:
        await asyncio.gather(a.close(), b.close())

    # From b's partitions exactly what b had not committed; nothing a committed.
    assert set(ids(taken_over)) == uncommitted


async def test_records_of_partitions_lost_in_a_rebalance_go_to_their_new_owner(bus, caplog):
    topic, group = await new_topic(bus, 4), unique("group")
    await publish(bus, topic, [event(f"customer-{k}") for k in range(20)])
    async with member(bus, group, topic) as a:
        polled = await poll_until(a, at_least(20))
        async with member(bus, group, topic) as b:  # joins while a holds everything
            await wait_for_split(a, b)
            await a.commit(polled)  # too late for b's partitions: no error, nothing lost
            lost = {r.envelope.id for r in polled if r.partition in partitions(b)}
            redelivered = await poll_until(b, lambda records: lost <= set(ids(records)))

    assert set(ids(redelivered)) == lost
    assert "not committing revoked partitions" in caplog.text


async def test_undecodable_bytes_come_back_as_a_record_without_envelope(bus):
    topic = await new_topic(bus, 1)
    good = event("c")
    await bus.publish([
        RawMessage(topic, key=b"k", value=b"\xff not json", headers=[("x-error", b"boom")]),
        RawMessage(topic, key=None, value=b"{}", headers=[("ce_id", b"1"), ("ce_type", b"x")]),
        OutgoingMessage(topic, good),
    ])

    async with member(bus, unique("group"), topic) as consumer:
        no_headers, invalid, decoded = await poll_until(consumer, at_least(3))

    assert no_headers.envelope is None and "ce_id" in no_headers.decode_error
    assert (no_headers.key, no_headers.value) == (b"k", b"\xff not json")
    assert header(no_headers.headers, "x-error") == "boom"
    assert invalid.envelope is None and invalid.decode_error
    assert decoded.envelope == good  # the consumer goes on after bad records


async def test_ensure_topics_creates_missing_topics_with_their_partition_counts(bus, kafka_settings):
    five, two = unique("five"), unique("two")
    await bus.ensure_topics({five: 5, two: 2})
    await bus.ensure_topics({five: 5, two: 2})  # already there: no error

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_settings.bootstrap_servers)
    await admin.start()
    try:
        described = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics([five, two])}
    finally:
        await admin.close()
    assert described == {five: 5, two: 2}
    async with member(bus, unique("group"), five) as consumer:
        assert consumer._running.partitions_for_topic(five) == {0, 1, 2, 3, 4}


async def test_ensure_topics_creates_nothing_when_not_allowed(kafka_settings):
    bus = KafkaBus(kafka_settings.model_copy(update={"create_topics": False}))
    await bus.start()
    topic = unique("declared")
    try:
        await bus.ensure_topics({topic: 3})
    finally:
        await bus.close()

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_settings.bootstrap_servers)
    await admin.start()
    try:
        assert topic not in await admin.list_topics()
    finally:
        await admin.close()


async def test_latest_sees_only_records_published_after_joining(bus):
    topic = await new_topic(bus, 1)
    # One publish per record: Tansu answers "latest" with the base offset of the
    # last record batch + 1, so a multi-record last batch would look unread.
    before = [event("c", n) for n in range(3)]
    for e in before:
        await publish(bus, topic, [e])

    async with member(bus, unique("group"), topic, start_from="latest") as consumer:
        after = [event("c", n) for n in range(3, 6)]
        await publish(bus, topic, after)
        records = await poll_until(consumer, at_least(len(after)))

    assert ids(records) == [e.id for e in after]


async def test_ping_fails_when_the_broker_is_gone(kafka_settings):
    broker = start_broker()
    bus = KafkaBus(kafka_settings.model_copy(update={"bootstrap_servers": broker.bootstrap}))
    await bus.start()
    try:
        await bus.ping()
        stop_broker(broker)
        with pytest.raises(Exception):
            await bus.ping()
    finally:
        stop_broker(broker)
        await bus.close()
