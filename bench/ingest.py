"""Ingest throughput: interactions/s through ``POST /ingest/v1/interactions`` (JSON batches,
enrichment, de-duplication, rows + events into the outbox), side by side with a bare FastAPI
endpoint that only parses the same JSON. Both servers run under uvicorn in their own process
on a loopback port; the load comes from httpx in this process. Target: >= 10,000/s.

``ingest_without_enrichment_per_s`` runs the same service with an enricher that derives
nothing in place of the enrichment models, to show where the time goes. The outbox relay is off during the measurement, so the figure is the write path (what a
client waits for); publishing is measured by ``bench bus``.

Also merges the enrichment figures (``enrich_per_s``, ``sentiment_accuracy``,
``intent_f1_<intent>``) from ``socialzone_ingest.enrichment.evaluation.enrichment_figures()``
when the enrichment package provides it.

``BENCH_INGEST_SECONDS`` (default 8) bounds each measurement, ``BENCH_INGEST_BATCH`` (500)
is the items per request, ``BENCH_INGEST_CONCURRENCY`` (4) the requests in flight,
``BENCH_INGEST_PROCESSES`` (2) the service's ``ingest_enrichment_processes``.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.results import report

SECONDS = float(os.environ.get("BENCH_INGEST_SECONDS", "8"))
BATCH = int(os.environ.get("BENCH_INGEST_BATCH", "500"))
CONCURRENCY = int(os.environ.get("BENCH_INGEST_CONCURRENCY", "4"))
PROCESSES = int(os.environ.get("BENCH_INGEST_PROCESSES", "2"))
KEY = "bench-admin-key"
TARGET = 10_000

OPENINGS = ["@acme", "Hey @acme_support", "So", "Honestly", "Update:", "@globex vs @acme:", "Day 3 and"]
BODIES = ["my order never arrived, third time this month", "where can I buy the RoadRunner 3000 in Lyon?",
          "great job on the new app, love it", "3 hours on hold, great job", "thinking of switching to Globex",
          "cancelling my subscription, done with this", "you should all try the rocket skates, told my friends",
          "the anvil arrived dented again #fail", "is the store open on Sunday?", "best customer service ever!"]
TAILS = ["", " #acme", " https://pics.example/p/1", " 😡", " 🙏", " #customerservice #help"]


def items(start: int, count: int, rng: random.Random) -> list[dict]:
    out = []
    for n in range(start, start + count):
        author = rng.randrange(50_000)
        out.append({
            "source": "x", "kind": "post", "external_id": str(1_800_000_000_000_000_000 + n),
            "occurred_at": "2026-11-20T09:30:00Z", "url": f"https://x.com/u{author}/status/{n}",
            "author": {"identifiers": [{"type": "x", "value": str(author)}, {"type": "x_handle", "value": f"u{author}"}],
                       "display_name": f"User {author}", "followers": author % 5000},
            "text": f"{rng.choice(OPENINGS)} {rng.choice(BODIES)}{rng.choice(TAILS)}", "language": None,
            "metrics": {"likes": n % 7, "reposts": n % 3},
        })
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(kind: str, port: int, data_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "SOCIALZONE_DATA_DIR": str(data_dir), "SOCIALZONE_ADMIN_KEY": KEY,
           "SOCIALZONE_RUN_RELAY": "false", "SOCIALZONE_LOG_LEVEL": "WARNING",
           "SOCIALZONE_INGEST_BACKLOG_LIMIT": "100000000", "SOCIALZONE_INGEST_MAX_BATCH_ITEMS": "100000",
           "SOCIALZONE_ENVIRONMENT": "development", "SOCIALZONE_INGEST_ENRICHMENT_PROCESSES": str(PROCESSES)}
    return subprocess.Popen([sys.executable, "-m", "bench.ingest", "serve", kind, str(port)], env=env,
                            cwd=Path(__file__).resolve().parent.parent)


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {timeout:.0f}s")


async def load(url: str, *, seconds: float, check) -> tuple[float, int]:
    """Items/s over ``seconds`` with CONCURRENCY batches in flight (after one warm-up batch)."""
    rng = random.Random(7)
    bodies = [orjson.dumps(items(i * BATCH, BATCH, rng)) for i in range(400)]
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    done = 0
    next_body = 1
    async with httpx.AsyncClient(timeout=120.0, limits=httpx.Limits(max_connections=CONCURRENCY)) as client:
        warm = await client.post(url, content=bodies[0], headers=headers)
        check(warm)
        started = time.perf_counter()
        deadline = started + seconds

        async def worker() -> None:
            nonlocal done, next_body
            while time.perf_counter() < deadline and next_body < len(bodies):
                body = bodies[next_body]
                next_body += 1
                response = await client.post(url, content=body, headers=headers)
                check(response)
                done += BATCH

        await asyncio.gather(*[worker() for _ in range(CONCURRENCY)])
        elapsed = time.perf_counter() - started
    return done / elapsed, done


def measure(kind: str, path: str, check) -> tuple[float, int]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix=f"bench-ingest-{kind}-") as data_dir:
        process = start_server(kind, port, Path(data_dir))
        try:
            wait_ready(f"http://127.0.0.1:{port}/healthz", process)
            return asyncio.run(load(f"http://127.0.0.1:{port}{path}", seconds=SECONDS, check=check))
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def _ingest_ok(response: httpx.Response) -> None:
    if response.status_code != 202 or response.json()["rejected"]:
        raise RuntimeError(f"ingest answered {response.status_code}: {response.text[:300]}")


def _bare_ok(response: httpx.Response) -> None:
    if response.status_code != 200:
        raise RuntimeError(f"bare answered {response.status_code}: {response.text[:300]}")


def enrichment_figures() -> dict:
    try:
        from socialzone_ingest.enrichment.evaluation import enrichment_figures as figures
    except ImportError as exc:
        print(f"enrichment figures not available: {exc}")
        return {}
    return dict(figures())


def main() -> None:
    ingest_per_s, ingest_n = measure("ingest", "/ingest/v1/interactions", _ingest_ok)
    bare_per_s, bare_n = measure("bare", "/parse", _bare_ok)
    without_per_s, _ = measure("ingest-without-enrichment", "/ingest/v1/interactions", _ingest_ok)
    figures: dict = {
        "ingest_per_s": round(ingest_per_s, 1),
        "bare_parse_per_s": round(bare_per_s, 1),
        "ingest_vs_bare": round(ingest_per_s / bare_per_s, 4),
        "ingest_without_enrichment_per_s": round(without_per_s, 1),
        "ingest_items_measured": ingest_n,
        "batch_size": BATCH,
        "concurrency": CONCURRENCY,
        "enrichment_processes": PROCESSES,
    }
    figures.update(enrichment_figures())
    print(f"ingest {ingest_per_s:,.0f}/s vs bare parse {bare_per_s:,.0f}/s: ratio {ingest_per_s / bare_per_s:.3f} "
          f"(target {TARGET:,}/s: {'met' if ingest_per_s >= TARGET else 'NOT met'})")
    report("ingest", figures, notes={
        "ingest_per_s": f"HTTP JSON batches of {BATCH}, enrichment, dedup, SQLite outbox (relay off); target {TARGET:,}",
        "bare_parse_per_s": "the same bodies to a FastAPI endpoint that only parses them (list[dict])",
        "ingest_without_enrichment_per_s": "the same path with an enricher that derives nothing (bottleneck check)",
    })


# --- the two servers (run as subprocesses) -------------------------------------------------------

def serve(kind: str, port: int) -> None:
    import uvicorn

    if kind == "bare":
        from fastapi import Body, FastAPI

        app = FastAPI()

        @app.get("/healthz")
        def healthz() -> dict:
            return {"status": "ok"}

        @app.post("/parse")
        def parse(body: list[dict[str, Any]] = Body()) -> dict:
            return {"parsed": len(body)}
    else:
        if kind == "ingest-without-enrichment":
            # Only to locate the bottleneck: the same service with an enricher that
            # derives nothing, in place of the enrichment models.
            from socialzone_common.events.common import Enrichment
            from socialzone_ingest import enrich

            class _Nothing:
                def enrich(self, text, *, declared_language=None):
                    return Enrichment()

            enrich._build = lambda brands: _Nothing()
        from socialzone_common.settings import load_settings
        from socialzone_common.web import build_host_app
        from socialzone_ingest.service import SERVICE
        from socialzone_ingest.settings import IngestSettings

        settings = load_settings(IngestSettings)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        app = build_host_app([SERVICE], settings=settings, service_settings={"ingest": settings})
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        main()
