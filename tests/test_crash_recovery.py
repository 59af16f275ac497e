"""Nothing acknowledged is ever lost: processes are killed with SIGKILL mid-work and
what they had acknowledged is checked after a restart."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import text

from socialzone_common.bus.local import LocalBus
from socialzone_common.db import create_db_engine, run_migrations, session_factory
from socialzone_common.outbox import Relay
from socialzone_common.settings import LocalBusSettings

from tests.crash_scripts import TOPIC

ROOT = Path(__file__).resolve().parents[1]


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.crash_scripts", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def read_until(process: subprocess.Popen, done, timeout: float = 60.0) -> list[str]:
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"process ended early: {process.stderr.read()[-2000:]}")
        lines.append(line.strip())
        if done(lines):
            return lines
    raise AssertionError(f"timed out; last lines {lines[-5:]}")


def kill9(process: subprocess.Popen) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL


async def read_all(bus_path: Path, group: str) -> list:
    bus = LocalBus(LocalBusSettings(), bus_path)
    await bus.start()
    consumer = bus.consumer(group=group, topics=[TOPIC])
    await consumer.start()
    records = []
    while batch := await consumer.poll(max_records=5000, timeout=0.3):
        records.extend(batch)
    await consumer.close()
    await bus.close()
    return records


async def test_events_acknowledged_by_the_local_bus_survive_kill_9_of_the_publisher(tmp_path):
    bus_path = tmp_path / "bus.db"
    publisher = start("publish", str(bus_path))
    lines = read_until(publisher, lambda lines: len(lines) >= 40)
    kill9(publisher)
    acked = int(lines[-1].split()[1])

    records = await read_all(bus_path, "after-crash")
    seqs = sorted(r.envelope.data["seq"] for r in records)
    assert seqs[:acked] == list(range(acked)), "an acknowledged event is missing"
    per_partition: dict[int, list[int]] = {}
    for r in records:
        per_partition.setdefault(r.partition, []).append(r.offset)
    assert all(offsets == list(range(len(offsets))) for offsets in per_partition.values()), "offset gap"


async def test_outbox_rows_committed_before_a_crash_are_published_exactly_once_after_restart(tmp_path):
    db_path, bus_path = tmp_path / "service.db", tmp_path / "bus.db"
    service = start("outbox", str(db_path), "25")
    read_until(service, lambda lines: lines[-1] == "committed")
    kill9(service)  # committed, never relayed

    engine = create_db_engine(f"sqlite:///{db_path}")
    bus = LocalBus(LocalBusSettings(), bus_path)
    await bus.start()
    relay = Relay(service="crash", sessions=session_factory(engine), bus=bus)
    assert await relay.publish_pending() == 25
    assert await relay.publish_pending() == 0  # marked: a second pass publishes nothing
    await bus.close()
    engine.dispose()

    records = await read_all(bus_path, "after-restart")
    assert [r.envelope.data["seq"] for r in records] == list(range(25))


async def test_a_consumer_killed_mid_batch_resumes_and_every_event_takes_effect_exactly_once(tmp_path):
    bus_path, db_path = tmp_path / "bus.db", tmp_path / "consumer.db"
    bus = LocalBus(LocalBusSettings(), bus_path)
    await bus.start()
    from socialzone_common.bus import OutgoingMessage
    from tests.crash_scripts import envelope

    await bus.publish([OutgoingMessage(TOPIC, envelope(i, f"k{i % 5}")) for i in range(300)])
    await bus.close()

    first = start("consume", str(bus_path), str(db_path))
    read_until(first, lambda lines: len(lines) >= 120)
    kill9(first)  # some handled and committed, some handled but the offset not committed

    second = start("consume", str(bus_path), str(db_path))
    try:
        deadline = time.monotonic() + 60
        engine = create_db_engine(f"sqlite:///{db_path}")
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                if conn.execute(text("SELECT count(DISTINCT seq) FROM effects")).scalar() >= 300:
                    break
            await asyncio.sleep(0.2)
    finally:
        kill9(second)
    with engine.connect() as conn:
        effects = Counter(conn.execute(text("SELECT seq FROM effects")).scalars())
    engine.dispose()
    assert set(effects) == set(range(300)), "an event was lost"
    assert max(effects.values()) == 1, "a redelivered event took effect twice"
