"""Child processes of the all-in-one process: a service's consumers, relay and background
loops in a process of its own (``socialzone work <service>``), its HTTP API staying in the
main process, which starts, watches and stops the child.

A service named more than once in ``SOCIALZONE_CONSUMER_PROCESSES`` gets more children: the
first runs everything above, each other one only the consumers (``--consumers-only``: one
more member of each of the service's consumer groups, which deal their partitions over
their members).

Each child writes what its consumers report (the ``/v1/status`` consumer entries) to
``<data_dir>/run/<service>.json`` (``<service>.<n>.json`` for the n-th extra member) every
second; the main process reads it for ``/readyz`` and ``/v1/status``. A child that dies is
started again (backoff up to 30 s): what it had not committed is delivered again, as after
any crash. A child whose main process died (``kill -9``) stops by itself within a second.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson

from socialzone_common.settings import ServiceSettings

log = logging.getLogger(__name__)

REPORT_EVERY_S = 1.0
STALE_AFTER_S = 10.0  # a report older than this: the child is hung
PARENT_ENV = "SOCIALZONE_WORK_PARENT_PID"
REPORT_ENV = "SOCIALZONE_WORK_REPORT"


def report_path(data_dir: Path, service: str, member: int = 0) -> Path:
    return data_dir / "run" / (f"{service}.json" if member == 0 else f"{service}.{member}.json")


class Child:
    """One of a service's ``socialzone work`` processes, seen from the main process: member 0
    runs the consumers, relay and background loops; another member only the consumers."""

    def __init__(self, service: str, data_dir: Path, member: int = 0) -> None:
        self.service, self.member = service, member
        self.report_file = report_path(data_dir, service, member)
        self.process: subprocess.Popen | None = None
        self.started_at = 0.0
        # the readiness checks of member n > 0 carry its number (consumer_process.1, ...)
        self.suffix = "" if member == 0 else f".{member}"

    def start(self) -> None:
        self.report_file.unlink(missing_ok=True)
        self.started_at = time.monotonic()
        env = dict(os.environ, **{PARENT_ENV: str(os.getpid()), REPORT_ENV: str(self.report_file)})
        command = [sys.executable, "-m", "socialzone_common.cli", "work", self.service]
        if self.member:
            command.append("--consumers-only")
        # the same interpreter and environment; its log lines go where the main process's go
        self.process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)
        log.info("%s: %s in process %d", self.service,
                 "one more member of its consumer groups" if self.member else "consumers, relay and background loops",
                 self.process.pid)

    async def supervise(self, stop: asyncio.Event) -> None:
        """Keep the child running until ``stop``; a child that exits is started again, after
        0.5 s, doubling up to 30 s while it keeps dying within a minute of its start."""
        delay, started = 0.25, time.monotonic()
        while not stop.is_set():
            if self.process is None or self.process.poll() is not None:
                if self.process is not None:
                    delay = 0.5 if time.monotonic() - started > 60 else min(30.0, delay * 2)
                    log.error("%s: its process %d exited with %s; starting it again in %.1fs", self.service,
                              self.process.pid, self.process.returncode, delay)
                    if await _stopped_within(stop, delay):
                        return
                started = time.monotonic()
                self.start()
            await _stopped_within(stop, 0.5)

    def stop(self, timeout: float) -> None:
        """SIGTERM (the child stops its loops and commits what it handled), SIGKILL after ``timeout``."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.error("%s: process %d did not stop within %.0fs; killed", self.service, process.pid, timeout)
            process.kill()
            process.wait()

    def report(self) -> dict | None:
        """The child's last report, if it is from the running process and fresh."""
        if self.process is None or self.process.poll() is not None:
            return None
        try:
            report = orjson.loads(self.report_file.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        if report.get("pid") != self.process.pid or time.time() - report.get("at", 0) > STALE_AFTER_S:
            return None
        return report

    def readiness(self) -> dict[str, str]:
        key = "consumer_process" + self.suffix
        if self.process is not None and self.process.poll() is not None:
            return {key: f"exited with {self.process.returncode}; restarting"}
        report = self.report()
        if report is None:
            if self.process is None:
                return {key: "not started"}
            starting = time.monotonic() - self.started_at < STALE_AFTER_S
            return {key: "starting" if starting else f"process {self.process.pid} is not reporting"}
        checks = {key: "ok"}
        for consumer in report["consumers"]:
            reason = consumer["stopped_reason"]
            checks[f"consumer:{consumer['group']}{self.suffix}"] = f"stopped: {reason}" if reason else "ok"
        return checks


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
        return True
    except asyncio.TimeoutError:
        return False


# --- the child's side -------------------------------------------------------------------------------

def work(spec, settings: ServiceSettings, *, consumers_only: bool = False) -> None:
    """Run ``spec``'s consumers, relay and background loops until SIGTERM/SIGINT (or until the
    main process that started it is gone). ``consumers_only``: only the consumers, as one more
    member of each group (the groups deal their partitions over every live member); the
    relay and the background loops run once, in the service's other process."""
    from socialzone_common import telemetry
    from socialzone_common.service import tune_gc

    telemetry.configure(service_name=f"socialzone-{spec.name}-work", otlp_endpoint=settings.otel_exporter_otlp_endpoint,
                        log_level=settings.log_level, log_json=settings.log_json)
    tune_gc()
    asyncio.run(_work(spec, settings, consumers_only))


async def _work(spec, settings: ServiceSettings, consumers_only: bool) -> None:
    from socialzone_common.bus import create_bus, ensure_catalog_topics
    from socialzone_common.service import ServiceRuntime
    from socialzone_common.settings import load_settings

    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=settings.worker_threads,
                                                 thread_name_prefix=f"socialzone-{spec.name}"))
    stop = asyncio.Event()
    parent = int(os.environ.get(PARENT_ENV, "0")) or None
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    # Ctrl-C in a terminal reaches the whole process group: a child of `socialzone run` leaves
    # the stopping to its main process (SIGTERM), which would otherwise start it again
    loop.add_signal_handler(signal.SIGINT, (lambda: None) if parent is not None else stop.set)
    bus = create_bus(settings)
    await bus.start()
    await ensure_catalog_topics(bus, settings)
    runtime = ServiceRuntime(spec, bus, load_settings(spec.settings_class, **settings.model_dump()))
    # the report is what `socialzone run` reads of its child (it names the file); one more
    # member started by hand writes none
    path = Path(os.environ[REPORT_ENV]) if os.environ.get(REPORT_ENV) else (
        None if consumers_only else report_path(settings.data_dir, spec.name))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        await runtime.start(relay=not consumers_only, consumers=True, background=not consumers_only)
        gc.freeze()
        while not stop.is_set():
            if path is not None:
                _write_report(path, runtime)
            if parent is not None and os.getppid() != parent:
                log.warning("%s: the main process %d is gone; stopping", spec.name, parent)
                break
            await _stopped_within(stop, REPORT_EVERY_S)
    finally:
        await runtime.stop()
        await bus.close()
        if path is not None:
            path.unlink(missing_ok=True)


def _write_report(path: Path, runtime) -> None:
    report = {"pid": os.getpid(), "at": time.time(), "relay_failures": runtime.relay.failures,
              "consumers": runtime.consumer_reports()}
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(orjson.dumps(report))
    temporary.replace(path)  # readers never see half a report
