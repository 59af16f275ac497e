"""``socialzone``: run the platform, one service, its relay or migrations; watch topics."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

app = typer.Typer(help="socialzone: one stream of social impact zone events for every department.",
                  no_args_is_help=True, add_completion=False)
# soft_wrap: a printed path stays on one line even in a narrow or non-terminal stderr (logs).
console = Console(stderr=True, soft_wrap=True)


def _services(names: list[str] | None = None):
    from socialzone_common.service import load_services

    services = load_services()
    if not names:
        return list(services.values())
    unknown = [n for n in names if n not in services]
    if unknown:
        raise typer.BadParameter(f"unknown service {', '.join(unknown)}; known: {', '.join(services)}")
    return [services[n] for n in names]


def _serve(specs, *, relay: bool | None = None, consumers: bool | None = None, children: bool = False) -> None:
    import uvicorn

    from socialzone_common.settings import load_settings
    from socialzone_common.web import build_host_app

    settings = load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.environment != "production" and settings.admin_key is None and not settings.api_keys:
        from socialzone_common.auth import ensure_local_admin_key

        path, created = ensure_local_admin_key(settings)
        console.print(f"[bold]admin API key[/] {'created in' if created else 'in'} {path.resolve()} "
                      f"(use: Authorization: Bearer $(cat {path}))")
    from socialzone_common.service import tune_gc

    tune_gc()
    known = {s.name for s in specs}
    unknown = [name for name in settings.consumer_processes if name not in known] if children else []
    if unknown:
        raise typer.BadParameter(f"SOCIALZONE_CONSUMER_PROCESSES names unknown services {', '.join(unknown)}; "
                                 f"known: {', '.join(sorted(known))}")
    host = build_host_app(specs, settings=settings, relay=relay, consumers=consumers,
                          child_processes=settings.consumer_processes if children else ())
    console.print(f"socialzone on http://{settings.host}:{settings.port} "
                  f"({', '.join('/' + s.name for s in specs)}), data in {settings.data_dir.resolve()}, "
                  f"bus: {settings.bus}")
    uvicorn.run(host, host=settings.host, port=settings.port, log_config=None,
                timeout_graceful_shutdown=10)


@app.command()
def run() -> None:
    """The all-in-one process: every service, consumer and relay (SQLite + local bus by default);
    the consumers of SOCIALZONE_CONSUMER_PROCESSES (identity, care) in a child process each."""
    _serve(_services(), children=True)


@app.command()
def serve(service: str,
          relay: Annotated[bool, typer.Option(help="Also run this service's outbox relay.")] = True) -> None:
    """One service alone, at /<service>, with its consumers (and relay unless --no-relay)."""
    _serve(_services([service]), relay=relay)


@app.command()
def work(service: str,
         consumers_only: Annotated[bool, typer.Option(
             "--consumers-only", help="Only the consumers: one more member of each consumer group, beside the "
                                      "process that runs the relay and background loops.")] = False) -> None:
    """One service's consumers, relay and background loops, without HTTP (what `run` starts for
    each service of SOCIALZONE_CONSUMER_PROCESSES)."""
    from socialzone_common.children import work as run_work
    from socialzone_common.settings import load_settings

    run_work(_services([service])[0], load_settings(), consumers_only=consumers_only)


@app.command()
def relay(service: str) -> None:
    """Only the outbox relay of a service (run one per service database)."""
    from socialzone_common.bus import create_bus
    from socialzone_common.service import ServiceRuntime
    from socialzone_common.settings import load_settings
    from socialzone_common import telemetry

    spec = _services([service])[0]
    settings = load_settings()
    telemetry.configure(service_name=f"socialzone-{service}-relay",
                        otlp_endpoint=settings.otel_exporter_otlp_endpoint, log_level=settings.log_level,
                        log_json=settings.log_json)

    async def main() -> None:
        bus = create_bus(settings)
        await bus.start()
        runtime = ServiceRuntime(spec, bus)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        import signal

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await runtime.relay.run(stop)
        finally:
            await runtime.stop()
            await bus.close()

    asyncio.run(main())


@app.command()
def migrate(services: Annotated[Optional[list[str]], typer.Argument(help="Services (default: all)")] = None) -> None:
    """Apply the Alembic migrations of each service (the platform tables, then its own)."""
    from socialzone_common import db
    from socialzone_common.settings import load_settings

    settings = load_settings()
    for spec in _services(services):
        engine = db.create_db_engine(settings.database_url_for(spec.name),
                                     schema=settings.database_schema_for(spec.name))
        db.run_migrations(engine, spec.migrations)
        engine.dispose()
        console.print(f"{spec.name}: migrated to head")


@app.command()
def catalog(out: Annotated[Path, typer.Option(help="Where to write the documents")] = Path("docs/events")) -> None:
    """Write the JSON Schema of every event type and the AsyncAPI document."""
    from socialzone_common.catalog_docs import write_catalog

    written = write_catalog(out)
    console.print(f"wrote {len(written)} files under {out}")


@app.command()
def tail(topic: str,
         from_beginning: Annotated[bool, typer.Option("--from-beginning", help="Start at the oldest event")] = False,
         type_: Annotated[Optional[list[str]], typer.Option("--type", help="Only these event types")] = None,
         customer: Annotated[Optional[str], typer.Option("--customer", help="Only this customer (subject)")] = None,
         limit: Annotated[Optional[int], typer.Option(help="Stop after this many events")] = None,
         idle_exit: Annotated[Optional[float], typer.Option(help="Stop after this many idle seconds")] = None,
         ) -> None:
    """Watch a topic, pretty-printed, on either bus (nothing is committed for other groups)."""
    from socialzone_common.tail import tail_topic

    asyncio.run(tail_topic(topic, from_beginning=from_beginning, types=set(type_ or ()), customer=customer,
                           limit=limit, idle_exit=idle_exit))


def main() -> None:  # pragma: no cover - console entry
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
