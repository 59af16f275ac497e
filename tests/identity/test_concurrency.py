"""Resolution is safe under concurrency, proven on PostgreSQL: consumers handling events
with the same new identifier at the same moment still produce ONE customer.

Why it holds: each resolution takes a transaction-scoped advisory lock per identifier
(in one global order, so no cycles) before it looks the identifiers up. The second of
two transactions with the same new identifier waits for the first to commit, then
(READ COMMITTED: every statement sees what committed before it) finds the identifier
and attaches to that customer instead of creating another. The unique constraint on
identifiers(type, value) is the backstop, and a customer being merged is locked
(SELECT ... FOR UPDATE) and followed to its survivor.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import func, select

from socialzone_common.bus import OutgoingMessage
from socialzone_common.bus.local import LocalBus
from socialzone_common.inbox import handle_once
from socialzone_identity.models import Customer, IdentifierLink, TimelineEntry
from socialzone_identity.service import RESOLUTION_GROUP
from socialzone_common.worker import ConsumerSpec, ConsumerWorker

from tests.identity.factory import crm, recorded


def _count(identity, statement):
    with identity.sessions() as session:
        return session.execute(statement).scalar_one()


def test_concurrent_events_with_the_same_new_identifier_make_one_customer_on_postgresql(pg_identity):
    threads = 16
    events = [recorded((f"x", str(7000 + i)), ("email", "same.person@acme-mail.com")) for i in range(threads)]
    barrier = threading.Barrier(threads)
    failures: list[BaseException] = []

    def consume(envelope):
        barrier.wait()
        for _attempt in range(5):  # what the worker does: retry a failed transaction
            try:
                handle_once(pg_identity.sessions, group="identity-resolution", envelope=envelope,
                            handler=pg_identity.handler)
                return
            except Exception as exc:  # pragma: no cover - would show in the assertion below
                failures.append(exc)
                time.sleep(0.05)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(consume, events))
    customers = {pg_identity.customer_of(e) for e in events}
    assert len(customers) == 1
    assert _count(pg_identity, select(func.count()).select_from(Customer)) == 1
    assert _count(pg_identity, select(func.count()).select_from(IdentifierLink)) == threads + 1
    assert failures == []  # the locks serialize them: not even a retry was needed


def _run_replicas(pg_identity, tmp_path, events, replicas=2):
    async def run():
        from socialzone_common.settings import ConsumerSettings, LocalBusSettings

        bus = LocalBus(LocalBusSettings(), tmp_path / "bus.db")
        await bus.start()
        await bus.ensure_topics({"zone.interactions.raw": 12, "zone.interactions.raw.dlq": 12})
        await bus.publish([OutgoingMessage("zone.interactions.raw", e) for e in events])
        from socialzone_identity.fastpath import BatchResolver

        spec = ConsumerSpec(group=RESOLUTION_GROUP, topics=["zone.interactions.raw"], handler=pg_identity.handler,
                            batch_handler=BatchResolver(pg_identity.ctx).resolve)
        workers = [ConsumerWorker(bus=bus, spec=spec, sessions=pg_identity.sessions,
                                  settings=ConsumerSettings(batch_size=10, retry_backoff_s=0.01))
                   for _ in range(replicas)]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(w.run(stop)) for w in workers]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = await asyncio.to_thread(_count, pg_identity, select(func.count()).select_from(TimelineEntry).where(
                TimelineEntry.event_type == "identity.interaction.attributed"))
            if done >= len(events):
                break
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.gather(*tasks)
        await bus.close()
        return workers

    return asyncio.run(run())


def test_two_consumer_replicas_on_postgresql_resolve_shared_identifiers_to_one_customer_each(pg_identity, tmp_path):
    groups, per_group = 8, 15
    events = [crm((f"crm:shop", f"G{g}-{i}"), ("email", f"group{g}@acme-mail.com"))
              for i in range(per_group) for g in range(groups)]
    workers = _run_replicas(pg_identity, tmp_path, events)
    assert all(w.state.handled > 0 for w in workers), "both replicas took part"
    assert sum(w.state.dead_lettered for w in workers) == 0
    with pg_identity.sessions() as session:
        owners = dict(session.execute(select(IdentifierLink.value, IdentifierLink.customer_id)
                                      .where(IdentifierLink.type == "email")).all())
        active = session.execute(select(func.count()).select_from(Customer).where(Customer.status == "active")).scalar_one()
    assert len(owners) == groups and len(set(owners.values())) == groups
    assert active == groups
    for g in range(groups):
        group_customers = {pg_identity.customer_of(e) for e in events if e.data["interaction"]["author"]["identifiers"][1]["value"] == f"group{g}@acme-mail.com"}
        assert group_customers == {owners[f"group{g}@acme-mail.com"]}


def test_concurrent_merging_replicas_on_postgresql_leave_a_consistent_graph(pg_identity, tmp_path):
    """Records that chain identifiers of different people (deterministic CRM records, so they
    merge) handled by two replicas at once: every identifier and timeline entry ends on an
    active customer, and the identifiers of every record end on one customer."""
    import random

    rnd = random.Random(5)
    pg_identity.ctx.rules.default_cap = 10_000
    pg_identity.ctx.rules.caps = {}
    people = 30
    events = []
    for i in range(150):
        a, b = rnd.randrange(people), rnd.randrange(people)
        events.append(crm(("crm:shop", f"P{a}"), ("email", f"p{b}@acme-mail.com"), ("x", str(900_000 + i))))
    workers = _run_replicas(pg_identity, tmp_path, events)
    assert sum(w.state.dead_lettered for w in workers) == 0
    from sqlalchemy import text

    with pg_identity.sessions() as session:
        stray_ids = session.execute(text(
            "SELECT count(*) FROM identifiers i JOIN customers c ON c.id = i.customer_id WHERE c.status <> 'active'")).scalar()
        stray_entries = session.execute(text(
            "SELECT count(*) FROM timeline t JOIN customers c ON c.id = t.customer_id WHERE c.status <> 'active'")).scalar()
        owner = dict(session.execute(text("SELECT type || ':' || value, customer_id FROM identifiers")).all())
        entries = session.execute(text("SELECT count(*) FROM timeline WHERE event_type = 'identity.interaction.attributed'")).scalar()
    assert stray_ids == 0 and stray_entries == 0
    assert entries == len(events)
    for e in events:
        ids = e.data["interaction"]["author"]["identifiers"]
        assert len({owner[f"{i['type']}:{i['value']}"] for i in ids}) == 1
