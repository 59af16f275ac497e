"""Transactional outbox, relay and inbox: no event for a rolled-back change, none lost,
none reordered for a key, and a redelivered event changes nothing."""

from __future__ import annotations

import asyncio
import threading
import uuid

import pytest
from sqlalchemy import text

from socialzone_common.bus.local import LocalBus
from socialzone_common import db
from socialzone_common.db import create_db_engine, run_migrations, session_factory
from socialzone_common.envelope import Envelope, now_utc
from socialzone_common.inbox import handle_once
from socialzone_common.outbox import OutboxMessage, Relay, backlog, enqueue
from socialzone_common.settings import LocalBusSettings
from sqlmodel import select

TOPIC = "outbox.test"


def envelope(seq: int, key: str = "customer-1") -> Envelope:
    return Envelope(id=str(uuid.uuid4()), source="outbox-test", type="test.thing.happened", subject=key,
                    time=now_utc(), partitionkey=key, data={"seq": seq})


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sessions(request, tmp_path):
    if request.param == "sqlite":
        engine = create_db_engine(f"sqlite:///{tmp_path / 'svc.db'}")
    else:
        pg = request.getfixturevalue("pg_settings")
        engine = create_db_engine(pg.database_url_for("outbox"), schema=pg.database_schema_for("outbox"))
    run_migrations(engine, None)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE effects (seq INTEGER NOT NULL)"))
    yield session_factory(engine)
    engine.dispose()


@pytest.fixture
async def bus(tmp_path):
    bus = LocalBus(LocalBusSettings(), tmp_path / "bus.db")
    await bus.start()
    yield bus
    await bus.close()


async def published(bus, topic=TOPIC) -> list[Envelope]:
    consumer = bus.consumer(group=f"reader-{uuid.uuid4().hex[:6]}", topics=[topic])
    await consumer.start()
    records = []
    while batch := await consumer.poll(timeout=0.2):
        records.extend(batch)
    await consumer.close()
    return [r.envelope for r in records]


async def test_a_rolled_back_change_publishes_nothing(sessions, bus):
    with sessions() as session:
        session.execute(text("INSERT INTO effects VALUES (1)"))
        enqueue(session, envelope(1), topic=TOPIC)
        session.rollback()
    relay = Relay(service="t", sessions=sessions, bus=bus)
    assert await relay.publish_pending() == 0
    assert await published(bus) == []


async def test_the_relay_publishes_committed_events_in_order_and_marks_them(sessions, bus):
    for seq in range(5):
        with sessions() as session:
            enqueue(session, envelope(seq), topic=TOPIC)
            session.commit()
    relay = Relay(service="t", sessions=sessions, bus=bus, batch_size=2)
    assert [await relay.publish_pending() for _ in range(4)] == [2, 2, 1, 0]
    assert [e.data["seq"] for e in await published(bus)] == [0, 1, 2, 3, 4]
    with sessions() as session:
        assert backlog(session) == 0


class FlakyBus:
    """Fails the first ``failures`` publishes, then behaves."""

    def __init__(self, bus, failures: int) -> None:
        self.bus, self.failures = bus, failures

    async def publish(self, messages):
        if self.failures:
            self.failures -= 1
            raise ConnectionError("broker unavailable")
        await self.bus.publish(messages)


async def test_a_bus_outage_keeps_every_event_and_retries_the_batch_in_the_same_order(sessions, bus):
    with sessions() as session:
        for seq in range(3):
            enqueue(session, envelope(seq), topic=TOPIC)
        session.commit()
    relay = Relay(service="t", sessions=sessions, bus=FlakyBus(bus, failures=2), max_backoff_s=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    for _ in range(100):
        with sessions() as session:
            if backlog(session) == 0:
                break
        await asyncio.sleep(0.05)
    stop.set()
    await task
    assert relay.failures == 2
    assert [e.data["seq"] for e in await published(bus)] == [0, 1, 2]
    with sessions() as session:
        rows = session.exec(select(OutboxMessage)).all()
    assert {row.attempts for row in rows} == {3}


async def test_a_crash_between_publish_and_mark_duplicates_the_event_and_the_inbox_absorbs_it(sessions, bus):
    with sessions() as session:
        enqueue(session, envelope(7), topic=TOPIC)
        session.commit()
    crashing = Relay(service="t", sessions=sessions, bus=bus)

    def crash(*args, **kwargs):
        raise SystemExit("killed after publishing, before marking")

    crashing._mark = crash
    with pytest.raises(SystemExit):
        await crashing.publish_pending()
    assert await Relay(service="t", sessions=sessions, bus=bus).publish_pending() == 1  # after restart

    copies = await published(bus)
    assert len(copies) == 2 and copies[0].id == copies[1].id
    for copy in copies:
        handle_once(sessions, group="consumer", envelope=copy,
                    handler=lambda s, e: s.execute(text("INSERT INTO effects VALUES (:q)"), {"q": e.data["seq"]}))
    with sessions() as session:
        assert session.execute(text("SELECT seq FROM effects")).scalars().all() == [7]


def test_a_redelivered_event_changes_nothing(sessions):
    event = envelope(3)

    def handler(session, e):
        session.execute(text("INSERT INTO effects VALUES (:q)"), {"q": e.data["seq"]})

    assert handle_once(sessions, group="g", envelope=event, handler=handler) is True
    assert handle_once(sessions, group="g", envelope=event, handler=handler) is False
    assert handle_once(sessions, group="other-group", envelope=event, handler=handler) is True
    with sessions() as session:
        assert session.execute(text("SELECT count(*) FROM effects")).scalar() == 2


def test_a_failing_handler_leaves_no_inbox_row_so_the_retry_runs(sessions):
    event = envelope(4)
    calls = []

    def flaky(session, e):
        calls.append(1)
        session.execute(text("INSERT INTO effects VALUES (:q)"), {"q": e.data["seq"]})
        if len(calls) == 1:
            raise RuntimeError("transient")

    with pytest.raises(RuntimeError):
        handle_once(sessions, group="g", envelope=event, handler=flaky)
    assert handle_once(sessions, group="g", envelope=event, handler=flaky) is True
    with sessions() as session:
        assert session.execute(text("SELECT seq FROM effects")).scalars().all() == [4]


@pytest.mark.postgres
def test_the_same_event_handled_concurrently_on_postgres_takes_effect_once(pg_settings):
    engine = create_db_engine(pg_settings.database_url_for("inbox"), schema=pg_settings.database_schema_for("inbox"))
    run_migrations(engine, None)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE effects (seq INTEGER NOT NULL)"))
    sessions = session_factory(engine)
    event = envelope(9)
    barrier = threading.Barrier(4)
    results = []

    def handler(session, e):
        session.execute(text("INSERT INTO effects VALUES (:q)"), {"q": e.data["seq"]})

    def deliver():
        barrier.wait()
        results.append(handle_once(sessions, group="g", envelope=event, handler=handler))

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM effects")).scalar() == 1
    engine.dispose()
    assert sorted(results) == [False, False, False, True]


@pytest.mark.postgres
async def test_the_relay_picks_rows_by_state_so_a_late_commit_with_a_lower_id_is_not_skipped(pg_settings, bus):
    engine = create_db_engine(pg_settings.database_url_for("relay"), schema=pg_settings.database_schema_for("relay"))
    run_migrations(engine, None)
    sessions = session_factory(engine)
    slow, fast = sessions(), sessions()
    enqueue(slow, envelope(1, key="a"), topic=TOPIC)
    slow.flush()  # takes the lower id, commits later
    enqueue(fast, envelope(2, key="b"), topic=TOPIC)
    fast.commit()
    relay = Relay(service="t", sessions=sessions, bus=bus)
    assert await relay.publish_pending() == 1
    slow.commit()
    assert await relay.publish_pending() == 1
    slow.close()
    fast.close()
    engine.dispose()
    assert sorted(e.data["seq"] for e in await published(bus)) == [1, 2]


@pytest.mark.postgres
async def test_only_one_relay_per_postgres_schema_publishes_the_others_stand_by(pg_settings, bus):
    engine = create_db_engine(pg_settings.database_url_for("lead"), schema=pg_settings.database_schema_for("lead"))
    run_migrations(engine, None)
    sessions = session_factory(engine)
    with sessions() as session:
        enqueue(session, envelope(1), topic=TOPIC)
        session.commit()
    first, second = Relay(service="t", sessions=sessions, bus=bus), Relay(service="t", sessions=sessions, bus=bus)
    stop = asyncio.Event()
    leader = await first._lead(stop)
    standby = asyncio.create_task(second._lead(stop))
    await asyncio.sleep(0.5)
    assert leader is not None and not standby.done()
    leader.close()  # the leader dies: its lock goes with its connection
    follower = await asyncio.wait_for(standby, 10)
    assert follower is not None
    follower.close()
    engine.dispose()


def test_a_batch_claims_only_what_its_group_has_not_handled_each_event_once_in_order(sessions):
    """inbox.claim_many over more events than one statement takes, from two sources, with
    events handled before (by this group and by another) and one event twice in the batch."""
    from socialzone_common.inbox import claim_many

    events = [envelope(n) for n in range(700)]
    other_source = [e.model_copy(update={"source": "other-source"}) for e in events[:50]]
    with db.transaction(sessions) as session:
        assert claim_many(session, group="g", envelopes=events[:300:3]) == events[:300:3]
        assert claim_many(session, group="h", envelopes=events[300:400]) == events[300:400]
    batch = events + other_source + [events[5], events[1]]
    with db.transaction(sessions) as session:
        fresh = claim_many(session, group="g", envelopes=batch)
    handled_before = set(e.id for e in events[:300:3])
    expected = [e for e in events if e.id not in handled_before] + other_source
    assert fresh == expected


def test_the_backlog_over_a_limit_is_counted_only_when_the_pending_ids_span_more_than_the_limit(sessions):
    """Back-pressure asks on every ingest request whether more than the limit wait; the answer
    comes from the lowest and highest pending id, and only a wider span is counted."""
    from sqlalchemy import event

    from socialzone_common.outbox import backlog_over

    for seq in range(6):
        with sessions() as session:
            enqueue(session, envelope(seq), topic=TOPIC)
            session.commit()
    statements: list[str] = []
    with sessions() as session:
        event.listen(session.connection(), "before_cursor_execute",
                     lambda conn, cursor, statement, *rest: statements.append(statement.lower()))
        assert backlog_over(session, 6) is None  # ids 1..6: at most 6
        assert not any("count(" in s for s in statements), statements
        assert backlog_over(session, 5) == 6
        assert any("count(" in s for s in statements)
        ids = session.execute(text("SELECT id FROM outbox ORDER BY id")).scalars().all()
        session.execute(text("UPDATE outbox SET published_at = created_at WHERE id IN (:a, :b)"),
                        {"a": ids[2], "b": ids[3]})  # published out of order: a hole in the span
        assert backlog_over(session, 4) is None  # the span is 6 wide, 4 wait
        assert backlog_over(session, 3) == 4
        session.execute(text("UPDATE outbox SET published_at = created_at"))
        assert backlog_over(session, 0) is None  # nothing waits
