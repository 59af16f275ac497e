"""Telemetry as an operator sees it: one trace from the request that wrote an event to
the consumer that handled it (through the outbox, the relay and the bus), log lines
that carry that trace id, and counters that move."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
import uuid

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import REGISTRY
from sqlmodel import select

from socialzone_common import db, outbox, telemetry
from socialzone_common.bus.local import LocalBus
from socialzone_common.envelope import Envelope, from_structured, now_utc
from socialzone_common.settings import ConsumerSettings, LocalBusSettings
from socialzone_common.worker import ConsumerSpec, ConsumerWorker

EVENT_TYPE = "test.thing.happened"
WITHIN_S = 20.0

_exporter: InMemorySpanExporter | None = None


def _span_exporter() -> InMemorySpanExporter:
    """An in-memory exporter on the process's tracer provider, whoever set it up.

    ``telemetry.configure`` sets the global provider once per process (and other tests
    may have called it already); a provider can be set only once, so the exporter is
    added to the one in place, or to a fresh SDK provider if there is none yet.
    """
    global _exporter
    if _exporter is None:
        if not isinstance(trace.get_tracer_provider(), TracerProvider):
            trace.set_tracer_provider(TracerProvider())
        provider = trace.get_tracer_provider()
        assert isinstance(provider, TracerProvider), f"not an SDK tracer provider: {provider!r}"
        _exporter = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(_exporter))
    return _exporter


@pytest.fixture
def spans() -> InMemorySpanExporter:
    exporter = _span_exporter()
    exporter.clear()
    return exporter


@pytest.fixture
def sessions(tmp_path):
    engine = db.create_db_engine(f"sqlite:///{tmp_path / 'svc.db'}")
    db.run_migrations(engine, None)
    yield db.session_factory(engine)
    engine.dispose()


@pytest.fixture
async def bus(tmp_path):
    local = LocalBus(LocalBusSettings(), tmp_path / "bus.db")
    await local.start()
    yield local
    await local.close()


@pytest.fixture
def json_logs():
    """Root logging as ``telemetry.configure_logging(json_output=True)`` sets it up, its
    handler writing to a buffer instead of stderr; returns a reader of the JSON lines
    written so far. Restores logging afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    telemetry.configure_logging(level="INFO", json_output=True)
    (handler,) = root.handlers
    buffer = io.StringIO()
    handler.setStream(buffer)

    def read() -> list[dict]:
        return [json.loads(line) for line in buffer.getvalue().splitlines()]

    yield read
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def thing(subject: str = "cust-1", **data) -> Envelope:
    return Envelope(id=str(uuid.uuid4()), source="/tests/telemetry", type=EVENT_TYPE, subject=subject,
                    time=now_utc(), partitionkey=subject, data={"n": 1, **data})


def traceparent_of(span) -> str:
    context = span.get_span_context()
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


async def consume(bus, sessions, *, group: str, topic: str, handler, until, settings: ConsumerSettings | None = None
                  ) -> ConsumerWorker:
    """Run a consumer worker until ``until()`` holds (bounded), then stop it."""
    worker = ConsumerWorker(bus=bus, spec=ConsumerSpec(group=group, topics=[topic], handler=handler),
                            sessions=sessions, settings=settings or ConsumerSettings())
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        deadline = asyncio.get_running_loop().time() + WITHIN_S
        while not until():
            assert not task.done(), task.exception() if not task.cancelled() else "cancelled"
            assert asyncio.get_running_loop().time() < deadline, "the consumer did not get there in time"
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(task, WITHIN_S)
    return worker


# --- the outbox captures the trace --------------------------------------------------------------

def test_enqueue_inside_a_span_captures_its_traceparent(spans, sessions):
    topic = f"test.telemetry.{uuid.uuid4().hex[:8]}"

    with telemetry.tracer().start_as_current_span("POST /care/v1/cases") as request_span:
        with db.transaction(sessions) as session:
            enqueued = outbox.enqueue(session, thing(), topic=topic)

    assert request_span.get_span_context().is_valid
    assert enqueued.traceparent == traceparent_of(request_span)
    with sessions() as session:
        row = session.exec(select(outbox.OutboxMessage).where(outbox.OutboxMessage.topic == topic)).one()
    assert from_structured(row.envelope).traceparent == traceparent_of(request_span)


def test_enqueue_keeps_a_traceparent_the_event_already_carries_and_adds_none_outside_a_span(spans, sessions):
    carried = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

    with telemetry.tracer().start_as_current_span("consumer of an upstream event"):
        with db.transaction(sessions) as session:
            kept = outbox.enqueue(session, thing().with_traceparent(carried), topic="test.telemetry.kept")
    with db.transaction(sessions) as session:
        untraced = outbox.enqueue(session, thing(), topic="test.telemetry.untraced")

    assert kept.traceparent == carried
    assert untraced.traceparent is None


# --- one trace end to end --------------------------------------------------------------------------

async def test_consumer_continues_the_trace_of_the_request_that_wrote_the_event(spans, sessions, bus, json_logs):
    service, group = f"svc-{uuid.uuid4().hex[:8]}", f"grp-{uuid.uuid4().hex[:8]}"
    topic = f"test.telemetry.{uuid.uuid4().hex[:8]}"
    published_before = sample("socialzone_events_published_total", service=service, type=EVENT_TYPE)
    consumed_before = sample("socialzone_events_consumed_total", group=group, type=EVENT_TYPE, outcome="handled")

    with telemetry.tracer().start_as_current_span("POST /ingest/v1/interactions") as request_span:
        with db.transaction(sessions) as session:
            event = outbox.enqueue(session, thing(), topic=topic)
    request = request_span.get_span_context()

    relay = outbox.Relay(service=service, sessions=sessions, bus=bus)
    assert await relay.publish_pending() == 1

    seen: dict[str, object] = {}
    handled = threading.Event()

    def handler(session, envelope: Envelope) -> None:
        seen["context"] = trace.get_current_span().get_span_context()
        logging.getLogger("socialzone.tests.handler").info("handled %s", envelope.id)
        handled.set()

    await consume(bus, sessions, group=group, topic=topic, handler=handler, until=handled.is_set)

    # The handler ran inside the consumer's span, in the request's trace.
    assert seen["context"].trace_id == request.trace_id
    process = [s for s in spans.get_finished_spans() if s.name == f"process {EVENT_TYPE}"
               and s.attributes.get("messaging.message.id") == event.id]
    assert len(process) == 1, [s.name for s in spans.get_finished_spans()]
    (span,) = process
    assert span.context.trace_id == request.trace_id
    assert span.parent is not None and span.parent.span_id == request.span_id
    assert span.kind == SpanKind.CONSUMER
    assert span.attributes["messaging.destination.name"] == topic
    assert span.attributes["messaging.consumer.group.name"] == group
    assert seen["context"].span_id == span.context.span_id

    # Its log line carries the trace id.
    lines = [line for line in json_logs() if line.get("logger") == "socialzone.tests.handler"]
    assert [line["message"] for line in lines] == [f"handled {event.id}"]
    assert lines[0]["trace_id"] == f"{request.trace_id:032x}"
    assert lines[0]["span_id"] == f"{span.context.span_id:016x}"

    assert sample("socialzone_events_published_total", service=service, type=EVENT_TYPE) == published_before + 1
    assert sample("socialzone_events_consumed_total", group=group, type=EVENT_TYPE,
                  outcome="handled") == consumed_before + 1


async def test_a_batch_handled_in_one_transaction_links_every_events_trace_and_its_events_follow_it(
        spans, sessions, bus):
    group, topic = f"grp-{uuid.uuid4().hex[:8]}", f"test.telemetry.{uuid.uuid4().hex[:8]}"
    requests = []
    for n in range(3):
        with telemetry.tracer().start_as_current_span(f"POST request {n}") as request_span:
            with db.transaction(sessions) as session:
                outbox.enqueue(session, thing(subject=f"cust-{n}"), topic=topic)
        requests.append(request_span.get_span_context())
    assert await outbox.Relay(service="svc", sessions=sessions, bus=bus).publish_pending() == 3

    emitted: list[Envelope] = []

    def batch(session, envelopes: list[Envelope]) -> None:
        for envelope in envelopes:  # what a department writes while handling the batch
            emitted.append(outbox.enqueue(session, thing(subject=envelope.subject), topic=f"{topic}.out"))

    worker = ConsumerWorker(bus=bus, spec=ConsumerSpec(group=group, topics=[topic], handler=lambda s, e: None,
                                                       batch_handler=batch),
                            sessions=sessions, settings=ConsumerSettings())
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    deadline = asyncio.get_running_loop().time() + WITHIN_S
    while len(emitted) < 3 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, WITHIN_S)

    batches = [s for s in spans.get_finished_spans() if s.name == f"process {group} batch"]
    assert len(batches) == 1 and len(emitted) == 3
    (span,) = batches
    assert span.kind == SpanKind.CONSUMER
    assert span.attributes["messaging.batch.message_count"] == 3
    assert {(link.context.trace_id, link.context.span_id) for link in span.links} == \
        {(r.trace_id, r.span_id) for r in requests}
    assert {e.traceparent for e in emitted} == {traceparent_of(span)}


def test_a_batch_links_each_distinct_trace_once(spans):
    """The events of one request share its traceparent: the batch links that trace once."""
    parents = []
    for n in range(2):
        with telemetry.tracer().start_as_current_span(f"POST request {n}"):
            parents.append(telemetry.current_traceparent())
    with telemetry.batch_span("process grp batch", [parents[0]] * 5 + [None, parents[1], parents[0]]) as span:
        pass
    assert [format(link.context.span_id, "016x") for link in span.links] == [p.split("-")[2] for p in parents]


async def test_a_poison_event_is_dead_lettered_counted_and_traced(spans, sessions, bus):
    service, group = f"svc-{uuid.uuid4().hex[:8]}", f"grp-{uuid.uuid4().hex[:8]}"
    topic = f"test.telemetry.{uuid.uuid4().hex[:8]}"
    dlq_before = sample("socialzone_dlq_messages_total", group=group, topic=topic)
    dead_before = sample("socialzone_events_consumed_total", group=group, type=EVENT_TYPE, outcome="dead_lettered")

    with telemetry.tracer().start_as_current_span("POST /care/v1/cases") as request_span:
        with db.transaction(sessions) as session:
            poison = outbox.enqueue(session, thing(poison=True), topic=topic)
            good = outbox.enqueue(session, thing(), topic=topic)
    assert await outbox.Relay(service=service, sessions=sessions, bus=bus).publish_pending() == 2

    attempts, handled = [], threading.Event()

    def handler(session, envelope: Envelope) -> None:
        if envelope.data.get("poison"):
            attempts.append(envelope.id)
            raise ValueError("cannot handle this one")
        handled.set()

    worker = await consume(bus, sessions, group=group, topic=topic, handler=handler, until=handled.is_set,
                           settings=ConsumerSettings(max_attempts=2, retry_backoff_s=0.0, retry_backoff_max_s=0.0))

    assert attempts == [poison.id, poison.id]
    assert worker.state.dead_lettered == 1 and worker.state.handled == 1
    assert sample("socialzone_dlq_messages_total", group=group, topic=topic) == dlq_before + 1
    assert sample("socialzone_events_consumed_total", group=group, type=EVENT_TYPE,
                  outcome="dead_lettered") == dead_before + 1

    failed = [s for s in spans.get_finished_spans() if s.attributes.get("messaging.message.id") == poison.id]
    assert len(failed) == 2
    for span in failed:
        assert span.context.trace_id == request_span.get_span_context().trace_id
        assert [e.name for e in span.events] == ["exception"]
    assert good.traceparent == poison.traceparent

    # The dead letter keeps the event, trace context included, for whoever replays it.
    consumer = bus.consumer(group=f"check-{uuid.uuid4().hex[:8]}", topics=[f"{topic}.dlq"])
    await consumer.start()
    try:
        records = await consumer.poll(timeout=5.0)
    finally:
        await consumer.close()
    assert [r.envelope.id for r in records] == [poison.id]
    assert records[0].envelope.traceparent == poison.traceparent


async def test_a_failed_processing_attempt_marks_its_span_as_an_error(spans, sessions, bus):
    group, topic = f"grp-{uuid.uuid4().hex[:8]}", f"test.telemetry.{uuid.uuid4().hex[:8]}"
    with db.transaction(sessions) as session:
        poison = outbox.enqueue(session, thing(), topic=topic)
    await outbox.Relay(service="svc", sessions=sessions, bus=bus).publish_pending()
    def handler(session, envelope: Envelope) -> None:
        raise ValueError("boom")

    await consume(bus, sessions, group=group, topic=topic, handler=handler,
                  until=lambda: any(s.attributes.get("messaging.message.id") == poison.id
                                    for s in spans.get_finished_spans()),
                  settings=ConsumerSettings(max_attempts=1))

    (span,) = [s for s in spans.get_finished_spans() if s.attributes.get("messaging.message.id") == poison.id]
    assert span.status.status_code == StatusCode.ERROR


# --- logs -----------------------------------------------------------------------------------------

def test_json_log_lines_carry_the_trace_id_of_the_current_span(spans, json_logs):
    log = logging.getLogger("socialzone.tests.logs")

    with telemetry.tracer().start_as_current_span("work") as span:
        log.info("inside")
    log.info("outside")

    by_message = {line["message"]: line for line in json_logs() if line.get("logger") == "socialzone.tests.logs"}
    context = span.get_span_context()
    assert by_message["inside"]["trace_id"] == f"{context.trace_id:032x}"
    assert by_message["inside"]["span_id"] == f"{context.span_id:016x}"
    assert by_message["inside"]["level"] == "INFO"
    assert by_message["outside"]["trace_id"] is None


def test_configure_logging_replaces_the_handlers_instead_of_adding_more(json_logs):
    telemetry.configure_logging(level="WARNING", json_output=True)

    root = logging.getLogger()
    assert len(root.handlers) == 1
    assert root.level == logging.WARNING


# --- HTTP ---------------------------------------------------------------------------------------

async def test_a_request_is_traced_once_as_one_server_span_named_after_its_route(spans, tmp_path):
    from socialzone_common.settings import load_settings
    from socialzone_common.web import build_host_app
    from tests.test_http_platform import serving, widget_spec

    settings = load_settings(data_dir=tmp_path, admin_key="test-admin-key", environment="development",
                             run_relay=False, run_consumers=False)
    host = build_host_app([widget_spec(tmp_path)], settings=settings)
    async with serving(host) as client:
        spans.clear()
        response = await client.post("/widgets/v1/widgets", headers={"Authorization": "Bearer test-admin-key"},
                                     json={"name": "w", "author": {"identifiers": []}})
    assert response.status_code == 201, response.text

    server = [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    # one server span: FastAPI's own telemetry is off beside the OpenTelemetry instrumentation
    assert [s.name for s in server] == ["POST /v1/widgets"], [(s.name, s.kind) for s in spans.get_finished_spans()]
    assert server[0].attributes["http.route"] == "/v1/widgets"
