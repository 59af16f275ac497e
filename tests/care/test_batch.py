"""The batch path (a polled batch in one transaction, batch.py) against the reference, the
per-event path (domain.on_interaction, one transaction each): the same input gives the same
cases, priorities, assignments, SLA clocks, history, threads and events, in order."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, text

from socialzone_common.bus import OutgoingMessage, Record
from socialzone_common.envelope import from_structured
from socialzone_common.events.common import Transaction
from socialzone_common.inbox import InboxEntry
from socialzone_common.outbox import OutboxMessage
from socialzone_common.service import ServiceRuntime
from socialzone_common.settings import ConsumerSettings
from socialzone_common.web import build_host_app
from socialzone_common.worker import ConsumerWorker
from socialzone_care import batch, domain
from socialzone_care.clock import FrozenClock, install
from socialzone_care.common import invalidate
from socialzone_care.models import (
    AdvocateTopic, Agent, Calendar, Case, CaseActivity, CaseCreate, CaseMessage, CaseThread, Crisis, CustomerFacts,
    Lead, OpeningRule, Queue, SlaPolicy,
)
from socialzone_care.service import SERVICE
from socialzone_care.settings import CareSettings

from tests.care.conftest import MONDAY_10, Care, attributed

NOW = MONDAY_10 + timedelta(hours=1)


class NoBus:
    kind = "none"


def runtime_on(settings) -> ServiceRuntime:
    runtime = ServiceRuntime(SERVICE, NoBus(), CareSettings(**settings.model_dump()))
    runtime.migrate()
    return runtime


def arrange(runtime: ServiceRuntime) -> None:
    """Queues, agents, rules, replicated facts and a few cases that exist before the stream."""
    settings = runtime.settings
    with runtime.sessions() as session:
        session.add_all([
            Queue(name="general", policy="round_robin"),
            Queue(name="social", channels=["mastodon"], policy="least_loaded"),
            Agent(id="ann", name="Ann", queues=["general"], capacity=3, languages=["en"]),
            Agent(id="bob", name="Bob", queues=["general"], capacity=5, languages=["de"]),
            Agent(id="cid", name="Cid", queues=["general", "social"], capacity=3),
            Agent(id="dan", name="Dan", queues=["social"], capacity=1),
            CustomerFacts(customer_id="adv-1", advocate_tier="gold"),
            CustomerFacts(customer_id="cus-f", advocate_tier="platinum", lifetime_value=120.0, orders=2),
            AdvocateTopic(advocate_id="adv-1", topic="how_to", accepted_answers=3),
            Lead(lead_id="lead-1", customer_id="cus-l", stage="qualified"),
            Crisis(alert_id="al-1", topic="hashtag:outage", severity="critical", raised_at=MONDAY_10),
        ])
        rules = [OpeningRule(**r.model_dump()) for r in domain.DEFAULT_RULES]
        rules.append(OpeningRule(name="forum", position=5, intents=["complaint"], channels=["forum"],
                                 topic="forum", min_priority=95))
        session.add_all(rules)
        session.commit()
    invalidate()
    with runtime.sessions() as session:
        domain.open_manual_case(session, body=CaseCreate(customer_id="cus-e", channel="phone", topic="general",
                                                         text="called about my order", intents=["complaint"]),
                                settings=settings, now=MONDAY_10)
        session.commit()
    with runtime.sessions() as session:
        first = attributed("cus-g", "my invoice is wrong", keywords=("invoice",), external_id="g-1").interaction
        domain.on_interaction(session, customer_id="cus-g", settings=settings, now=MONDAY_10,
                              interaction=first.model_copy(update={"interaction_id": "int-g-1"}))
        session.commit()
    with runtime.sessions() as session:
        [case] = session.exec(select(Case).where(Case.customer_id == "cus-g")).all()
        domain.resolve(session, case_id=case[0].id, resolution="solved", resolver_id="ann", settings=settings,
                       now=MONDAY_10 + timedelta(minutes=30))
        session.commit()


def stream() -> list:
    """One batch of what the zone stream brings: new cases, threading, rules that do not
    match, transactions, VIPs, a crisis, a rule's minimum priority, full agents, and the
    rare branches (a reopen, an advocate's answer) in the middle."""
    def t(amount: str, kind: str = "order") -> Transaction:
        return Transaction(type=kind, amount=Decimal(amount), currency="EUR")

    def money(customer: str, amount: str, kind: str = "order"):
        return attributed(customer, None, intents=(), source="crm", kind="transaction", sentiment=None,
                          transaction=t(amount, kind))

    return [
        attributed("cus-a", "refund please", keywords=("refund",), external_id="a-1"),
        attributed("cus-a", "still no refund", keywords=("refund",), external_id="a-2", sentiment=-0.9),
        attributed("cus-b", "how do I reset my password?", intents=("question",), sentiment=0.1, external_id="b-1"),
        attributed("cus-c", "the app is broken", conversation_id="conv-1", external_id="c-1"),
        attributed("cus-c", "hello?", intents=(), conversation_id="conv-1", external_id="c-2"),
        attributed("cus-d", "love it", intents=("praise",), sentiment=0.9),
        money("cus-e", "2500"),
        attributed("cus-e", "so, what about my order?"),
        attributed("cus-f", "my parcel never came", keywords=("parcel",), followers=90_000),
        attributed("cus-g", "still wrong!", intents=(), in_reply_to="g-1", external_id="g-2"),
        attributed("cus-h", "outage again", source="mastodon"),
        attributed("adv-1", "go to settings, then reset", intents=(), in_reply_to="b-1", external_id="adv-r"),
        attributed("cus-i", "down again #outage", hashtags=("#outage",)),
        attributed("cus-j", "meh", source="forum"),
        attributed("cus-k1", "broken"), attributed("cus-k2", "broken"), attributed("cus-k3", "broken"),
        attributed("cus-k4", "broken", language="de"),
        attributed("cus-l", "where is my quote?"),
        attributed("cus-a", "I will cancel", intents=("churn_risk",), in_reply_to="a-1", external_id="a-3"),
        money("cus-m", "40", "refund"),
        attributed("cus-m", "the refund is wrong", keywords=("refund",)),
        attributed("cus-n", "no rule for me", intents=("purchase_intent",)),
    ]


def dump(runtime: ServiceRuntime) -> dict:
    """Everything the handlers write, with generated ids replaced by case numbers."""
    with runtime.engine.connect() as conn:
        cases = [dict(r._mapping) for r in conn.execute(select(Case.__table__).order_by(Case.__table__.c.number))]
        number = {c["id"]: c["number"] for c in cases}
        for c in cases:
            c.pop("id")
        messages = conn.execute(select(CaseMessage.__table__)).mappings().all()
        messages = sorted(({**m, "id": None, "case_id": number[m["case_id"]]} for m in messages),
                          key=lambda m: (m["case_id"], m["created_at"], m["interaction_id"] or "", m["kind"]))
        activity = [{"case": number[a.case_id], "at": a.at, "kind": a.kind,
                     "detail": {k: v for k, v in a.detail.items() if k != "response_id"}}
                    for a in conn.execute(select(CaseActivity.__table__).order_by(CaseActivity.__table__.c.id))]
        events = []
        for row in conn.execute(select(OutboxMessage.__table__).order_by(OutboxMessage.__table__.c.id)):
            envelope = from_structured(row.envelope)
            data = dict(envelope.data)
            if "case_id" in data:  # (care.erasure.completed has none)
                data["case_id"] = number[data["case_id"]]
            data.pop("response_id", None)
            events.append((envelope.type, envelope.subject, envelope.partitionkey, data))
        threads = {r.key: number[r.case_id] for r in conn.execute(select(CaseThread.__table__))}
        agents = [tuple(r) for r in conn.execute(text("SELECT id, last_assigned_at FROM care_agents ORDER BY id"))]
        queues = [tuple(r) for r in conn.execute(text("SELECT name, last_agent_id FROM care_queues ORDER BY name"))]
        pointers = [tuple(r) for r in conn.execute(text(
            "SELECT queue, last_agent_id FROM care_round_robin ORDER BY queue"))]
        facts = [tuple(r) for r in conn.execute(text("SELECT * FROM care_customer_facts ORDER BY customer_id"))]
    return {"cases": cases, "messages": messages, "activity": activity, "events": events, "threads": threads,
            "agents": agents, "queues": queues, "pointers": pointers, "facts": facts}


def per_case(activity: list[dict]) -> dict:
    """The history of each case, in order (the order across cases may differ: a transaction
    refreshes a customer's open cases in whatever order the database lists them)."""
    out: dict[int, list] = {}
    for entry in activity:
        out.setdefault(entry["case"], []).append(entry)
    return out


def run_both(reference: ServiceRuntime, batched: ServiceRuntime, payloads) -> tuple[list, list]:
    settings = reference.settings
    per_event = []
    for p in payloads:
        with reference.sessions() as session:
            per_event.append(domain.on_interaction(session, customer_id=p.customer_id, interaction=p.interaction,
                                                   settings=settings, now=NOW))
            session.commit()
    with batched.sessions() as session:
        in_batch = batch.on_interactions(session, [(p.customer_id, p.interaction, NOW) for p in payloads],
                                         settings=batched.settings)
        session.commit()
    return per_event, in_batch


def assert_same(reference: ServiceRuntime, batched: ServiceRuntime) -> dict:
    expected, actual = dump(reference), dump(batched)
    for name in ("cases", "messages", "events", "threads", "agents", "queues", "pointers", "facts"):
        assert len(actual[name]) == len(expected[name]), name
        if isinstance(actual[name], list):
            for got, want in zip(actual[name], expected[name]):
                if isinstance(got, dict):
                    assert {k: v for k, v in got.items() if want.get(k) != v} == {}, (name, want)
                assert got == want, name
        assert actual[name] == expected[name], name
    assert per_case(actual["activity"]) == per_case(expected["activity"])
    return actual


def check_story(state: dict) -> None:
    """What the stream should have done (so that "the same" is not "the same mistake")."""
    by_customer: dict[str, list] = {}
    for case in state["cases"]:
        by_customer.setdefault(case["customer_id"], []).append(case)
    [a] = by_customer["cus-a"]
    assert a["topic"] == "billing" and a["intents"] == ["complaint", "churn_risk"]
    assert a["sentiment_score"] == -0.9 and a["assignee_id"] == "ann"
    [b] = by_customer["cus-b"]
    assert b["assignee_kind"] == "advocate" and b["assignee_id"] == "adv-1"
    assert len(by_customer["cus-c"]) == 1
    assert "cus-d" not in by_customer and "cus-j" not in by_customer and "cus-n" not in by_customer
    [e] = by_customer["cus-e"]
    assert next(f for f in e["priority_factors"] if f["name"] == "customer_value")["value"] == 2500.0
    assert by_customer["cus-f"][0]["sla_policy"] == "vip" and by_customer["cus-l"][0]["sla_policy"] == "vip"
    [g] = by_customer["cus-g"]
    assert g["status"] != "resolved" and g["reopen_count"] == 1
    [h] = by_customer["cus-h"]
    assert h["queue"] == "social" and h["assignee_id"] == "dan"
    assert next(f for f in by_customer["cus-i"][0]["priority_factors"] if f["name"] == "crisis")["points"] > 0
    # ann takes 3, cid 3 (bob speaks German only): the fourth English case waits, the German one goes to bob
    assert by_customer["cus-k4"][0]["assignee_id"] == "bob"
    assert [c["assignee_id"] for c in by_customer["cus-l"]] == [None]
    messages = [m for m in state["messages"] if m["kind"] == "advocate"]
    assert [m["author_id"] for m in messages] == ["adv-1"]
    types = [e[0] for e in state["events"]]
    assert types.count("care.case.reopened") == 1 and types.count("care.case.responded") == 1


@pytest.fixture
def two_runtimes(settings):
    reference = runtime_on(settings.model_copy(update={"data_dir": settings.data_dir / "reference"}))
    batched = runtime_on(settings.model_copy(update={"data_dir": settings.data_dir / "batched"}))
    yield reference, batched
    reference.engine.dispose()
    batched.engine.dispose()


def test_a_batch_does_what_the_events_one_by_one_do(two_runtimes):
    reference, batched = two_runtimes
    arrange(reference)
    arrange(batched)
    payloads = stream()
    per_event, in_batch = run_both(reference, batched, payloads)

    assert in_batch == per_event
    assert per_event.count("opened") >= 10 and {"attached", "ignored", "reopened", "advocate_answer",
                                                  "below_min_priority"} <= set(per_event)
    check_story(assert_same(reference, batched))


def test_a_batch_of_only_follow_ups_and_a_second_batch_agree_too(two_runtimes):
    """Two batches in a row: the second finds what the first wrote in the database."""
    reference, batched = two_runtimes
    arrange(reference)
    arrange(batched)
    payloads = stream()
    run_both(reference, batched, payloads[:9])
    follow_ups = [attributed("cus-a", "??", intents=(), in_reply_to="a-2"),
                  attributed("cus-c", "anyone?", intents=("complaint",), conversation_id="conv-1"),
                  attributed("cus-f", "and the parcel?", keywords=("parcel",))]
    per_event, in_batch = run_both(reference, batched, follow_ups + payloads[9:])
    assert in_batch == per_event and per_event[:3] == ["attached"] * 3
    assert_same(reference, batched)


def test_on_postgresql_too(pg_settings):
    pytest.importorskip("psycopg")
    reference = runtime_on(pg_settings)
    batched = runtime_on(pg_settings.model_copy(
        update={"database_schema_prefix": pg_settings.database_schema_prefix + "b_"}))
    try:
        arrange(reference)
        arrange(batched)
        per_event, in_batch = run_both(reference, batched, stream())
        assert in_batch == per_event
        check_story(assert_same(reference, batched))
    finally:
        reference.engine.dispose()
        batched.engine.dispose()


test_on_postgresql_too = pytest.mark.postgres(test_on_postgresql_too)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_reply_that_finds_two_open_cases_continues_the_one_of_the_message_it_replies_to(settings, backend, request):
    """Its in_reply_to leads to case A, its conversation to case B: both paths take A (the
    more precise key). The per-event path took the first thread row the database gave."""
    if backend == "postgres":
        pg = request.getfixturevalue("pg_settings")
        reference = runtime_on(pg)
        batched = runtime_on(pg.model_copy(update={"database_schema_prefix": pg.database_schema_prefix + "b_"}))
    else:
        reference = runtime_on(settings.model_copy(update={"data_dir": settings.data_dir / "reference"}))
        batched = runtime_on(settings.model_copy(update={"data_dir": settings.data_dir / "batched"}))
    try:
        first = attributed("cus-2c", "refund!", keywords=("refund",), external_id="zz-1").interaction
        second = attributed("cus-2c", "parcel!", keywords=("parcel",), external_id="b-9",
                            conversation_id="aa").interaction
        for runtime in (reference, batched):
            arrange(runtime)
            for interaction in (first, second):
                with runtime.sessions() as session:
                    domain.on_interaction(session, customer_id="cus-2c", settings=runtime.settings, now=MONDAY_10,
                                          interaction=interaction)
                    session.commit()
        reply = attributed("cus-2c", "both?", intents=(), in_reply_to="zz-1", conversation_id="aa", external_id="r-7")
        assert run_both(reference, batched, [reply]) == (["attached"], ["attached"])
        state = assert_same(reference, batched)
        [billing] = [c for c in state["cases"] if c["customer_id"] == "cus-2c" and c["topic"] == "billing"]
        assert [m["case_id"] for m in state["messages"] if m["text"] == "both?"] == [billing["number"]]
    finally:
        reference.engine.dispose()
        batched.engine.dispose()


def test_erased_customers_round_robin_and_the_business_time_margin_agree(two_runtimes):
    """An interaction of an erased customer is ignored on both paths (nothing opened,
    attached or counted); the advocate offer ends ``advocate_fallback_margin_s`` of business
    time before the first response is due; the round-robin pointer of a queue without a
    row (leads) moves the same way."""
    reference, batched = two_runtimes
    before = attributed("cus-x", "broken", external_id="x-1").interaction
    for runtime in two_runtimes:
        arrange(runtime)
        with runtime.sessions() as session:
            # the standard policy on a calendar that closes at 11:10 on Monday: a 20-minute
            # target from 11:00 is due Tuesday 09:10, the offer must end at 11:05
            session.add(Calendar(name="short", timezone="UTC",
                                 hours={"mon": [["09:00", "11:10"]], "tue": [["09:00", "17:00"]]}))
            session.add(SlaPolicy(name="standard", first_response_s=1200, next_response_s=3600,
                                  resolution_s=8 * 3600, calendar="short"))
            session.add(OpeningRule(name="leads", position=1, intents=["churn_risk"], topic="retention",
                                    queue="leads"))
            session.add_all([Agent(id="lea", name="Lea", queues=["leads"], lead=True),
                             Agent(id="leo", name="Leo", queues=["leads"], lead=True)])
            session.commit()
        invalidate()
        with runtime.sessions() as session:
            domain.on_interaction(session, customer_id="cus-x", settings=runtime.settings, now=MONDAY_10,
                                  interaction=before)
            session.commit()
        with runtime.sessions() as session:
            domain.erase(session, erasure_id="er-x", customer_id="cus-x", now=MONDAY_10)
            session.commit()
    late = [attributed("cus-x", "still broken, I'm Xavier", external_id="x-2"),
            attributed("cus-x", "??", intents=(), in_reply_to="x-1"),
            attributed("cus-x", None, intents=(), source="crm", kind="transaction", sentiment=None,
                       transaction=Transaction(type="order", amount=Decimal("99"), currency="EUR")),
            attributed("cus-q", "how do I reset my password?", intents=("question",), sentiment=0.1),
            attributed("cus-r1", "I will cancel", intents=("churn_risk",)),
            attributed("cus-r2", "I will cancel", intents=("churn_risk",)),
            attributed("cus-r3", "I will cancel", intents=("churn_risk",))]
    per_event, in_batch = run_both(reference, batched, late)
    assert in_batch == per_event == ["ignored"] * 3 + ["opened"] * 4
    state = assert_same(reference, batched)
    assert not [c for c in state["cases"] if c["customer_id"] == "cus-x"]
    assert ("cus-x",) not in [f[:1] for f in state["facts"]]
    [question] = [c for c in state["cases"] if c["customer_id"] == "cus-q"]
    assert question["assignee_kind"] == "advocate"
    assert question["advocate_offer_expires_at"].replace(tzinfo=None) == (NOW + timedelta(minutes=5)).replace(
        tzinfo=None)
    assert [c["assignee_id"] for c in state["cases"] if c["customer_id"].startswith("cus-r")] == ["lea", "leo", "lea"]
    assert ("leads", "lea") in state["pointers"]


# --- through the platform's worker --------------------------------------------------------------

@pytest.fixture
async def care_fast_retries(care_settings):
    settings = care_settings.model_copy(update={"consumer": ConsumerSettings(max_attempts=2, retry_backoff_s=0.01)})
    host = build_host_app([SERVICE], settings=settings, service_settings={"care": settings})
    clock = install(host.state.runtimes["care"], FrozenClock(MONDAY_10))
    import httpx

    async with host.router.lifespan_context(host):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=host), base_url="http://test") as client:
            yield Care(host, client, clock)


def spy_batches(monkeypatch) -> list[int]:
    sizes: list[int] = []
    real = batch.on_interactions

    def counting(session, items, *, settings):
        sizes.append(len(items))
        return real(session, items, settings=settings)

    monkeypatch.setattr(batch, "on_interactions", counting)
    return sizes


def worker(care: Care):
    return next(w for w in care.runtime.workers if w.spec.group == "care-interactions")


async def test_a_redelivered_batch_changes_nothing(care_fast_retries, monkeypatch):
    care = care_fast_retries
    sizes = spy_batches(monkeypatch)
    await care.put("/agents/ann", {"name": "Ann", "queues": ["general"]})
    payloads = [attributed("cus-r1", "refund now", keywords=("refund",), external_id="r-1"),
                attributed("cus-r1", "hello?", intents=(), in_reply_to="r-1"),
                attributed("cus-r2", "parcel lost", keywords=("parcel",))]
    envelopes = [p.to_envelope(source="socialzone/identity") for p in payloads]
    messages = [OutgoingMessage("zone.interactions", e) for e in envelopes]
    await care.host.state.bus.publish(messages)
    await care.until(lambda: worker(care).state.handled >= 3)
    assert sum(sizes) == 3  # the batch path handled them
    before = (care.cases(), care.events())

    await care.host.state.bus.publish(messages)
    await care.until(lambda: worker(care).state.duplicates >= 3)
    await asyncio.sleep(0.2)
    assert [c.model_dump() for c in care.cases()] == [c.model_dump() for c in before[0]]
    assert care.events() == before[1]
    assert len(care.cases(customer_id="cus-r1")) == 1


async def test_a_poison_event_in_a_batch_is_dead_lettered_and_its_neighbours_are_handled(care_fast_retries,
                                                                                         caplog):
    care = care_fast_retries
    caplog.set_level("INFO", logger="socialzone_common.worker")
    good = [attributed("cus-p1", "refund now", keywords=("refund",)),
            attributed("cus-p2", "parcel lost", keywords=("parcel",))]
    envelopes = [p.to_envelope(source="socialzone/identity") for p in good]
    poison = envelopes[0].model_copy(update={"id": "poison-1", "data": {"customer_id": "cus-p3"}})
    await care.host.state.bus.publish([OutgoingMessage("zone.interactions", e)
                                       for e in (envelopes[0], poison, envelopes[1])])
    await care.until(lambda: worker(care).state.dead_lettered >= 1)
    await care.until(lambda: worker(care).state.handled >= 2)
    assert "batch of 3 failed" in caplog.text  # tried as one batch first, then one by one
    assert len(care.cases(customer_id="cus-p1")) == 1 and len(care.cases(customer_id="cus-p2")) == 1
    assert len(care.events("care.case.opened")) == 2

    bus = care.host.state.bus
    dlq = bus.consumer(group="test-dlq-reader", topics=["zone.interactions.dlq"])
    await dlq.start()
    try:
        letters = []
        for _ in range(50):
            letters += await dlq.poll(timeout=0.2)
            if letters:
                break
    finally:
        await dlq.close()
    [letter] = letters
    assert letter.envelope.id == "poison-1"
    assert dict(letter.headers)["dlq_consumer_group"] == b"care-interactions"


# --- PostgreSQL: two consumers on one batch at once ------------------------------------------------

@pytest.mark.postgres
def test_two_consumers_handling_the_same_batch_at_once_open_each_case_once(pg_settings):
    """A rebalance can hand one batch to two replicas: the inbox lets one win; the other's
    batch fails on the inbox key and, one event at a time, finds each event handled."""
    runtime = runtime_on(pg_settings)
    try:
        arrange(runtime)
        spec = next(w.spec for w in runtime.workers if w.spec.group == "care-interactions")
        payloads = [attributed(f"cus-x{i % 7}", "refund now", keywords=("refund",)) for i in range(40)]
        envelopes = [p.to_envelope(source="socialzone/identity") for p in payloads]

        records = [Record(topic="zone.interactions", partition=0, offset=i, key=b"", value=b"", headers=[],
                          envelope=e) for i, e in enumerate(envelopes)]
        workers = [ConsumerWorker(bus=NoBus(), spec=spec, sessions=runtime.sessions,
                                  settings=ConsumerSettings(max_attempts=3, retry_backoff_s=0.01))
                   for _ in range(2)]
        start = threading.Barrier(2)
        results = []

        def run(w):
            start.wait()
            results.append(w._handle_batch(records))

        threads = [threading.Thread(target=run, args=(w,)) for w in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(not dead for _, dead, _ in results)
        assert sum(w.state.handled for w in workers) == 40
        assert sum(w.state.duplicates for w in workers) == 40
        with runtime.sessions() as session:
            cases = session.exec(select(Case).where(Case.customer_id.like("cus-x%"))).all()
            inbox = session.exec(select(InboxEntry).where(InboxEntry.consumer_group == spec.group)).all()
            messages = session.exec(select(CaseMessage).where(CaseMessage.author_id.like("cus-x%"))).all()
        assert len(cases) == 7 and len(inbox) == 40 and len(messages) == 40
    finally:
        runtime.engine.dispose()
