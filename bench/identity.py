"""Identity: attribution throughput, lookup by identifier, timeline pages and merge visibility.

- ``attribution_per_s``: raw interactions published on the local bus, consumed by the
  identity resolution consumer (batch transactions, see services/identity/fastpath.py)
  until every one is attributed: 70% returning social authors, 20% new authors, 10% CRM
  transactions with e-mail and phone. Target >= 10,000/s. The consumer runs in its own
  process, as `socialzone work identity` runs it; ``attribution_2_processes_per_s`` is the
  same with two members of the consumer group in two processes (the group's partitions
  dealt between them, one SQLite database): each resolves its batch ahead before it takes
  the database's writer turn (``ConsumerSpec.batch_prepare``, ``fastpath.Speculation``),
  while the other writes; ``attribution_2_processes_batches_held_stale`` counts the batches
  whose reads still held under the turn and those resolved again.
- ``lookup_p95_ms``: ``GET /identity/v1/customers?identifier=email:...`` through the ASGI
  app, 100,000 customers. Target <= 5 ms.
- ``timeline_p95_ms``: ``GET .../timeline?limit=50`` (first and cursor pages) with
  1,000,000 timeline entries over 100,000 customers. Target <= 20 ms.
- ``merge_visible_ms``: ``POST /identity/v1/merges`` of two customers with long histories
  until the merged history is in the survivor's timeline. Target <= 1,000 ms.

``BENCH_IDENTITY_N`` (default 30,000 interactions), ``BENCH_IDENTITY_CUSTOMERS`` (100,000)
and ``BENCH_IDENTITY_ENTRIES`` (1,000,000) size it. The Febrl match-quality figures come
from ``socialzone_identity.matching.evaluation.febrl_figures()`` when it is installed.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import statistics
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import orjson

from bench.results import report

START = datetime(2025, 1, 1, tzinfo=timezone.utc)


def _p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[94] if len(samples) >= 20 else max(samples)


def _interactions(n: int) -> list:
    from socialzone_common.events.common import Author, AuthorAttributes, Enrichment, Identifier, Interaction, Sentiment, Transaction
    from socialzone_common.events.ingest import InteractionRecorded

    rnd = random.Random(7)
    returning = max(1, n // 10)
    events = []
    for i in range(n):
        at = START + timedelta(seconds=i)
        roll = rnd.random()
        if roll < 0.7:
            a = rnd.randrange(returning)
            ids = (Identifier(type="x", value=str(10_000 + a)), Identifier(type="x_handle", value=f"fan_{a}"))
            source, kind, tx, name = "x", "post", None, f"Fan {a}"
        elif roll < 0.9:
            ids = (Identifier(type="mastodon", value=f"new{i}@social.example"),)
            source, kind, tx, name = "mastodon", "mention", None, f"New {i}"
        else:
            a = rnd.randrange(returning)
            ids = (Identifier(type="crm:shop", value=f"C{a}"), Identifier(type="email", value=f"fan{a}@mail-{a % 97}.com"))
            source, kind, name = "crm", "transaction", f"Fan {a}"
            tx = Transaction(type="order", amount="19.99", currency="EUR")
        interaction = Interaction(
            interaction_id=f"int_{i}", source=source, kind=kind, occurred_at=at, recorded_at=at,
            author=Author(identifiers=ids, display_name=name, attributes=AuthorAttributes(city="Lisbon")),
            text=None if tx else f"message {i} about our product", transaction=tx,
            enrichment=Enrichment(language="en", sentiment=Sentiment(label="positive", score=0.4)))
        events.append(InteractionRecorded(interaction=interaction).to_envelope(source="socialzone/ingest"))
    return events


RESOLUTION_GROUP = "identity-resolution"


async def _publish_sample(folder: Path, n: int) -> None:
    """A new identity database (migrated) and local bus in ``folder`` with ``n`` interactions waiting."""
    from socialzone_common import db
    from socialzone_common.bus import OutgoingMessage
    from socialzone_common.bus.local import LocalBus
    from socialzone_common.settings import LocalBusSettings
    from socialzone_identity.service import SERVICE
    from socialzone_identity.settings import IdentitySettings

    engine = db.create_db_engine(IdentitySettings(data_dir=folder).database_url_for("identity"))
    db.run_migrations(engine, SERVICE.migrations)
    engine.dispose()
    bus = LocalBus(LocalBusSettings(synchronous="NORMAL"), folder / "bus.db")
    await bus.start()
    await bus.ensure_topics({"zone.interactions.raw": 12, "zone.interactions.raw.dlq": 12})
    events = _interactions(n)
    for i in range(0, n, 2000):
        await bus.publish([OutgoingMessage("zone.interactions.raw", e) for e in events[i:i + 2000]])
    await bus.close()


async def _consume(folder: Path, n: int, go=None, done=None) -> dict[str, int]:
    """One member of the resolution group (what `socialzone work identity` runs for it) until
    the group has committed ``n`` interactions; with ``go``, it waits for it to start."""
    from socialzone_common import db
    from socialzone_common.bus.local import LocalBus
    from socialzone_common.settings import ConsumerSettings, LocalBusSettings
    from socialzone_common.worker import ConsumerWorker
    from socialzone_identity.resolution import Context
    from socialzone_identity.service import resolution_spec
    from socialzone_identity.settings import IdentitySettings

    settings = IdentitySettings(data_dir=folder)
    engine = db.create_db_engine(settings.database_url_for("identity"))
    bus = LocalBus(LocalBusSettings(synchronous="NORMAL"), folder / "bus.db")
    await bus.start()
    ctx = Context.from_settings(settings)

    class _Runtime:  # what resolution_spec reads
        pass

    runtime = _Runtime()
    runtime.settings = settings
    worker = ConsumerWorker(bus=bus, spec=resolution_spec(runtime, ctx), sessions=db.session_factory(engine),
                            settings=ConsumerSettings(batch_size=1000))
    if go is not None:
        await asyncio.to_thread(go.wait)
    gc.freeze()  # what was built so far is not the consumer's garbage (as in bench/bus.py)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    while sum(bus.store.committed(RESOLUTION_GROUP, "zone.interactions.raw").values()) < n:
        # every 50 ms: polling the offsets every 5 ms took 6% of the member's CPU (py-spy),
        # which a `socialzone work identity` process does not spend; 50 ms is under 1% of a run
        await asyncio.sleep(0.05)
    stop.set()
    await task
    await bus.close()
    engine.dispose()
    from socialzone_identity.fastpath import resolved_ahead

    result = {"handled": worker.state.handled, **ctx.stats,
              **{f"resolved_ahead_{what}": resolved_ahead(what) for what in ("held", "stale")}}
    if done is not None:
        done.put(result)
    return result


def _consume_in_process(folder: Path, n: int, go, done) -> None:
    from socialzone_common.service import tune_gc

    tune_gc()
    asyncio.run(_consume(folder, n, go, done))


def attribution(n: int, processes: int) -> dict[str, float]:
    """Interactions/s attributed by ``processes`` members of the resolution group, each in
    its own process (as `socialzone work identity` runs them), sharing the SQLite database
    and the local bus: from the start signal until the group has committed all ``n``."""
    import multiprocessing

    folder = Path(tempfile.mkdtemp(prefix="bench-identity-"))
    asyncio.run(_publish_sample(folder, n))
    context = multiprocessing.get_context("spawn")
    go, done = context.Event(), context.Queue()
    members = [context.Process(target=_consume_in_process, args=(folder, n, go, done)) for _ in range(processes)]
    for member in members:
        member.start()
    time.sleep(3.0 + processes)  # each member imports, joins the group and gets its partitions
    started = time.perf_counter()
    go.set()
    results = [done.get(timeout=600) for _ in members]
    elapsed = time.perf_counter() - started
    for member in members:
        member.join()
    key = "attribution_per_s" if processes == 1 else f"attribution_{processes}_processes_per_s"
    figures = {key: round(n / elapsed, 1)}
    if processes == 1:
        figures.update({"attribution_n": n, "attribution_created": results[0].get("created", 0),
                        "attribution_merged": results[0].get("merged", 0)})
    else:
        figures[f"attribution_{processes}_processes_handled"] = "/".join(str(r["handled"]) for r in results)
        figures[f"attribution_{processes}_processes_batches_held_stale"] = "/".join(
            str(sum(r[f"resolved_ahead_{what}"] for r in results)) for what in ("held", "stale"))
    return figures


def _load(url: str, customers: int, entries: int) -> tuple[list[str], list[str], list[str]]:
    """Bulk-load customers, identifiers and timeline entries (driver executemany)."""
    from socialzone_common import db
    from socialzone_identity.service import SERVICE

    engine = db.create_db_engine(url)
    db.run_migrations(engine, SERVICE.migrations)
    heavy = max(2, customers // 100)
    heavy_each = (entries - (customers - heavy) * 9) // heavy  # 99% of customers: 9 entries; 1%: the rest
    ids = [f"cus_{i:012d}" for i in range(customers)]
    fmt = "%Y-%m-%d %H:%M:%S.%f"
    now = datetime.now(timezone.utc).strftime(fmt)
    event = orjson.dumps({"interaction": {"text": "bench", "source": "x"}}).decode()
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO customers (id, status, created_at, updated_at, created_from, display_name, search_text, "
            "needs_match) VALUES (?, 'active', ?, ?, 'interaction', ?, ?, 0)",
            [(cid, START.strftime(fmt), now, f"Person {i}", f"person {i}") for i, cid in enumerate(ids)])
        conn.exec_driver_sql(
            "INSERT INTO identifiers (type, value, customer_id, origin_customer_id, strength, rule, linked_at) "
            "VALUES (?, ?, ?, ?, 'strong', 'bench', ?)",
            [row for i, cid in enumerate(ids) for row in (("x", str(1_000_000 + i), cid, cid, now),
                                                          ("email", f"person{i}@mail.com", cid, cid, now))])
        sql = ("INSERT INTO timeline (customer_id, origin_customer_id, event_id, event_type, department, occurred_at, "
               "summary, channel, retracted, event) VALUES (?, ?, ?, 'identity.interaction.attributed', "
               "'interactions', ?, 'post on x', 'x', 0, ?)")
        batch: list[tuple] = []
        for i, cid in enumerate(ids):
            count = heavy_each if i < heavy else 9
            for k in range(count):
                at = (START + timedelta(minutes=k * 7 + i % 60)).strftime(fmt)
                batch.append((cid, cid, uuid.uuid4().hex, at, event))
            if len(batch) >= 50_000:
                conn.exec_driver_sql(sql, batch)
                batch = []
        if batch:
            conn.exec_driver_sql(sql, batch)
        conn.exec_driver_sql("ANALYZE")
    engine.dispose()
    return ids, ids[:heavy], [f"email:person{i}@mail.com" for i in range(customers)]


def _direct(runtime, lookups: list[str], heavy: list[str], rnd: random.Random) -> tuple[list[float], list[float]]:
    """The same reads without HTTP: what the database work costs (session, statement, rows)."""
    from socialzone_identity import timeline
    from socialzone_identity.api import _BY_IDENTIFIER
    from socialzone_identity.identifiers import Rules

    rules = Rules.from_settings(runtime.settings)
    lookup, pages = [], []
    for _ in range(1000):
        t0 = time.perf_counter()
        n = rules.parse(rnd.choice(lookups))
        with runtime.sessions() as session:
            session.connection().execute(_BY_IDENTIFIER, {"t": n.type, "v": n.value}).first()
        lookup.append((time.perf_counter() - t0) * 1000)
    for _ in range(500):
        t0 = time.perf_counter()
        with runtime.sessions() as session:
            timeline.query_page(session, customer_id=rnd.choice(heavy), types=[], department=None, since=None,
                                until=None, cursor=None, limit=50)
        pages.append((time.perf_counter() - t0) * 1000)
    return lookup, pages


async def reads(customers: int, entries: int) -> dict[str, float]:
    from socialzone_common.settings import ApiKey, ServiceSettings
    from socialzone_common.web import build_host_app
    from socialzone_identity.service import SERVICE

    folder = Path(tempfile.mkdtemp(prefix="bench-identity-reads-"))
    settings = ServiceSettings(data_dir=folder, environment="test", log_json=False, log_level="WARNING",
                               api_keys=[ApiKey(name="bench", key="bench-key", scopes=["admin"])])
    started = time.perf_counter()
    ids, heavy, lookups = await asyncio.to_thread(_load, settings.database_url_for("identity"), customers, entries)
    load_s = time.perf_counter() - started
    host = build_host_app([SERVICE], settings=settings, consumers=False, relay=False)
    headers = {"Authorization": "Bearer bench-key"}
    rnd = random.Random(3)
    async with host.router.lifespan_context(host):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=host), base_url="http://b") as client:
            for _ in range(50):  # warm up
                await client.get("/identity/v1/customers", params={"identifier": rnd.choice(lookups)}, headers=headers)
            lookup = []
            for _ in range(1000):
                identifier = rnd.choice(lookups)
                t0 = time.perf_counter()
                r = await client.get("/identity/v1/customers", params={"identifier": identifier}, headers=headers)
                lookup.append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200 and r.json()["items"], r.text
            pages = []
            for i in range(600):
                cid = rnd.choice(heavy)
                params = {"limit": 50}
                if i % 3 == 2:  # a later page through the cursor
                    first = await client.get(f"/identity/v1/customers/{cid}/timeline", params=params, headers=headers)
                    params["cursor"] = first.json()["next_cursor"]
                t0 = time.perf_counter()
                r = await client.get(f"/identity/v1/customers/{cid}/timeline", params=params, headers=headers)
                pages.append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200 and len(r.json()["items"]) == 50, r.text
            runtime = host.state.runtimes["identity"]
            db_lookup, db_pages = await asyncio.to_thread(_direct, runtime, lookups, heavy, rnd)
            survivor, merged = heavy[0], heavy[1]
            t0 = time.perf_counter()
            r = await client.post("/identity/v1/merges", json={"customer_ids": [merged, survivor], "reason": "bench"},
                                  headers=headers)
            assert r.status_code == 201, r.text
            while True:
                page = await client.get(f"/identity/v1/customers/{survivor}/timeline", params={"limit": 50},
                                        headers=headers)
                if any(item["origin_customer_id"] == merged for item in page.json()["items"]):
                    break
            merge_ms = (time.perf_counter() - t0) * 1000
    return {"lookup_p95_ms": round(_p95(lookup), 3), "lookup_p50_ms": round(statistics.median(lookup), 3),
            "timeline_p95_ms": round(_p95(pages), 3), "timeline_p50_ms": round(statistics.median(pages), 3),
            "lookup_db_p95_ms": round(_p95(db_lookup), 3), "timeline_db_p95_ms": round(_p95(db_pages), 3),
            "merge_visible_ms": round(merge_ms, 1), "timeline_entries": entries, "customers": customers,
            "bulk_load_s": round(load_s, 1)}


def main() -> None:
    from socialzone_common.service import tune_gc

    tune_gc()  # what `socialzone run` and `socialzone serve` do at start-up (as in bench/bus.py)
    n = int(os.environ.get("BENCH_IDENTITY_N", "30000"))
    customers = int(os.environ.get("BENCH_IDENTITY_CUSTOMERS", "100000"))
    entries = int(os.environ.get("BENCH_IDENTITY_ENTRIES", "1000000"))
    figures: dict[str, float | int | str] = {}
    # one consumer process, then two members of the group in two processes, in the same run
    figures.update(attribution(n, 1))
    figures.update(attribution(n, 2))
    figures.update(asyncio.run(reads(customers, entries)))
    try:
        from socialzone_identity.matching.evaluation import febrl_figures
    except ImportError:
        febrl_figures = None
    if febrl_figures is not None:
        figures.update(febrl_figures())
    report("identity", figures, notes={
        "attribution_per_s": "target >= 10,000/s (local bus, SQLite, batch transactions, one process)",
        "attribution_2_processes_per_s": "the same with two consumer processes of the group (2 cores)",
        "lookup_p95_ms": "target <= 5 ms (HTTP through the ASGI app)",
        "timeline_p95_ms": "target <= 20 ms, 50 entries, 1M entries / 100k customers",
        "merge_visible_ms": "target <= 1,000 ms"})


if __name__ == "__main__":
    main()
