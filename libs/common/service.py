"""How a service plugs into the platform, and the runtime that runs it.

Each service declares a :class:`ServiceSpec` and registers it as a Python entry
point (group ``socialzone.services``). The CLI and the all-in-one process find
services through that registry, never through imports.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from importlib.metadata import entry_points
from pathlib import Path

import httpx
from fastapi import APIRouter
from sqlalchemy import MetaData, event

from socialzone_common import db, telemetry
from socialzone_common.auth import KeyRing
from socialzone_common.bus import Bus
from socialzone_common.outbox import OUTBOX_PENDING_FLAG, Relay, backlog
from socialzone_common.settings import ServiceSettings, load_settings
from socialzone_common.worker import ConsumerSpec, ConsumerStopped, ConsumerWorker

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "socialzone.services"
Background = Callable[["ServiceRuntime", asyncio.Event], Awaitable[None]]


@dataclass(frozen=True)
class ServiceSpec:
    name: str  # URL prefix, database name, consumer group prefix: "care"
    title: str
    description: str
    migrations: Path
    metadata: MetaData
    settings_class: type[ServiceSettings] = ServiceSettings
    routers: Callable[[], Sequence[APIRouter]] = lambda: ()
    # Served at /<service>/webhooks, outside /v1 and its bearer keys: endpoints that other
    # platforms call (Meta, Mastodon), which authenticate each request themselves (signatures).
    webhooks: Callable[[], Sequence[APIRouter]] = lambda: ()
    consumers: Callable[[ServiceRuntime], Sequence[ConsumerSpec]] = lambda runtime: ()
    background: Sequence[Background] = field(default_factory=tuple)
    # Loads what the first requests would otherwise wait for (models, worker processes), in a
    # thread at start; /readyz answers 503 "warming up" until it is done, so a load balancer
    # or Kubernetes sends no traffic to a process that would answer it seconds late.
    warm_up: Callable[[ServiceRuntime], None] | None = None


def tune_gc() -> None:
    """Collect less often: a consumer or request allocates thousands of short-lived dicts
    per batch, and the default thresholds (700, 10, 10) make the cyclic GC rescan them over
    and over (measured: event decoding 2x faster), while the older generations grow with
    what the process keeps (caches, sessions, pools) and each pass over them costs more.
    Measured in the all-in-one process at 1,000 interactions/s for 60 s: with (20,000, 20,
    20) it handled ~780/s (p99 60 s); with these, 870-996/s (p99 6.6-55 s; runs vary a lot
    on this 2-core machine). Objects that live for the whole process are frozen out of
    collection once startup is done."""
    gc.set_threshold(100_000, 200, 100)


def load_services() -> dict[str, ServiceSpec]:
    """Every service registered in the ``socialzone.services`` entry point group."""
    services = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        spec = ep.load()
        services[spec.name] = spec
    return dict(sorted(services.items()))


class ServiceRuntime:
    """A service's database, relay, consumers and background tasks in one process."""

    def __init__(self, spec: ServiceSpec, bus: Bus, settings: ServiceSettings | None = None) -> None:
        self.spec = spec
        if settings is None:
            settings = load_settings(spec.settings_class)
        elif not isinstance(settings, spec.settings_class):
            # The platform's settings given to a service with its own class: keep the
            # values, read the service's own fields from the environment (or defaults).
            settings = load_settings(spec.settings_class, **settings.model_dump())
        self.settings = settings
        self.bus = bus
        self.engine = db.create_db_engine(
            self.settings.database_url_for(spec.name), schema=self.settings.database_schema_for(spec.name),
            sqlite_synchronous=self.settings.sqlite_synchronous)
        self.sessions = db.session_factory(self.engine)
        self.keyring = KeyRing.from_settings(self.settings)
        self.relay = Relay(service=spec.name, sessions=self.sessions, bus=bus,
                           batch_size=self.settings.relay_batch_size,
                           poll_interval_s=self.settings.relay_poll_interval_s,
                           retention=timedelta(hours=self.settings.outbox_retention_hours))
        event.listen(self.sessions, "after_commit", self._after_commit)
        self.workers = [ConsumerWorker(bus=bus, spec=c, sessions=self.sessions, settings=self.settings.consumer,
                                       inbox_retention_days=self.settings.inbox_retention_days)
                        for c in spec.consumers(self)]
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self.warm_up_state = "ok" if spec.warm_up is None else "not started"
        # set by the host when this service's consumers run in child processes (children.py)
        self.children: list = []
        self._http: httpx.AsyncClient | None = None

    def _after_commit(self, session) -> None:
        if session.info.pop(OUTBOX_PENDING_FLAG, False):
            self.relay.wake()

    def migrate(self) -> None:
        db.run_migrations(self.engine, self.spec.migrations)

    async def start(self, *, relay: bool | None = None, consumers: bool | None = None,
                    background: bool | None = None) -> None:
        """Start the warm-up, the relay, the consumers and the background loops (these two with
        the consumers unless ``background`` says otherwise); None: as the settings say."""
        if self.settings.migrate_on_start:
            await asyncio.to_thread(self.migrate)
        if self.spec.warm_up is not None:
            self._tasks.append(asyncio.create_task(self._warm_up(), name=f"{self.spec.name}-warm-up"))
        if self.settings.run_relay if relay is None else relay:
            self._spawn(f"{self.spec.name}-relay", self.relay.run)
        consumers = self.settings.run_consumers if consumers is None else consumers
        background = consumers if background is None else background
        if consumers:
            for worker in self.workers:
                self._spawn(f"{worker.spec.group}-consumer", worker.run)
        if background:
            for task in self.spec.background:
                self._spawn(f"{self.spec.name}-{task.__name__}", lambda stop, t=task: t(self, stop))

    async def _warm_up(self) -> None:
        assert self.spec.warm_up is not None
        self.warm_up_state = "warming up"
        try:
            await asyncio.to_thread(self.spec.warm_up, self)
        except Exception as exc:  # what failed here would fail the requests too: stay not ready
            log.exception("%s: warm-up failed", self.spec.name)
            self.warm_up_state = f"failed: {type(exc).__name__}"
        else:
            self.warm_up_state = "ok"

    def _spawn(self, name: str, run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
        self._tasks.append(asyncio.create_task(self._supervise(name, run), name=name))

    async def _supervise(self, name: str, run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
        """Restart a crashed loop with backoff; a consumer that stopped itself stays stopped."""
        delay = 0.5
        while not self._stop.is_set():
            try:
                await run(self._stop)
                return
            except ConsumerStopped:
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s crashed; restarting in %.1fs", name, delay)
                try:
                    await asyncio.wait_for(self._stop.wait(), delay)
                except asyncio.TimeoutError:
                    pass
                delay = min(delay * 2, 30.0)

    def http_client(self) -> httpx.AsyncClient:
        """The service's client for calls to other services, kept for the runtime's life:
        its connections are reused (a client per call pays a TCP connect, and with TLS a
        handshake, every time). Callers set each request's headers and timeout."""
        if self._http is None or self._http.is_closed:
            self._http = httpx.AsyncClient()
        return self._http

    async def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._tasks:
            done, pending = await asyncio.wait(self._tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._tasks.clear()
        if self._http is not None:
            await self._http.aclose()
        await asyncio.to_thread(self.engine.dispose)

    async def readiness(self) -> dict[str, str]:
        """Each dependency and loop with "ok" or what is wrong."""
        checks: dict[str, str] = {}
        try:
            await asyncio.to_thread(db.ping, self.engine)
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unreachable: {type(exc).__name__}"
        try:
            await asyncio.wait_for(self.bus.ping(), 3.0)
            checks["bus"] = "ok"
        except Exception as exc:
            checks["bus"] = f"unreachable: {type(exc).__name__}"
        if self.spec.warm_up is not None:
            checks["warm_up"] = self.warm_up_state
        if self.children:
            for child in self.children:
                checks.update(child.readiness())
            return checks
        for worker in self.workers:
            reason = worker.state.stopped_reason
            checks[f"consumer:{worker.spec.group}"] = f"stopped: {reason}" if reason else "ok"
        return checks

    def consumer_reports(self) -> list[dict]:
        return [{"group": w.spec.group, "topics": list(w.spec.topics), "running": w.state.running,
                 "handled": w.state.handled, "duplicates": w.state.duplicates,
                 "dead_lettered": w.state.dead_lettered, "stopped_reason": w.state.stopped_reason}
                for w in self.workers]

    def status(self) -> dict:
        with self.sessions() as session:
            pending = backlog(session)
        telemetry.OUTBOX_BACKLOG.labels(service=self.spec.name).set(pending)
        consumers, relay_failures = self.consumer_reports(), self.relay.failures
        if self.children:  # the relay and consumers run there: their reports, with their process ids
            reports = [child.report() or {"pid": None, "relay_failures": 0, "consumers": []} for child in self.children]
            consumers = [dict(c, process=report["pid"]) for report in reports for c in report["consumers"]]
            relay_failures = reports[0]["relay_failures"]  # the first child runs the relay
        return {
            "service": self.spec.name,
            "bus": self.bus.kind,
            "outbox_backlog": pending,
            "relay_failures": relay_failures,
            "consumers": consumers,
        }
