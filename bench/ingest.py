"""Ingest throughput: interactions/s through ``POST /ingest/v1/interactions`` (JSON batches,
enrichment, de-duplication, rows + events into the outbox), side by side with a bare FastAPI
endpoint that only parses the same JSON. Both servers run under uvicorn in their own process
on a loopback port; the load comes from httpx in this process. Target: >= 10,000/s.

``ingest_without_enrichment_per_s`` runs the same service with an enricher that derives
nothing in place of the enrichment models (and no enrichment processes), to show where the
time goes. ``*_server_cpu_us_per_item`` is the server's CPU time (its process and the
enrichment workers) per item, which other load on the machine moves far less than items/s.
The texts are composed from parts and slots (``text()``), so practically every one differs. The outbox relay is off during the measurement, so the figure is the write path (what a
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

# Texts are composed from parts and slots (the item number, amounts, times, places, people's
# handles, hashtags, links), so that practically every text in a run is different, as real
# traffic is: nothing can be answered from a cache of earlier texts.
OPENINGS = ["@acme", "Hey @acme_support", "@AcmeHelp", "So", "Honestly", "Update:", "@globex vs @acme:",
            "Day {d} and", "@skyway", "Dear @acmebank,", "PSA:", "lol", "Quick one @acme_support -", "",
            "@{user} @acme", "Ugh.", "Wow,", "Okay so", "@acmeeats", "Not gonna lie,"]
BODIES = ["my order #{n} never arrived, {ordinal} time this month",
          "where can I buy the RoadRunner {model} in {city}?",
          "great job on the new app v{major}.{minor}, love it",
          "{hours} hours on hold, great job",
          "thinking of switching to Globex after {months} months with you",
          "cancelling my subscription, done with this. Account {n}",
          "you should all try the rocket skates, told my friends in {city}",
          "the anvil arrived dented again, order {n}",
          "is the store in {city} open on Sunday?",
          "best customer service ever! {agent} sorted it in {minutes} minutes",
          "flight {flight} delayed {hours} hours and nobody at the gate knows anything",
          "charged twice for order {n} (${amount}), still no refund after {days} days",
          "thanks {agent}, the replacement arrived a day early",
          "the app keeps crashing when I open my statement, version {major}.{minor}",
          "does anyone know if the RoadRunner {model} works with the old charger?",
          "my parcel {n} says delivered but it is not here, {city}",
          "wifi has been down since {hours}am in {city}, any update?",
          "honestly the new menu is amazing, the {dish} was perfect",
          "how much is the upgrade to the premium plan? I pay ${amount} now",
          "{minutes} minutes in the queue and the chat just closed on me",
          "use my code ACME{n} for {pct}% off, thank me later",
          "price went up ${amount} again, not renewing in {month}",
          "just got the RoadRunner {model} and it is fast, {pct}% better than my old one",
          "third outage this week in {city}, what is going on?",
          "can someone DM me about ticket {n}? nobody replies to email",
          "rider left my food at the wrong door, {street} St, cold when I found it",
          "love that you plant a tree per order, {n} trees so far",
          "is it worth upgrading from the {model} to the {model2}?",
          "Globex gave me {pct}% off to switch, tempted tbh",
          "my card {last4} was declined at {shop} but the money left my account"]
TAILS = ["", "", " #acme", " https://pics.example/p/{n}", " 😡", " 🙏", " #customerservice #help", " #fail",
         " #{city_tag}", " https://acme.example/orders/{n}?ref=tw", " 🙄🙄", " !!!", " (ref {n})", " #acme{n}",
         " cc @{user2}", " 👍", " 😂", " #RoadRunner{model}", " via @{user2}", " smh"]
CITIES = ["Lyon", "Leeds", "Austin", "Porto", "Osaka", "Denver", "Kraków", "Ghent", "Boise", "Tucson", "Cork",
          "Perth", "Graz", "Malmö", "Quito", "Durban"]
AGENTS = ["Sam", "Priya", "Jo", "Marco", "Aiko", "Dev", "Lena", "Tom", "Rosa", "Kwame"]
DISHES = ["ramen", "burger", "pad thai", "falafel wrap", "veggie bowl", "pizza", "curry", "salad"]
SHOPS = ["Tesco", "the airport", "a gas station", "Walmart", "the pharmacy", "Lidl"]
MONTHS = ["January", "March", "June", "September", "December"]


def text(n: int, rng: random.Random) -> str:
    city = rng.choice(CITIES)
    slots = {
        "n": n, "d": rng.randrange(2, 30), "ordinal": rng.choice(["second", "third", "fourth", "5th"]),
        "model": rng.choice([3000, 3100, 4000, 2500]), "model2": rng.choice([5000, 4100, 3500]), "city": city,
        "city_tag": city.lower().replace("ó", "o").replace("ö", "o"), "major": rng.randrange(1, 9),
        "minor": rng.randrange(0, 20), "hours": rng.randrange(2, 12), "months": rng.randrange(2, 60),
        "agent": rng.choice(AGENTS), "minutes": rng.randrange(3, 95), "flight": f"AC{rng.randrange(100, 999)}",
        "amount": f"{rng.randrange(5, 400)}.{rng.randrange(0, 99):02d}", "days": rng.randrange(2, 40),
        "dish": rng.choice(DISHES), "pct": rng.choice([5, 10, 15, 20, 25, 30]), "month": rng.choice(MONTHS),
        "street": f"{rng.randrange(1, 300)} {rng.choice(['Oak', 'Main', 'High', 'Elm', 'Mill'])}",
        "last4": f"{rng.randrange(10_000):04d}", "shop": rng.choice(SHOPS),
        "user": f"user{rng.randrange(100_000)}", "user2": f"{rng.choice(['jo', 'mo', 'ann', 'raj', 'li'])}{rng.randrange(999)}",
    }
    parts = [rng.choice(OPENINGS), rng.choice(BODIES)]
    body = " ".join(p for p in parts if p) + rng.choice(TAILS)
    if rng.random() < 0.3:  # a second sentence now and then
        body += " " + rng.choice(BODIES).capitalize() + rng.choice(TAILS)
    return body.format(**slots)


def items(start: int, count: int, rng: random.Random) -> list[dict]:
    out = []
    for n in range(start, start + count):
        author = rng.randrange(50_000)
        out.append({
            "source": "x", "kind": "post", "external_id": str(1_800_000_000_000_000_000 + n),
            "occurred_at": "2026-11-20T09:30:00Z", "url": f"https://x.com/u{author}/status/{n}",
            "author": {"identifiers": [{"type": "x", "value": str(author)}, {"type": "x_handle", "value": f"u{author}"}],
                       "display_name": f"User {author}", "followers": author % 5000},
            "text": text(n, rng), "language": None,
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
    if kind == "ingest-without-enrichment":
        # the do-nothing enricher replaces the models in this process only: worker processes
        # (spawned) would load the real ones and enrich after all
        env["SOCIALZONE_INGEST_ENRICHMENT_PROCESSES"] = "0"
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


def process_tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its live descendants (Linux
    /proc; 0.0 elsewhere): the server's own cost, whatever else runs on the machine."""
    total, todo = 0.0, [pid]
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{current}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, ValueError, IndexError):
            continue
    return total


async def load(url: str, *, seconds: float, check, server_pid: int | None = None) -> tuple[float, int, float]:
    """Items/s over ``seconds`` with CONCURRENCY batches in flight (after one warm-up batch),
    the items sent, and the server's CPU seconds (with its worker processes) meanwhile."""
    rng = random.Random(7)
    bodies = [orjson.dumps(items(i * BATCH, BATCH, rng)) for i in range(400)]
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    done = 0
    next_body = 1
    async with httpx.AsyncClient(timeout=120.0, limits=httpx.Limits(max_connections=CONCURRENCY)) as client:
        warm = await client.post(url, content=bodies[0], headers=headers)
        check(warm)
        cpu_started = process_tree_cpu_s(server_pid) if server_pid else 0.0
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
        cpu = process_tree_cpu_s(server_pid) - cpu_started if server_pid else 0.0
    return done / elapsed, done, cpu


def measure(kind: str, path: str, check) -> tuple[float, int, float]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix=f"bench-ingest-{kind}-") as data_dir:
        process = start_server(kind, port, Path(data_dir))
        try:
            wait_ready(f"http://127.0.0.1:{port}/healthz", process)
            return asyncio.run(load(f"http://127.0.0.1:{port}{path}", seconds=SECONDS, check=check,
                                    server_pid=process.pid))
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
    ingest_per_s, ingest_n, ingest_cpu = measure("ingest", "/ingest/v1/interactions", _ingest_ok)
    bare_per_s, bare_n, bare_cpu = measure("bare", "/parse", _bare_ok)
    without_per_s, without_n, without_cpu = measure("ingest-without-enrichment", "/ingest/v1/interactions",
                                                    _ingest_ok)
    figures: dict = {
        "ingest_per_s": round(ingest_per_s, 1),
        "bare_parse_per_s": round(bare_per_s, 1),
        "ingest_vs_bare": round(ingest_per_s / bare_per_s, 4),
        "ingest_without_enrichment_per_s": round(without_per_s, 1),
        "ingest_server_cpu_us_per_item": round(ingest_cpu / ingest_n * 1e6, 1),
        "bare_server_cpu_us_per_item": round(bare_cpu / bare_n * 1e6, 1),
        "ingest_without_enrichment_server_cpu_us_per_item": round(without_cpu / without_n * 1e6, 1),
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
        "ingest_server_cpu_us_per_item": "server CPU (all its processes) per item: steadier than /s on a shared machine",
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
