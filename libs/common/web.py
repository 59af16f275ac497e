"""The HTTP side of the platform: each service's FastAPI app, and the host app that
runs one service (``socialzone serve``) or all of them (``socialzone run``).

Every service app has ``/healthz`` (the process), ``/readyz`` (database, bus and
consumers), ``/metrics`` (Prometheus) and its API under ``/v1``; the host mounts
each at ``/<service>`` so a client's URLs are the same in both modes.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Sequence
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import iter_route_contexts
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Receive, Scope, Send

from socialzone_common import telemetry
from socialzone_common.auth import require
from socialzone_common.bus import Bus, create_bus, ensure_catalog_topics
from socialzone_common.children import Child
from socialzone_common.deps import RuntimeDep
from socialzone_common.errors import install_problem_handlers, problem_response
from socialzone_common.idempotency import IdempotencyMiddleware
from socialzone_common.service import ServiceRuntime, ServiceSpec
from socialzone_common.settings import ServiceSettings, load_settings

VERSION = "0.1.0"
log = logging.getLogger(__name__)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class _RequestMetrics:
    """Counts and times requests by route template (not raw path: ids would explode labels)."""

    def __init__(self, app: ASGIApp, *, service: str) -> None:
        self.app, self.service = app, service
        self._templates: dict[int, str] | None = None

    def _template(self, scope: Scope) -> str:
        """The matched route's path with its router prefix: ``/v1/widgets/{widget_id}``.

        ``scope["route"]`` is the route as its router declared it (``/widgets/{widget_id}``);
        FastAPI resolves prefixes of included routers lazily, so map each to its full path once.
        """
        route = scope.get("route")
        if route is None:
            return "unmatched"
        if self._templates is None:
            self._templates = {id(c.original_route): c.path for c in iter_route_contexts(scope["app"].routes)}
        return self._templates.get(id(route)) or getattr(route, "path", "unmatched")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), 500

        async def send_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = self._template(scope)
            # The method is the client's to choose (any token): an unknown one is one label.
            method = scope["method"] if scope["method"] in _METHODS else "other"
            telemetry.HTTP_REQUESTS.labels(self.service, method, route, str(status)).inc()
            telemetry.HTTP_LATENCY.labels(self.service, method, route).observe(
                time.perf_counter() - started)


def _platform_router(service: str) -> APIRouter:
    router = APIRouter(tags=["platform"])

    @router.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> dict:
        return {"status": "ok", "service": service}

    @router.get("/readyz", summary="Readiness: database, bus and consumers", responses={503: {}})
    async def readyz(runtime: RuntimeDep) -> Response:
        checks = await runtime.readiness()
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks},
                            status_code=200 if ready else 503)

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics(runtime: RuntimeDep) -> Response:
        runtime.status()  # refreshes the outbox backlog gauge
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @router.get("/v1/status", summary="Relay backlog and consumer groups of this service",
                dependencies=[require(f"{service}:read")])
    def status(runtime: RuntimeDep) -> dict:
        return runtime.status()

    return router


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(500, "Internal server error", "the server failed; the error is logged",
                            instance=request.url.path)


# FastAPI's own OpenTelemetry support, on by default since 0.16x, would trace every request
# a second time (and every dependency and serialization step as a span of its own) beside
# the OpenTelemetry ASGI instrumentation below, and count requests beside /metrics.
_FASTAPI_TELEMETRY = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}


def build_service_app(runtime: ServiceRuntime) -> FastAPI:
    spec = runtime.spec
    app = FastAPI(title=f"socialzone {spec.title}", description=spec.description, version=VERSION,
                  telemetry=_FASTAPI_TELEMETRY)
    app.state.runtime = runtime
    app.state.keyring = runtime.keyring
    install_problem_handlers(app)
    app.add_exception_handler(Exception, _unexpected)

    app.include_router(_platform_router(spec.name))
    for router in spec.routers():
        app.include_router(router, prefix="/v1")
    for router in spec.webhooks():
        app.include_router(router, prefix="/webhooks")
    app.add_middleware(IdempotencyMiddleware, sessions=runtime.sessions)
    app.add_middleware(_RequestMetrics, service=spec.name)
    FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,readyz,metrics")
    return app


def build_host_app(specs: Sequence[ServiceSpec], *, settings: ServiceSettings | None = None,
                   bus: Bus | None = None, relay: bool | None = None, consumers: bool | None = None,
                   service_settings: dict[str, ServiceSettings] | None = None,
                   child_processes: Sequence[str] = ()) -> FastAPI:
    """One process hosting ``specs``, each mounted at ``/<name>``, sharing one bus. The
    consumers, relay and background loops of the services in ``child_processes`` run in a
    child process each (children.py) instead, their APIs staying here; a service named
    more than once gets as many consumer processes (the others consumers only)."""
    settings = settings or load_settings()
    telemetry.configure(service_name="socialzone" if len(specs) > 1 else f"socialzone-{specs[0].name}",
                        otlp_endpoint=settings.otel_exporter_otlp_endpoint,
                        log_level=settings.log_level, log_json=settings.log_json)
    bus = bus or create_bus(settings)
    service_settings = service_settings or {}
    # Each service reads its own settings class; the host's values (environment or
    # what the caller passed) are the base, the service's own fields come on top.
    runtimes = [ServiceRuntime(spec, bus, service_settings.get(spec.name)
                               or load_settings(spec.settings_class, **settings.model_dump()))
                for spec in specs]
    for runtime in runtimes:
        # a service named n times: n children, the first with the relay and background loops
        runtime.children = [Child(runtime.spec.name, runtime.settings.data_dir, member)
                            for member in range(list(child_processes).count(runtime.spec.name))]

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Relays, consumers and background loops all block in threads (database, local
        # bus): asyncio's default pool (cores + 4 threads) starves them in one process.
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=settings.worker_threads, thread_name_prefix="socialzone"))
        await bus.start()
        await ensure_catalog_topics(bus, settings)
        started = []
        stop_children = asyncio.Event()
        watching: list[asyncio.Task] = []
        try:
            for runtime in runtimes:
                if runtime.children:
                    await runtime.start(relay=False, consumers=False)
                else:
                    await runtime.start(relay=relay, consumers=consumers)
                started.append(runtime)
            # after every migration ran here: a child's start finds its database at head
            watching = [asyncio.create_task(child.supervise(stop_children), name=f"{r.spec.name}-child{child.suffix}")
                        for r in runtimes for child in r.children]
            gc.freeze()  # what start-up built lives as long as the process: stop rescanning it
            yield
        finally:
            stop_children.set()
            await asyncio.gather(*watching, return_exceptions=True)
            await asyncio.gather(*(asyncio.to_thread(child.stop, 10.0) for r in runtimes for child in r.children))
            for runtime in reversed(started):
                await runtime.stop()
            await bus.close()

    host = FastAPI(title="socialzone", version=VERSION, lifespan=lifespan, docs_url=None, redoc_url=None,
                   telemetry=_FASTAPI_TELEMETRY)
    install_problem_handlers(host)  # e.g. a 404 for a path outside every service
    host.add_exception_handler(Exception, _unexpected)  # the host's own routes (/readyz, /asyncapi.json)
    host.state.runtimes = {r.spec.name: r for r in runtimes}
    host.state.bus = bus

    @host.get("/", include_in_schema=False)
    async def index() -> dict:
        return {"services": {r.spec.name: {"title": r.spec.title, "docs": f"/{r.spec.name}/docs",
                                           "health": f"/{r.spec.name}/healthz"} for r in runtimes},
                "asyncapi": "/asyncapi.json"}

    @host.get("/healthz", include_in_schema=False)
    async def healthz() -> dict:
        return {"status": "ok"}

    @host.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        checks = {r.spec.name: await r.readiness() for r in runtimes}
        ready = all(v == "ok" for c in checks.values() for v in c.values())
        return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks},
                            status_code=200 if ready else 503)

    @host.get("/asyncapi.json", include_in_schema=False)
    async def asyncapi() -> dict:
        from socialzone_common.catalog_docs import asyncapi_document

        return asyncapi_document()

    for runtime in runtimes:
        host.mount(f"/{runtime.spec.name}", build_service_app(runtime))
    return host
