"""Customer care under load: complaints through the ingest API of the all-in-one process
(local bus), through identity's attribution, to care cases.

Offers ``BENCH_CARE_RATE`` (default 1,000) complaint interactions per second for
``BENCH_CARE_SECONDS`` (default 60) to ``POST /ingest/v1/interactions`` of a throw-away
``socialzone run`` (own data folder and port). Every accepted interaction must end as a
case or attach to an open one (one open case per customer and topic: about a third of
the authors write twice). The latency of each is the time from its ingest request to
the moment care's consumer opened (or attached it to) its case, as care recorded it.

Target: p99 <= 1 s. With ``BENCH_CARE_SOURCE=bus`` it skips ingest and identity: every
service runs in the bench's own process (the all-in-one composition without the HTTP
server) and the bench publishes ``identity.interaction.attributed`` on its local bus,
measuring from that publish to the case. ``BENCH_CARE_SERVICES=care`` (bus mode) runs
care alone. Interactions still unhandled when the bench stops waiting (as long again as
the offer took, at least 60 s) count with the time waited: the percentiles are then
lower bounds (``latency_is_lower_bound``).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx

from bench.results import report

TEXTS = [
    "My order arrived broken and support ignores me. Terrible service, I want a refund!",
    "Where is my parcel?? Delivery is two weeks late, this is awful",
    "Your app keeps crashing and nobody helps, worst experience ever",
    "I was charged twice on my invoice, this is unacceptable",
]
BATCHES_PER_SECOND = 10


def schedule(rate: float, total: int):
    """(start, end) of each batch, BATCHES_PER_SECOND batches a second, ``rate`` items a second."""
    n = 0
    while True:
        start, end = round(rate * n / BATCHES_PER_SECOND), min(total, round(rate * (n + 1) / BATCHES_PER_SECOND))
        if start >= total:
            return
        yield start, end
        n += 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_platform(data_dir: Path, port: int, key: str) -> subprocess.Popen:
    env = dict(os.environ, SOCIALZONE_DATA_DIR=str(data_dir), SOCIALZONE_PORT=str(port),
               SOCIALZONE_ADMIN_KEY=key, SOCIALZONE_LOG_LEVEL="WARNING", SOCIALZONE_ENVIRONMENT="development")
    exe = Path(sys.executable).parent / "socialzone"
    return subprocess.Popen([str(exe), "run"], env=env, stdout=(data_dir / "platform.log").open("wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)


async def wait_ready(client: httpx.AsyncClient, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if (await client.get("/readyz")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.3)
    raise SystemExit("the platform did not become ready")


def interaction(i: int, authors: int) -> dict:
    author = i % authors
    return {"source": "x", "kind": "post", "external_id": f"bench-{i}",
            "occurred_at": datetime.now(timezone.utc).isoformat(),
            "author": {"identifiers": [{"type": "x", "value": f"9{author:08d}"}], "display_name": f"User {author}",
                       "followers": (author * 37) % 5000},
            "text": TEXTS[author % len(TEXTS)]}


async def offer_through_ingest(client: httpx.AsyncClient, key: str, rate: int, seconds: float,
                               sent_at: dict[str, float]) -> dict[str, int]:
    total = int(rate * seconds)
    authors = max(1, (total * 2) // 3)
    counts = {"offered": 0, "accepted": 0, "refused": 0}
    headers = {"Authorization": f"Bearer {key}"}

    async def send(start: int, end: int) -> None:
        items = [interaction(i, authors) for i in range(start, end)]
        started = time.time()
        try:
            response = await client.post("/ingest/v1/interactions", json=items, headers=headers, timeout=30)
        except httpx.HTTPError:
            counts["refused"] += len(items)
            return
        if response.status_code != 202:
            counts["refused"] += len(items)
            return
        for result in response.json()["results"]:
            if result["status"] == "accepted":
                sent_at[result["interaction_id"]] = started
                counts["accepted"] += 1
            else:
                counts["refused"] += 1

    tasks = []
    begin = time.monotonic()
    for n, (start, end) in enumerate(schedule(rate, total)):
        delay = begin + n / BATCHES_PER_SECOND - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        counts["offered"] += end - start
        tasks.append(asyncio.create_task(send(start, end)))
    await asyncio.gather(*tasks)
    counts["offer_seconds"] = time.monotonic() - begin
    return counts


async def offer_on_bus(bus, rate: int, seconds: float, sent_at: dict[str, float]) -> dict[str, int]:
    """Fallback: publish identity.interaction.attributed on the host's local bus (no ingest, no identity)."""
    from socialzone_common.bus import OutgoingMessage
    from socialzone_common.events.common import Author, Enrichment, Identifier, Interaction, Sentiment
    from socialzone_common.events.identity import InteractionAttributed

    total = int(rate * seconds)
    authors = max(1, (total * 2) // 3)
    begin = time.monotonic()
    for n, (start, end) in enumerate(schedule(rate, total)):
        delay = begin + n / BATCHES_PER_SECOND - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        now = datetime.now(timezone.utc)
        batch = []
        for i in range(start, end):
            author = i % authors
            payload = InteractionAttributed(customer_id=f"cus-bench-{author}", interaction=Interaction(
                interaction_id=f"bench-{i}", source="x", kind="post", external_id=f"bench-{i}", occurred_at=now,
                recorded_at=now, author=Author(identifiers=(Identifier(type="x", value=f"9{author:08d}"),),
                                               followers=(author * 37) % 5000),
                text=TEXTS[author % len(TEXTS)],
                enrichment=Enrichment(language="en", intents=("complaint",),
                                      sentiment=Sentiment(label="negative", score=-0.8))))
            batch.append(OutgoingMessage("zone.interactions", payload.to_envelope(source="bench")))
        stamp = time.time()
        for message in batch:
            sent_at[message.envelope.data["interaction"]["interaction_id"]] = stamp
        await bus.publish(batch)
    return {"offered": total, "accepted": total, "refused": 0, "offer_seconds": time.monotonic() - begin}


async def run_on_bus(seconds: float, rate: int) -> tuple[Path, dict, dict[str, float]]:
    """Every service in this process (the all-in-one composition, without the HTTP server),
    publishing on its local bus: a publish in another process would only be seen at the
    consumers' next poll, which is not what a deployment does."""
    from socialzone_common.service import load_services
    from socialzone_common.settings import load_settings
    from socialzone_common.web import build_host_app

    data_dir = Path(tempfile.mkdtemp(prefix="bench-care-bus-"))
    settings = load_settings(data_dir=data_dir, log_level="WARNING", environment="development")
    only = [n for n in os.environ.get("BENCH_CARE_SERVICES", "").split(",") if n]
    specs = [spec for name, spec in load_services().items() if not only or name in only]
    host = build_host_app(specs, settings=settings)
    sent_at: dict[str, float] = {}
    async with host.router.lifespan_context(host):
        counts = await offer_on_bus(host.state.bus, rate, seconds, sent_at)
        await wait_handled(data_dir, sent_at, seconds)
    return data_dir, counts, sent_at


async def wait_handled(data_dir: Path, sent_at: dict[str, float], seconds: float) -> dict[str, float]:
    """Wait until care handled every accepted interaction, or give up after as long again as
    the offer took (at least 60 s). Returns what was handled; records when it gave up."""
    wanted = set(sent_at)
    done: dict[str, float] = {}
    deadline = time.monotonic() + max(60.0, seconds)
    while time.monotonic() < deadline:
        done = handled(data_dir / "care.db", wanted)
        if len(done) >= len(wanted):
            break
        await asyncio.sleep(1.0)
    GAVE_UP_AT.append(time.time())
    return done


GAVE_UP_AT: list[float] = []


def handled(care_db: Path, wanted: set[str]) -> dict[str, float]:
    """interaction id -> when care opened a case for it or attached it to one (epoch seconds)."""
    if not care_db.exists():
        return {}
    with sqlite3.connect(f"file:{care_db}?mode=ro", uri=True, timeout=30) as conn:
        rows = conn.execute("SELECT interaction_id, created_at FROM care_case_messages "
                            "WHERE kind = 'customer' AND interaction_id IS NOT NULL").fetchall()
    out = {}
    for interaction_id, created_at in rows:
        if interaction_id in wanted:
            at = datetime.fromisoformat(created_at)
            out[interaction_id] = (at if at.tzinfo else at.replace(tzinfo=timezone.utc)).timestamp()
    return out


def opened_cases(care_db: Path) -> int:
    with sqlite3.connect(f"file:{care_db}?mode=ro", uri=True, timeout=30) as conn:
        return conn.execute("SELECT count(*) FROM care_cases WHERE opened_from = 'interaction'").fetchone()[0]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def run_through_ingest(seconds: float, rate: int) -> tuple[Path, dict, dict[str, float]]:
    data_dir = Path(tempfile.mkdtemp(prefix="bench-care-"))
    port, key = free_port(), secrets.token_urlsafe(16)
    process = start_platform(data_dir, port, key)
    sent_at: dict[str, float] = {}
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}",
                                     limits=httpx.Limits(max_connections=50)) as client:
            await wait_ready(client)
            counts = await offer_through_ingest(client, key, rate, seconds, sent_at)
            await wait_handled(data_dir, sent_at, seconds)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    return data_dir, counts, sent_at


async def run(seconds: float, rate: int, source: str) -> None:
    if source == "bus":
        data_dir, counts, sent_at = await run_on_bus(seconds, rate)
    else:
        data_dir, counts, sent_at = await run_through_ingest(seconds, rate)
    done = handled(data_dir / "care.db", set(sent_at))
    cases = opened_cases(data_dir / "care.db")
    if not os.environ.get("BENCH_KEEP"):
        shutil.rmtree(data_dir, ignore_errors=True)
    # An interaction not handled when the bench stopped waiting counts with the time it had
    # waited by then: the percentiles are then lower bounds (latency_is_lower_bound).
    stopped = GAVE_UP_AT[-1] if GAVE_UP_AT else time.time()
    latencies = [((done[i] if i in done else stopped) - sent_at[i]) * 1000 for i in sent_at]
    figures = {
        "source": "ingest API -> identity -> care" if source != "bus" else "identity.interaction.attributed on the bus",
        "seconds": seconds,
        "rate_offered_per_s": rate,
        "offered": counts["offered"],
        "accepted": counts["accepted"],
        "refused": counts["refused"],
        "offer_seconds": round(counts["offer_seconds"], 2),
        "cases_opened_or_attached": len(done),
        "cases_opened": cases,
        "attached": len(done) - cases,
        "not_handled_in_time": len(sent_at) - len(done),
        "latency_is_lower_bound": "yes" if len(done) < len(sent_at) else "no",
        "handled_per_s": round(len(done) / max(1e-9, (max(done.values()) - min(sent_at.values()))), 1)
        if done else 0.0,
        "open_p50_ms": round(percentile(latencies, 0.50), 1),
        "open_p99_ms": round(percentile(latencies, 0.99), 1),
        "open_max_ms": round(max(latencies), 1) if latencies else float("nan"),
        "open_mean_ms": round(statistics.fmean(latencies), 1) if latencies else float("nan"),
    }
    report("care", figures, notes={"open_p99_ms": "target <= 1000",
                                   "cases_opened_or_attached": "target: every accepted interaction",
                                   "accepted": "by ingest (or published on the bus)",
                                   "not_handled_in_time": "still on the durable bus when the bench stopped"})


def main() -> None:
    seconds = float(os.environ.get("BENCH_CARE_SECONDS", "60"))
    rate = int(os.environ.get("BENCH_CARE_RATE", "1000"))
    asyncio.run(run(seconds, rate, os.environ.get("BENCH_CARE_SOURCE", "ingest")))


if __name__ == "__main__":
    main()
