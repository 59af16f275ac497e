"""SQLite writers of one process take turns through a lock handed over at once (db.py):
a short write waits only as long as the long one holds the turn, and every way a
transaction ends gives the turn back."""

from __future__ import annotations

import threading
import time

from sqlalchemy import text

from socialzone_common import db


def engine_with_table(tmp_path, name="svc"):
    engine = db.create_db_engine(f"sqlite:///{tmp_path / f'{name}.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    return engine


def test_a_short_write_is_not_starved_by_back_to_back_long_transactions(tmp_path):
    """A consumer commits batch after batch; the relay's short "mark published" must get
    in between two of them. Polling in SQLite's busy handler it kept missing the moment
    (measured: up to 1.1 s behind 0.1 s transactions); taking turns it waits for one."""
    sessions = db.session_factory(engine_with_table(tmp_path))
    stop = threading.Event()

    def consumer():
        while not stop.is_set():
            with sessions() as session:
                session.execute(text("INSERT INTO t VALUES (1)"))  # takes the turn
                time.sleep(0.04)  # the rest of the batch's work, holding it
                session.commit()

    thread = threading.Thread(target=consumer)
    thread.start()
    waits = []
    try:
        for _ in range(15):
            started = time.monotonic()
            with sessions() as session:
                session.execute(text("UPDATE t SET x = 2 WHERE rowid = 1"))
                session.commit()
            waits.append(time.monotonic() - started)
            time.sleep(0.01)
    finally:
        stop.set()
        thread.join()
    assert max(waits) < 0.25, [round(w, 3) for w in waits]


def test_rollback_close_and_a_failed_statement_each_give_the_turn_back(tmp_path):
    engine = engine_with_table(tmp_path)
    sessions = db.session_factory(engine)
    with sessions() as session:
        session.execute(text("INSERT INTO t VALUES (1)"))
        session.rollback()
    with sessions() as session:
        session.execute(text("INSERT INTO t VALUES (2)"))  # closed without commit
    try:
        with sessions() as session:
            session.execute(text("INSERT INTO t VALUES (3)"))
            session.execute(text("INSERT INTO no_such_table VALUES (4)"))
    except Exception:
        pass

    done = threading.Event()

    def other_thread_writes():
        with sessions() as session:
            session.execute(text("INSERT INTO t VALUES (5)"))
            session.commit()
        done.set()

    threading.Thread(target=other_thread_writes).start()
    assert done.wait(5), "a turn was never given back"
    with sessions() as session:
        assert [r[0] for r in session.execute(text("SELECT x FROM t"))] == [5]


def test_each_database_has_its_own_turn(tmp_path):
    first = db.session_factory(engine_with_table(tmp_path, "first"))
    second = db.session_factory(engine_with_table(tmp_path, "second"))
    with first() as holding:
        holding.execute(text("INSERT INTO t VALUES (1)"))
        done = threading.Event()

        def write_the_other_database():
            with second() as session:
                session.execute(text("INSERT INTO t VALUES (1)"))
                session.commit()
            done.set()

        threading.Thread(target=write_the_other_database).start()
        assert done.wait(5)
        holding.commit()


def test_a_writer_that_gives_the_turn_back_and_asks_again_at_once_does_not_keep_it():
    """threading.Lock gives no order: a thread that releases it and asks again at once
    usually wins again, so one writer in a loop (the ingest API's request threads) kept
    another (ingest's consumer) waiting (measured with threading.Lock here: 1.75 s for a
    turn behind a loop of 2 ms transactions; taking turns in order: under 1 ms)."""
    lock = db.FairLock()
    stop = threading.Event()

    def greedy() -> None:
        while not stop.is_set():
            lock.acquire()
            time.sleep(0.002)  # a transaction's work, holding the turn
            lock.release()

    thread = threading.Thread(target=greedy)
    thread.start()
    waits = []
    try:
        time.sleep(0.05)
        for _ in range(10):
            started = time.monotonic()
            assert lock.acquire(timeout=5)
            waits.append(time.monotonic() - started)
            lock.release()
            time.sleep(0.01)
    finally:
        stop.set()
        thread.join()
    assert max(waits) < 0.1, [round(w, 4) for w in waits]


def test_a_writer_that_stops_waiting_leaves_the_turn_to_the_others():
    lock = db.FairLock()
    assert lock.acquire()
    assert lock.acquire(timeout=0.05) is False
    got = []
    waiter = threading.Thread(target=lambda: got.append(lock.acquire(timeout=10)))
    waiter.start()
    time.sleep(0.05)
    lock.release()
    waiter.join()
    assert got == [True]
    lock.release()
    assert lock.acquire(timeout=0.05)  # free again
    lock.release()


def test_the_waits_and_holds_of_a_databases_writer_turn_are_counted_for_metrics(tmp_path):
    """socialzone_sqlite_writer_{wait,held}_seconds_total, by database file: a writer that holds
    the turn 0.3 s adds that to "held", and the writer behind it about as much to "wait"."""
    from prometheus_client import REGISTRY

    def sample(kind: str) -> float:
        return REGISTRY.get_sample_value(f"socialzone_sqlite_writer_{kind}_seconds_total",
                                         {"database": "metered.db"}) or 0.0

    sessions = db.session_factory(engine_with_table(tmp_path, "metered"))
    held_before, waited_before = sample("held"), sample("wait")
    with sessions() as holding:
        holding.execute(text("INSERT INTO t VALUES (1)"))
        behind = threading.Thread(target=lambda: _write_one(sessions))
        behind.start()
        time.sleep(0.3)
        holding.commit()
    behind.join(5)
    assert 0.3 <= sample("held") - held_before < 5
    assert 0.2 <= sample("wait") - waited_before < 5


def _write_one(sessions) -> None:
    with sessions() as session:
        session.execute(text("INSERT INTO t VALUES (2)"))
        session.commit()


def test_a_transaction_that_begins_writing_keeps_what_it_read_until_it_ends(tmp_path):
    """Without ``begin_writing`` a read-modify-write loses a change another writer commits
    between its read and its write (sqlite3 begins the transaction only at the first
    write); with it, the other writer waits for the turn and its change lands after."""
    engine = engine_with_table(tmp_path)
    sessions = db.session_factory(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (0)"))

    def add_one_meanwhile() -> threading.Thread:
        def other():
            with sessions() as session:
                session.execute(text("UPDATE t SET x = x + 1"))
                session.commit()
        thread = threading.Thread(target=other)
        thread.start()
        return thread

    def read_then_add_ten(isolated: bool) -> None:
        with sessions() as session:
            if isolated:
                db.begin_writing(session)
            seen = session.execute(text("SELECT x FROM t")).scalar()
            other = add_one_meanwhile()
            other.join(timeout=0.3)  # commits at once unless it has to wait for the turn
            session.execute(text("UPDATE t SET x = :x"), {"x": seen + 10})
            session.commit()
            other.join()

    read_then_add_ten(isolated=False)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT x FROM t")).scalar() == 10  # the other's +1 was overwritten
    read_then_add_ten(isolated=True)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT x FROM t")).scalar() == 21  # 10 + 10, then the other's + 1

    with sessions() as session:  # begun by a write already: nothing more to take; rollback gives it back
        session.execute(text("INSERT INTO t VALUES (5)"))
        db.begin_writing(session)
        session.rollback()
    _write_one(sessions)  # the turn is free again


async def test_batch_handlers_that_read_then_write_lose_no_concurrent_change_on_sqlite(tmp_path):
    """Two consumer groups of one service add to the same counter, each batch reading it
    first, as the services' batch handlers read before they write: every event counts."""
    import asyncio
    import uuid

    from socialzone_common.bus import OutgoingMessage
    from socialzone_common.bus.local import LocalBus
    from socialzone_common.envelope import Envelope, now_utc
    from socialzone_common.settings import ConsumerSettings, LocalBusSettings
    from socialzone_common.worker import ConsumerSpec, ConsumerWorker

    engine = db.create_db_engine(f"sqlite:///{tmp_path / 'svc.db'}")
    db.run_migrations(engine, None)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE score (id INTEGER PRIMARY KEY, points INTEGER)"))
        conn.execute(text("INSERT INTO score VALUES (1, 0)"))
    bus = LocalBus(LocalBusSettings(), tmp_path / "bus.db")
    await bus.start()
    await bus.ensure_topics({"t.counted": 2, "t.counted.dlq": 2})
    events = 150
    await bus.publish([OutgoingMessage("t.counted", Envelope(
        id=str(uuid.uuid4()), source="test", type="test.thing.counted", subject=f"c{i % 5}", time=now_utc(),
        partitionkey=f"c{i % 5}", data={})) for i in range(events)])

    def add(session, count: int) -> None:
        points = session.execute(text("SELECT points FROM score WHERE id = 1")).scalar()
        time.sleep(0.002)  # the batch's own work between its read and its write
        session.execute(text("UPDATE score SET points = :p WHERE id = 1"), {"p": points + count})

    workers = [ConsumerWorker(bus=bus, sessions=db.session_factory(engine), settings=ConsumerSettings(batch_size=5),
                              spec=ConsumerSpec(group=group, topics=["t.counted"], handler=lambda s, e: add(s, 1),
                                                batch_handler=lambda s, batch: add(s, len(batch))))
               for group in ("group-a", "group-b")]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(w.run(stop)) for w in workers]
    deadline = time.monotonic() + 60
    while sum(w.state.handled for w in workers) < 2 * events and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.gather(*tasks)
    await bus.close()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM inbox")).scalar() == 2 * events
        assert conn.execute(text("SELECT points FROM score")).scalar() == 2 * events
    engine.dispose()


async def _counted_events(bus, events: int) -> None:
    import uuid

    from socialzone_common.bus import OutgoingMessage
    from socialzone_common.envelope import Envelope, now_utc

    await bus.ensure_topics({"t.counted": 2, "t.counted.dlq": 2})
    await bus.publish([OutgoingMessage("t.counted", Envelope(
        id=str(uuid.uuid4()), source="test", type="test.thing.counted", subject=f"c{i % 5}", time=now_utc(),
        partitionkey=f"c{i % 5}", data={"n": i})) for i in range(events)])


async def _run_until(workers, handled: int) -> None:
    import asyncio

    stop = asyncio.Event()
    tasks = [asyncio.create_task(w.run(stop)) for w in workers]
    deadline = time.monotonic() + 60
    while sum(w.state.handled + w.state.dead_lettered for w in workers) < handled and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.gather(*tasks)


async def test_a_batch_is_prepared_outside_the_writer_turn_and_the_handler_gets_what_was_prepared(tmp_path):
    """``ConsumerSpec.batch_prepare`` runs before the batch's transaction takes the turn: another
    writer of the database writes meanwhile (with the turn held it would wait for the batch)."""
    from socialzone_common.bus.local import LocalBus
    from socialzone_common.settings import ConsumerSettings, LocalBusSettings
    from socialzone_common.worker import ConsumerSpec, ConsumerWorker

    engine = engine_with_table(tmp_path)
    db.run_migrations(engine, None)
    sessions = db.session_factory(engine)
    bus = LocalBus(LocalBusSettings(), tmp_path / "bus.db")
    await bus.start()
    await _counted_events(bus, 40)
    other_writer_waited: list[bool] = []
    handled: list[int] = []

    def prepare(session, envelopes):
        other = threading.Thread(target=_write_one, args=(sessions,))
        other.start()
        other.join(timeout=2)
        other_writer_waited.append(other.is_alive())
        other.join()
        return {e.id: e.data["n"] for e in envelopes}

    def handle(session, envelopes, prepared):
        handled.extend(prepared[e.id] for e in envelopes)

    worker = ConsumerWorker(bus=bus, sessions=sessions, settings=ConsumerSettings(batch_size=10),
                            spec=ConsumerSpec(group="prepared", topics=["t.counted"], handler=lambda s, e: None,
                                              batch_handler=handle, batch_prepare=prepare))
    await _run_until([worker], 40)
    await bus.close()
    assert sorted(handled) == list(range(40))
    assert other_writer_waited and not any(other_writer_waited)
    engine.dispose()


async def test_a_batch_whose_preparation_fails_is_handled_one_event_at_a_time(tmp_path):
    from socialzone_common.bus.local import LocalBus
    from socialzone_common.settings import ConsumerSettings, LocalBusSettings
    from socialzone_common.worker import ConsumerSpec, ConsumerWorker

    engine = engine_with_table(tmp_path)
    db.run_migrations(engine, None)
    bus = LocalBus(LocalBusSettings(), tmp_path / "bus.db")
    await bus.start()
    await _counted_events(bus, 20)
    one_by_one: list[int] = []

    def prepare(session, envelopes):
        raise ValueError("cannot prepare")

    worker = ConsumerWorker(bus=bus, sessions=db.session_factory(engine), settings=ConsumerSettings(batch_size=10),
                            spec=ConsumerSpec(group="unprepared", topics=["t.counted"],
                                              handler=lambda s, e: one_by_one.append(e.data["n"]),
                                              batch_handler=lambda s, envelopes, prepared: None, batch_prepare=prepare))
    await _run_until([worker], 20)
    await bus.close()
    assert sorted(one_by_one) == list(range(20))
    assert worker.state.dead_lettered == 0
    engine.dispose()


_HOLD_THE_TURN = """
import sys, time
from sqlalchemy import text
from socialzone_common import db
sessions = db.session_factory(db.create_db_engine(sys.argv[1]))
with sessions() as session:
    session.execute(text("INSERT INTO t VALUES (7)"))  # takes the turn, and holds it
    print("holding", flush=True)
    time.sleep(600)
"""


def test_writers_in_two_processes_take_turns_and_a_killed_holder_gives_the_turn_back(tmp_path, monkeypatch):
    """The turn is shared with other processes (the all-in-one's consumer child, two consumer
    processes of a group) through a lock on ``<file>.writer``, which the kernel drops with
    the process that held it."""
    import subprocess
    import sys

    engine = engine_with_table(tmp_path)
    sessions = db.session_factory(engine)
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_THE_TURN, str(engine.url)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        monkeypatch.setattr(db, "_BUSY_TIMEOUT_S", 0.3)
        try:
            _write_one(sessions)
            raise AssertionError("wrote while another process held the turn")
        except Exception as exc:  # sqlalchemy wraps sqlite3's error
            assert "locked by another process" in str(exc)
        monkeypatch.setattr(db, "_BUSY_TIMEOUT_S", 30)
        behind = threading.Thread(target=_write_one, args=(sessions,))
        behind.start()  # waits for the other process (and this process's turn is free for it)
        behind.join(timeout=0.5)
        assert behind.is_alive()
    finally:
        holder.kill()
        holder.wait()
    behind.join(timeout=10)
    assert not behind.is_alive()
    with sessions() as session:  # the killed holder's insert is gone, the waiting one landed
        assert [r[0] for r in session.execute(text("SELECT x FROM t"))] == [2]
    engine.dispose()


_HOG_THE_TURN = """
import sys, time
from pathlib import Path
from socialzone_common import db
turn, stop = db.ProcessTurn(sys.argv[1]), Path(sys.argv[2])
print("hogging", flush=True)
while not stop.exists():
    assert turn.acquire(time.monotonic() + 30)
    time.sleep(0.03)  # a batch's transaction
    turn.release()  # and at once the next one asks again
"""


def test_a_process_that_asks_for_the_turn_again_at_once_does_not_keep_it_from_another_process(tmp_path):
    """A consumer in another process commits batch after batch: another process still gets
    the turn after about one of its batches. It waits holding the queue, so the consumer
    cannot take the turn back before the waiter's next look (without the queue, this waiter
    saw it free in none of 2 s of polls)."""
    import subprocess
    import sys

    path = str(tmp_path / "svc.db")
    stop = tmp_path / "stop"
    hog = subprocess.Popen([sys.executable, "-c", _HOG_THE_TURN, path, str(stop)], stdout=subprocess.PIPE, text=True)
    turn = db.ProcessTurn(path)
    waits = []
    try:
        assert hog.stdout.readline().strip() == "hogging"
        time.sleep(0.2)
        for _ in range(10):
            started = time.monotonic()
            assert turn.acquire(started + 2.0), f"no turn within 2 s after {len(waits)} turns"
            waits.append(time.monotonic() - started)
            turn.release()
            time.sleep(0.01)
    finally:
        stop.touch()
        hog.wait(timeout=30)
    assert max(waits) < 0.5, [round(w, 3) for w in waits]
