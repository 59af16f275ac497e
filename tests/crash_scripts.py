"""Processes that the crash tests kill with SIGKILL. Run as
``python -m tests.crash_scripts <scenario> <args>``; each prints a line per
acknowledged step so the test knows what was promised before the kill."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from pathlib import Path

from socialzone_common.bus import OutgoingMessage
from socialzone_common.bus.local import LocalBus
from socialzone_common.db import create_db_engine, run_migrations, session_factory
from socialzone_common.envelope import Envelope, now_utc
from socialzone_common.outbox import enqueue
from socialzone_common.settings import ConsumerSettings, LocalBusSettings
from socialzone_common.worker import ConsumerSpec, ConsumerWorker

TOPIC = "crash.events"


def envelope(seq: int, key: str = "customer-1") -> Envelope:
    return Envelope(id=str(uuid.uuid4()), source="crash-test", type="test.thing.happened", subject=key,
                    time=now_utc(), partitionkey=key, data={"seq": seq})


async def publish_forever(bus_path: Path) -> None:
    """Publish batches of 10 and print the highest acknowledged seq after each."""
    bus = LocalBus(LocalBusSettings(), bus_path)
    await bus.start()
    seq = 0
    while True:
        await bus.publish([OutgoingMessage(TOPIC, envelope(seq + i, f"k{(seq + i) % 7}")) for i in range(10)])
        seq += 10
        print(f"acked {seq}", flush=True)


def commit_outbox_then_hang(db_path: Path, count: int) -> None:
    """Commit ``count`` outbox rows, say so, and hang before any relay publishes them."""
    engine = create_db_engine(f"sqlite:///{db_path}")
    run_migrations(engine, None)
    sessions = session_factory(engine)
    with sessions() as session:
        for seq in range(count):
            enqueue(session, envelope(seq), topic=TOPIC)
        session.commit()
    print("committed", flush=True)
    time.sleep(3600)


async def consume_slowly(bus_path: Path, db_path: Path) -> None:
    """A consumer whose effect is a row per event (idempotent through the inbox)."""
    from sqlalchemy import text

    engine = create_db_engine(f"sqlite:///{db_path}")
    run_migrations(engine, None)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS effects (seq INTEGER NOT NULL)"))

    def handler(session, event) -> None:
        session.execute(text("INSERT INTO effects VALUES (:seq)"), {"seq": event.data["seq"]})
        print(f"handled {event.data['seq']}", flush=True)
        time.sleep(0.002)

    bus = LocalBus(LocalBusSettings(session_timeout_s=1.0), bus_path)
    await bus.start()
    worker = ConsumerWorker(bus=bus, spec=ConsumerSpec(group="crash-group", topics=[TOPIC], handler=handler),
                            sessions=session_factory(engine), settings=ConsumerSettings(batch_size=50))
    await worker.run(asyncio.Event())


if __name__ == "__main__":
    scenario, *args = sys.argv[1:]
    if scenario == "publish":
        asyncio.run(publish_forever(Path(args[0])))
    elif scenario == "outbox":
        commit_outbox_then_hang(Path(args[0]), int(args[1]))
    elif scenario == "consume":
        asyncio.run(consume_slowly(Path(args[0]), Path(args[1])))
    else:
        raise SystemExit(f"unknown scenario {scenario}")
