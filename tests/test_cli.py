"""The ``socialzone`` command as an operator or an analyst uses it: the real process,
started as a subprocess on a throw-away data folder and a free loopback port."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from socialzone_common import db, outbox
from socialzone_common.bus import OutgoingMessage
from socialzone_common.bus.local import LocalBus
from socialzone_common.envelope import Envelope, now_utc
from socialzone_common.settings import LocalBusSettings

SOCIALZONE = str(Path(sys.executable).parent / "socialzone")
SERVICES = ["ingest", "identity", "care", "marketing", "sales", "insights"]
PLATFORM_TABLES = {"outbox", "inbox", "idempotency_keys", "platform_alembic_version"}
READY_WITHIN_S = 60.0
STOP_WITHIN_S = 10.0
KEPT_TOPIC = "test.cli.kept"  # no service consumes it


# --- helpers -----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without any SOCIALZONE_* setting, plus ours."""
    # No COLUMNS: output goes to files, as in a container's log (80 columns for rich).
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SOCIALZONE_", "OTEL_")) and k not in ("COLUMNS", "LINES")}
    env.update(SOCIALZONE_DATA_DIR=str(data_dir), SOCIALZONE_LOG_JSON="false", SOCIALZONE_HOST="127.0.0.1",
               SOCIALZONE_SECRETS_DIR=str(data_dir / "no-secrets"), PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str], timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run([SOCIALZONE, *args], env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


class Server:
    """A ``socialzone run`` / ``serve`` process, its output in files (a full pipe would block it)."""

    def __init__(self, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.port = int(env.get("SOCIALZONE_PORT", 0))
        self.base = f"http://127.0.0.1:{self.port}"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = log_dir / "stdout.log"
        self.stderr_path = log_dir / "stderr.log"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            # Own session: a Ctrl-C in the terminal running pytest is not delivered to it too.
            self.proc = subprocess.Popen([SOCIALZONE, *args], env=env, stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL, start_new_session=True)

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def output(self) -> str:
        return f"--- stdout\n{self.stdout_path.read_text(errors='replace')}\n--- stderr\n{self.stderr}"

    def wait_ready(self, path: str = "/readyz") -> httpx.Response:
        deadline = time.monotonic() + READY_WITHIN_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"socialzone exited with {self.proc.returncode} before it was ready\n{self.output()}")
            try:
                response = httpx.get(self.base + path, timeout=2.0)
                if response.status_code == 200:
                    return response
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        pytest.fail(f"{self.base}{path} not ready within {READY_WITHIN_S:.0f}s\n{self.output()}")

    def get(self, path: str, key: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        return httpx.get(self.base + path, headers=headers, timeout=10.0)

    def interrupt(self) -> tuple[int, float]:
        """Ctrl-C; return the exit code and how long stopping took."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout=STOP_WITHIN_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"socialzone did not stop within {STOP_WITHIN_S:.0f}s of SIGINT\n{self.output()}")
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@contextmanager
def server(args: list[str], env: dict[str, str], log_dir: Path):
    srv = Server(args, env, log_dir)
    try:
        yield srv
    finally:
        srv.kill()


def intact_tables(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok", f"{path} is damaged"
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()


def envelope(event_id: str, *, type_: str, subject: str, **data) -> Envelope:
    return Envelope(id=event_id, source="/tests/cli", type=type_, subject=subject, time=now_utc(),
                    partitionkey=subject, data={"marker": event_id, **data})


def publish(data_dir: Path, topic: str, envelopes: list[Envelope]) -> None:
    """Append straight to the data folder's local bus, as a service's relay would."""
    async def main() -> None:
        bus = LocalBus(LocalBusSettings(), data_dir / "bus.db")
        await bus.start()
        try:
            await bus.publish([OutgoingMessage(topic, e) for e in envelopes])
        finally:
            await bus.close()

    asyncio.run(main())


def shown_ids(output: str, ids: list[str]) -> list[str]:
    return [event_id for event_id in ids if event_id in output]


# --- the command itself ------------------------------------------------------------------------

def test_help_lists_every_command(tmp_path):
    result = run_cli("--help", env=cli_env(tmp_path))

    assert result.returncode == 0, result.stderr
    for command in ["run", "serve", "relay", "migrate", "catalog", "tail"]:
        assert re.search(rf"^\W*{command}\s{{2,}}\S", result.stdout, re.M), f"{command} missing:\n{result.stdout}"


# --- the all-in-one process --------------------------------------------------------------------

def test_all_in_one_process_serves_every_service_stops_on_ctrl_c_and_keeps_its_data(tmp_path):
    data_dir = tmp_path / "data"
    env = cli_env(data_dir, SOCIALZONE_PORT=str(free_port()))
    key_file = data_dir / "admin.key"

    # First start: a fresh data folder.
    with server(["run"], env, tmp_path / "first") as srv:
        ready = srv.wait_ready()
        assert ready.json()["status"] == "ready"
        assert set(ready.json()["checks"]) == set(SERVICES)

        for name in SERVICES:
            response = srv.get(f"/{name}/healthz")
            assert response.status_code == 200, (name, response.text)
            assert response.json() == {"status": "ok", "service": name}

        assert key_file.is_file()
        assert key_file.stat().st_mode & 0o077 == 0, "the admin key is readable by others"
        admin_key = key_file.read_text().strip()
        assert len(admin_key) >= 32
        assert f"created in {key_file.resolve()}" in srv.stderr, srv.output()
        assert admin_key not in srv.output(), "the key itself must not be printed"

        assert srv.get("/care/v1/status").status_code == 401
        assert srv.get("/care/v1/status", key="not-the-key").status_code == 401
        status = srv.get("/care/v1/status", key=admin_key)
        assert status.status_code == 200, status.text
        assert status.json()["service"] == "care"

        code, took = srv.interrupt()
        assert code == 0, srv.output()
        assert took < STOP_WITHIN_S
        assert "Application shutdown complete" in srv.stderr

    for name in SERVICES:
        assert PLATFORM_TABLES <= intact_tables(data_dir / f"{name}.db"), name
    intact_tables(data_dir / "bus.db")  # intact

    # While it is down, care commits an event to its outbox (state kept in care.db).
    kept = envelope(f"evt-kept-{uuid.uuid4().hex[:8]}", type_="test.thing.happened", subject="cust-kept")
    engine = db.create_db_engine(f"sqlite:///{data_dir / 'care.db'}")
    try:
        with db.transaction(db.session_factory(engine)) as session:
            outbox.enqueue(session, kept, topic=KEPT_TOPIC)
    finally:
        engine.dispose()

    # Second start on the same folder: the same key, nothing created anew, care's relay
    # publishes what its database kept.
    with server(["run"], env, tmp_path / "second") as srv:
        srv.wait_ready()
        assert key_file.read_text().strip() == admin_key
        assert _wait_for_event(data_dir, KEPT_TOPIC, kept.id), f"{kept.id} never published\n{srv.output()}"
        assert srv.get("/care/v1/status", key=admin_key).status_code == 200
        assert srv.get("/identity/v1/status", key=admin_key).status_code == 200
        assert "created in" not in srv.stderr and f"in {key_file.resolve()}" in srv.stderr, srv.output()
        code, _ = srv.interrupt()
        assert code == 0, srv.output()

    # Third start with SOCIALZONE_ADMIN_KEY: that key, not the file's, is the admin key.
    env_key = f"env-admin-{uuid.uuid4().hex}"
    with server(["run"], {**env, "SOCIALZONE_ADMIN_KEY": env_key}, tmp_path / "third") as srv:
        srv.wait_ready()
        assert srv.get("/care/v1/status", key=env_key).status_code == 200
        assert srv.get("/care/v1/status", key=admin_key).status_code == 401
        assert "admin API key" not in srv.stderr
        code, _ = srv.interrupt()
        assert code == 0, srv.output()
    assert key_file.read_text().strip() == admin_key


def test_serve_runs_one_service_alone(tmp_path):
    data_dir = tmp_path / "data"
    env = cli_env(data_dir, SOCIALZONE_PORT=str(free_port()))

    with server(["serve", "care"], env, tmp_path / "serve") as srv:
        ready = srv.wait_ready()
        assert set(ready.json()["checks"]) == {"care"}
        response = srv.get("/care/healthz")
        assert response.status_code == 200
        assert response.json()["service"] == "care"
        assert srv.get("/identity/healthz").status_code == 404
        code, _ = srv.interrupt()
        assert code == 0, srv.output()

    assert (data_dir / "care.db").is_file()
    assert not (data_dir / "identity.db").exists()


def test_serve_refuses_an_unknown_service(tmp_path):
    result = run_cli("serve", "billing", env=cli_env(tmp_path / "data", SOCIALZONE_PORT=str(free_port())))

    assert result.returncode == 2
    assert "unknown service billing" in result.stderr
    assert not (tmp_path / "data").exists()


# --- relay -------------------------------------------------------------------------------------

def test_relay_publishes_what_the_service_committed_and_stops_on_ctrl_c(tmp_path):
    data_dir = tmp_path / "data"
    env = cli_env(data_dir)
    assert run_cli("migrate", "care", env=env).returncode == 0
    committed = envelope(f"evt-relayed-{uuid.uuid4().hex[:8]}", type_="test.thing.happened", subject="cust-r")
    engine = db.create_db_engine(f"sqlite:///{data_dir / 'care.db'}")
    try:
        with db.transaction(db.session_factory(engine)) as session:
            outbox.enqueue(session, committed, topic=KEPT_TOPIC)
    finally:
        engine.dispose()

    with server(["relay", "care"], env, tmp_path / "relay") as relay:
        assert _wait_for_event(data_dir, KEPT_TOPIC, committed.id, within_s=READY_WITHIN_S), relay.output()
        code, _ = relay.interrupt()
        assert code == 0, relay.output()

    conn = sqlite3.connect(data_dir / "care.db")
    try:
        assert conn.execute("SELECT count(*) FROM outbox WHERE published_at IS NULL").fetchone()[0] == 0
    finally:
        conn.close()


# --- migrate ------------------------------------------------------------------------------------

def test_migrate_creates_every_service_database_with_the_platform_tables(tmp_path):
    data_dir = tmp_path / "data"
    env = cli_env(data_dir)

    result = run_cli("migrate", env=env)

    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in data_dir.glob("*.db")) == sorted(f"{n}.db" for n in SERVICES)
    for name in SERVICES:
        assert PLATFORM_TABLES | {"alembic_version"} <= intact_tables(data_dir / f"{name}.db"), name
        assert f"{name}: migrated to head" in result.stderr


def test_migrate_named_services_only(tmp_path):
    data_dir = tmp_path / "data"

    result = run_cli("migrate", "sales", "identity", env=cli_env(data_dir))

    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in data_dir.glob("*.db")) == ["identity.db", "sales.db"]


# --- tail ---------------------------------------------------------------------------------------

@pytest.fixture
def zone_with_events(tmp_path):
    """A data folder whose bus holds four care events of two customers."""
    data_dir = tmp_path / "data"
    topic = "zone.care"
    events = [
        envelope("evt-opened-ann", type_="care.case.opened", subject="cust-ann"),
        envelope("evt-opened-bob", type_="care.case.opened", subject="cust-bob"),
        envelope("evt-resolved-ann", type_="care.case.resolved", subject="cust-ann"),
        envelope("evt-csat-bob", type_="care.csat.recorded", subject="cust-bob"),
    ]
    publish(data_dir, topic, events)
    publish(data_dir, "zone.sales", [envelope("evt-other-topic", type_="sales.lead.created", subject="cust-ann")])
    return data_dir, topic, [e.id for e in events]


def test_tail_from_beginning_prints_the_topic_events(zone_with_events):
    data_dir, topic, ids = zone_with_events

    result = run_cli("tail", topic, "--from-beginning", "--limit", "4", "--idle-exit", "10",
                     env=cli_env(data_dir), timeout=30)

    assert result.returncode == 0, result.stderr
    assert shown_ids(result.stdout, ids) == ids
    assert "evt-other-topic" not in result.stdout
    assert "care.case.opened" in result.stdout and "subject=cust-bob" in result.stdout


def test_tail_stops_at_the_limit(zone_with_events):
    data_dir, topic, ids = zone_with_events

    result = run_cli("tail", topic, "--from-beginning", "--limit", "2", "--idle-exit", "10",
                     env=cli_env(data_dir), timeout=30)

    assert result.returncode == 0, result.stderr
    assert len(shown_ids(result.stdout, ids)) == 2


def test_tail_filters_by_type_and_customer(zone_with_events):
    data_dir, topic, _ = zone_with_events
    env = cli_env(data_dir)

    by_type = run_cli("tail", topic, "--from-beginning", "--type", "care.case.opened", "--idle-exit", "1",
                      env=env, timeout=30)
    by_customer = run_cli("tail", topic, "--from-beginning", "--customer", "cust-ann", "--idle-exit", "1",
                          env=env, timeout=30)
    both = run_cli("tail", topic, "--from-beginning", "--type", "care.case.opened", "--type",
                   "care.csat.recorded", "--customer", "cust-bob", "--idle-exit", "1", env=env, timeout=30)

    for result in (by_type, by_customer, both):
        assert result.returncode == 0, result.stderr
    all_ids = ["evt-opened-ann", "evt-opened-bob", "evt-resolved-ann", "evt-csat-bob"]
    assert shown_ids(by_type.stdout, all_ids) == ["evt-opened-ann", "evt-opened-bob"]
    assert shown_ids(by_customer.stdout, all_ids) == ["evt-opened-ann", "evt-resolved-ann"]
    assert shown_ids(both.stdout, all_ids) == ["evt-opened-bob", "evt-csat-bob"]


def test_tail_without_from_beginning_shows_only_new_events(zone_with_events):
    data_dir, topic, ids = zone_with_events
    env = cli_env(data_dir)

    old_only = run_cli("tail", topic, "--idle-exit", "1", env=env, timeout=30)
    assert old_only.returncode == 0, old_only.stderr
    assert shown_ids(old_only.stdout, ids) == []

    # A live tail prints what is appended after it started: keep appending until it has.
    proc = subprocess.Popen([SOCIALZONE, "tail", topic, "--limit", "1", "--idle-exit", "30"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        new = 0
        while proc.poll() is None:
            assert time.monotonic() < deadline, "the live tail printed nothing new"
            new += 1
            publish(data_dir, topic, [envelope(f"evt-new-{new}", type_="care.case.reopened", subject="cust-ann")])
            time.sleep(0.3)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert len(set(re.findall(r"evt-new-\d+", out))) == 1, out
    assert shown_ids(out, ids) == []


def read_topic(data_dir: Path, topic: str) -> list[Envelope]:
    """Every event on a topic of the data folder's local bus (a throw-away group)."""
    async def main() -> list[Envelope]:
        bus = LocalBus(LocalBusSettings(), data_dir / "bus.db")
        await bus.start()
        consumer = bus.consumer(group=f"test-read-{uuid.uuid4().hex[:8]}", topics=[topic])
        await consumer.start()
        try:
            found = []
            while records := await consumer.poll(timeout=0.2):
                found += [r.envelope for r in records]
            return found
        finally:
            await consumer.close()
            await bus.close()

    return asyncio.run(main())


def _wait_for_event(data_dir: Path, topic: str, event_id: str, within_s: float = 20.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        # Never create the bus file before the process does.
        if (data_dir / "bus.db").exists() and event_id in {e.id for e in read_topic(data_dir, topic)}:
            return True
        time.sleep(0.2)
    return False


# --- catalog ------------------------------------------------------------------------------------

def test_catalog_writes_the_asyncapi_document_and_the_schemas(tmp_path):
    from socialzone_common.catalog import TOPICS, load_catalog

    out = tmp_path / "events"

    result = run_cli("catalog", "--out", str(out), env=cli_env(tmp_path / "data"))

    assert result.returncode == 0, result.stderr
    document = json.loads((out / "asyncapi.json").read_text())
    assert document["asyncapi"].startswith("3.")
    addresses = {channel.get("address", name) for name, channel in document["channels"].items()}
    assert set(TOPICS) <= addresses
    schemas = sorted((out / "schemas").glob("*.json"))
    assert len(schemas) == len(load_catalog()) > 0
    for path in schemas:
        assert isinstance(json.loads(path.read_text()), dict), path.name
    assert f"wrote {len(schemas) + 1} files" in result.stderr


# --- the all-in-one process's children (SOCIALZONE_CONSUMER_PROCESSES) -------------------------------

def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a child that exited but was not reaped yet is a zombie: gone for this purpose
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (Linux /proc)."""
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                children = {int(c) for c in (task / "children").read_text().split()}
            except OSError:
                continue
            todo.extend(children - found)
            found |= children
    return found


def _child_pid(srv: Server, service: str, key: str, other_than: int | None = None) -> int:
    """The process running ``service``'s consumers, once it reports (and is not ``other_than``)."""
    deadline = time.monotonic() + READY_WITHIN_S
    while time.monotonic() < deadline:
        consumers = srv.get(f"/{service}/v1/status", key=key).json()["consumers"]
        pids = {c["process"] for c in consumers}
        if consumers and len(pids) == 1 and None not in pids and pids != {other_than}:
            return pids.pop()
        time.sleep(0.2)
    pytest.fail(f"{service}'s consumer process never reported\n{srv.output()}")


def _post_and_wait_attributed(srv: Server, key: str, author: str) -> dict:
    item = {"source": "x", "kind": "post", "external_id": f"child-{author}", "occurred_at": "2026-11-20T09:30:00Z",
            "author": {"identifiers": [{"type": "x", "value": author}]}, "text": "my order never arrived"}
    response = httpx.post(f"{srv.base}/ingest/v1/interactions", json=item,
                          headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert response.status_code == 202, response.text
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = srv.get(f"/identity/v1/customers?identifier=x:{author}", key=key).json()["items"]
        if found:
            return found[0]
        time.sleep(0.2)
    pytest.fail(f"x:{author} never attributed\n{srv.output()}")


@contextmanager
def all_in_one(tmp_path: Path, **extra: str):
    """``socialzone run`` on a fresh data folder, ready; yields it, its admin key and its environment."""
    key = f"admin-{uuid.uuid4().hex}"
    env = cli_env(tmp_path / "data", SOCIALZONE_PORT=str(free_port()), SOCIALZONE_ADMIN_KEY=key, **extra)
    with server(["run"], env, tmp_path / "logs") as srv:
        yield srv, key, env


def test_all_in_one_runs_identity_and_care_consumers_in_child_processes_and_restarts_a_dead_one(tmp_path):
    with all_in_one(tmp_path) as (srv, key, _):
        ready = srv.wait_ready()
        assert ready.json()["checks"]["identity"]["consumer_process"] == "ok"
        assert ready.json()["checks"]["care"]["consumer:care-interactions"] == "ok"
        identity, care = _child_pid(srv, "identity", key), _child_pid(srv, "care", key)
        assert len({identity, care, srv.proc.pid}) == 3  # each its own process
        ingest = srv.get("/ingest/v1/status", key=key).json()["consumers"]
        assert ingest and all("process" not in c for c in ingest)  # in the main process
        _post_and_wait_attributed(srv, key, "4101")  # through the identity child

        os.kill(identity, signal.SIGKILL)  # the main process starts it again
        again = _child_pid(srv, "identity", key, other_than=identity)
        assert not _alive(identity) and _alive(again)
        assert srv.wait_ready().json()["checks"]["identity"]["consumer_process"] == "ok"
        _post_and_wait_attributed(srv, key, "4102")
        assert "exited with -9; starting it again" in srv.stderr, srv.output()

        code, took = srv.interrupt()
        assert code == 0 and took < STOP_WITHIN_S, srv.output()
    assert not _alive(again) and not _alive(care)


def test_the_children_stop_by_themselves_when_the_main_process_is_killed(tmp_path):
    with all_in_one(tmp_path) as (srv, key, _):
        srv.wait_ready()
        children = [_child_pid(srv, "identity", key), _child_pid(srv, "care", key)]
        # and ingest's enrichment workers (started by the warm-up, before ready)
        everything = _descendants(srv.proc.pid)
        assert len(everything) > len(children), everything
        srv.kill()  # SIGKILL: no shutdown runs in the main process
        deadline = time.monotonic() + 15
        while any(_alive(pid) for pid in everything) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [pid for pid in everything if _alive(pid)], srv.output()


def test_a_service_named_twice_gets_a_second_consumer_process_that_shares_its_groups(tmp_path):
    """``["identity", "identity", "care"]``: attribution in two processes, each reporting its
    members; the second runs the consumers only, and a dead one is started again."""
    with all_in_one(tmp_path, SOCIALZONE_CONSUMER_PROCESSES='["identity", "identity", "care"]') as (srv, key, _):
        deadline = time.monotonic() + READY_WITHIN_S
        while time.monotonic() < deadline:
            checks = srv.wait_ready().json()["checks"]["identity"]
            consumers = srv.get("/identity/v1/status", key=key).json()["consumers"]
            if checks.get("consumer_process.1") == "ok" and len({c["process"] for c in consumers}) == 2:
                break
            time.sleep(0.2)
        assert checks["consumer_process"] == checks["consumer_process.1"] == "ok", srv.output()
        assert checks["consumer:identity-resolution.1"] == "ok"
        by_process: dict[int, set[str]] = {}
        for consumer in consumers:
            by_process.setdefault(consumer["process"], set()).add(consumer["group"])
        assert len(by_process) == 2 and None not in by_process
        assert all("identity-resolution" in groups for groups in by_process.values())
        first, second = by_process  # the status lists the first child's consumers first
        assert second in _descendants(srv.proc.pid) and first in _descendants(srv.proc.pid)

        for author in ("4301", "4302", "4303", "4304"):
            _post_and_wait_attributed(srv, key, author)
        assert "one more member of its consumer groups in process" in srv.stderr, srv.output()

        os.kill(second, signal.SIGKILL)  # the main process starts the extra member again
        deadline = time.monotonic() + READY_WITHIN_S
        while time.monotonic() < deadline:
            pids = {c["process"] for c in srv.get("/identity/v1/status", key=key).json()["consumers"]}
            if len(pids) == 2 and second not in pids and None not in pids:
                break
            time.sleep(0.2)
        assert len(pids) == 2 and second not in pids and first in pids, srv.output()
        _post_and_wait_attributed(srv, key, "4305")
        code, _took = srv.interrupt()
        assert code == 0, srv.output()


def test_all_in_one_in_one_process_when_asked_and_unknown_services_are_refused(tmp_path):
    with all_in_one(tmp_path, SOCIALZONE_CONSUMER_PROCESSES="[]") as (srv, key, env):
        ready = srv.wait_ready()
        assert "consumer_process" not in ready.json()["checks"]["identity"]
        assert all("process" not in c for c in srv.get("/identity/v1/status", key=key).json()["consumers"])
        _post_and_wait_attributed(srv, key, "4201")
        assert srv.interrupt()[0] == 0
    refused = run_cli("run", env={**env, "SOCIALZONE_CONSUMER_PROCESSES": '["identity", "billing"]'})
    assert refused.returncode != 0
    assert "SOCIALZONE_CONSUMER_PROCESSES names unknown services billing" in refused.stderr


def test_ctrl_c_in_a_terminal_stops_the_main_process_and_its_children_once(tmp_path):
    # a terminal's Ctrl-C reaches the whole process group: the children leave the stopping to
    # the main process (which would otherwise take their exit for a crash and start them again)
    with all_in_one(tmp_path) as (srv, key, _):
        srv.wait_ready()
        children = [_child_pid(srv, "identity", key), _child_pid(srv, "care", key)]
        os.killpg(srv.proc.pid, signal.SIGINT)  # its own session: the group is the main process's
        assert srv.proc.wait(timeout=STOP_WITHIN_S) == 0, srv.output()
    assert not any(_alive(pid) for pid in children)
    assert "starting it again" not in srv.stderr, srv.output()


def _members(bus_file: Path, group: str) -> int:
    with sqlite3.connect(f"file:{bus_file}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT count(*) FROM members WHERE grp = ?", (group,)).fetchone()[0]


def _post_posts(srv: Server, key: str, authors: list[str], first: int, per_author: int) -> None:
    items = [{"source": "x", "kind": "post", "external_id": f"shared-{author}-{n}", "occurred_at": "2026-11-20T09:30:00Z",
              "author": {"identifiers": [{"type": "x", "value": author}]}, "text": f"post {n} about my order"}
             for author in authors for n in range(first, first + per_author)]
    response = httpx.post(f"{srv.base}/ingest/v1/interactions", json=items,
                          headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert response.status_code == 202 and not response.json()["rejected"], response.text


def _attributed_per_author(srv: Server, key: str, authors: list[str], expected: int) -> dict[str, int]:
    """Each author's count of attributed interactions, once every author has ``expected`` (or 30 s)."""
    deadline = time.monotonic() + 30
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        for author in authors:
            found = srv.get(f"/identity/v1/customers?identifier=x:{author}", key=key).json()["items"]
            counts[author] = -1 if len(found) != 1 else len(srv.get(
                f"/identity/v1/customers/{found[0]['id']}/timeline?types=identity.interaction.attributed&limit=100",
                key=key).json()["items"])
        if all(c == expected for c in counts.values()):
            break
        time.sleep(0.3)
    return counts


def test_a_second_consumer_process_shares_the_partitions_and_its_kill_loses_nothing(tmp_path):
    """`socialzone work identity --consumers-only` beside the all-in-one: one more member of
    identity's consumer groups (on the same SQLite file and local bus). The groups deal it
    partitions; killed, its partitions go back to the other member and nothing is lost."""
    authors = [f"77{n:02d}" for n in range(12)]
    with all_in_one(tmp_path, SOCIALZONE_LOCAL_BUS__SESSION_TIMEOUT_S="3") as (srv, key, env):
        srv.wait_ready()
        with server(["work", "identity", "--consumers-only"], env, tmp_path / "extra") as extra:
            bus_file = Path(env["SOCIALZONE_DATA_DIR"]) / "bus.db"
            deadline = time.monotonic() + READY_WITHIN_S
            while "group identity-resolution: member" not in extra.stderr and time.monotonic() < deadline:
                assert extra.proc.poll() is None, extra.output()
                time.sleep(0.2)
            assert _members(bus_file, "identity-resolution") == 2
            share = re.search(r"group identity-resolution: member \S+ \(of 2\) has zone\.interactions\.raw \[([\d, ]+)\]",
                              extra.stderr)
            assert share and len(share.group(1).split(",")) == 6, extra.output()  # half of the 12

            _post_posts(srv, key, authors, 0, 4)
            assert set(_attributed_per_author(srv, key, authors, 4).values()) == {4}
            extra.kill()  # kill -9: its partitions go back once its session times out
            _post_posts(srv, key, authors, 4, 4)
            assert set(_attributed_per_author(srv, key, authors, 8).values()) == {8}, srv.output()
        assert _members(bus_file, "identity-resolution") == 1
        # published once each: the relay ran in one process only (two would each publish what is pending)
        deadline = time.monotonic() + 15
        while _published(bus_file, "zone.interactions") < 96 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)
        assert _published(bus_file, "zone.interactions") == 96


def _published(bus_file: Path, topic: str) -> int:
    with sqlite3.connect(f"file:{bus_file}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT count(*) FROM log WHERE topic = ?", (topic,)).fetchone()[0]
