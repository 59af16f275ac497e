"""Telemetry: OpenTelemetry traces (exported only when an OTLP endpoint is set),
Prometheus metrics for ``/metrics``, and JSON logs carrying the trace id.
"""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import Counter, Gauge, Histogram

_propagator = TraceContextTextMapPropagator()
_configured = False

# --- metrics (process-wide; in the all-in-one process every service shares them) ---

HTTP_REQUESTS = Counter("socialzone_http_requests_total", "HTTP requests handled",
                        ["service", "method", "route", "status"])
HTTP_LATENCY = Histogram("socialzone_http_request_duration_seconds", "HTTP request latency",
                         ["service", "method", "route"],
                         buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
EVENTS_PUBLISHED = Counter("socialzone_events_published_total", "Events the relay published",
                           ["service", "type"])
EVENTS_CONSUMED = Counter("socialzone_events_consumed_total", "Events a consumer group processed",
                          ["group", "type", "outcome"])
CONSUMER_LAG = Gauge("socialzone_consumer_lag", "Messages not yet committed by a group",
                     ["group", "topic"])
DLQ_MESSAGES = Counter("socialzone_dlq_messages_total", "Messages sent to a dead-letter topic",
                       ["group", "topic"])
OUTBOX_BACKLOG = Gauge("socialzone_outbox_backlog", "Outbox rows not yet published", ["service"])
# SQLite has one writer per database file: how long writers waited for their turn and held it
# (a held share near 1 and a growing wait say the database, or the interpreter lock the writers
# need between statements, is the bottleneck)
SQLITE_WRITER_WAIT = Counter("socialzone_sqlite_writer_wait_seconds", "Time writers waited for a SQLite "
                             "database's writer turn", ["database"])
SQLITE_WRITER_HELD = Counter("socialzone_sqlite_writer_held_seconds", "Time a SQLite database's writer turn "
                             "was held", ["database"])


# --- tracing ---

def configure(*, service_name: str, otlp_endpoint: str | None, log_level: str = "INFO",
              log_json: bool = True) -> None:
    """Once per process: tracer provider (+ OTLP exporter when configured) and logging."""
    global _configured
    if _configured:
        return
    _configured = True
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(
            OTLPSpanExporter(endpoint=otlp_endpoint.rstrip("/") + "/v1/traces")))
    trace.set_tracer_provider(provider)
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    HTTPXClientInstrumentor().instrument()
    configure_logging(level=log_level, json_output=log_json)


def tracer() -> trace.Tracer:
    return trace.get_tracer("socialzone")


def current_traceparent() -> str | None:
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


@contextmanager
def continued_span(name: str, traceparent: str | None, **attributes):
    """A span that continues the trace an event carried (W3C traceparent)."""
    parent = _propagator.extract({"traceparent": traceparent}) if traceparent else None
    token = otel_context.attach(parent) if parent is not None else None
    try:
        with tracer().start_as_current_span(name, kind=trace.SpanKind.CONSUMER) as span:
            for key, value in attributes.items():
                span.set_attribute(key, value)
            yield span
    finally:
        if token is not None:
            otel_context.detach(token)


MAX_BATCH_LINKS = 128  # OpenTelemetry's default span link limit: more would be dropped anyway


@contextmanager
def batch_span(name: str, traceparents: list[str | None], **attributes):
    """The span of a batch handled in one transaction: linked to the trace of each event
    it handled (each distinct one once, up to MAX_BATCH_LINKS), as the messaging conventions
    do for batches. The
    events written in the batch continue this span's trace."""
    links = []
    # each distinct trace once: the events of one request or batch share their traceparent
    for traceparent in dict.fromkeys(traceparents):
        if len(links) >= MAX_BATCH_LINKS:
            break
        if traceparent:
            context = trace.get_current_span(_propagator.extract({"traceparent": traceparent})).get_span_context()
            if context.is_valid:
                links.append(trace.Link(context))
    with tracer().start_as_current_span(name, kind=trace.SpanKind.CONSUMER, links=links) as span:
        for key, value in attributes.items():
            span.set_attribute(key, value)
        yield span


# --- logs ---

class _TraceIds(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        record.trace_id = format(context.trace_id, "032x") if context.is_valid else None
        record.span_id = format(context.span_id, "016x") if context.is_valid else None
        return True


def configure_logging(*, level: str = "INFO", json_output: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_TraceIds())
    if json_output:
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(trace_id)s %(span_id)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"}))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
