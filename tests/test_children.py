"""What the main process reads of a child's reports (children.Child): only a fresh report of
the running process counts."""

from __future__ import annotations

import subprocess
import sys
import time

import orjson
import pytest

from socialzone_common import children
from socialzone_common.children import Child


@pytest.fixture
def child(tmp_path):
    c = Child("care", tmp_path)
    c.process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    c.started_at = time.monotonic()
    c.report_file.parent.mkdir(parents=True)
    yield c
    c.stop(5)


def write(child: Child, **overrides) -> None:
    report = {"pid": child.process.pid, "at": time.time(), "relay_failures": 0,
              "consumers": [{"group": "care-interactions", "stopped_reason": None},
                            {"group": "care-factors", "stopped_reason": "more than 100 dead letters"}]}
    child.report_file.write_bytes(orjson.dumps(report | overrides))


def test_a_fresh_report_gives_each_consumer_its_check(child):
    write(child)
    assert child.readiness() == {"consumer_process": "ok", "consumer:care-interactions": "ok",
                                 "consumer:care-factors": "stopped: more than 100 dead letters"}


def test_no_report_yet_is_starting_then_not_reporting(child):
    assert child.readiness() == {"consumer_process": "starting"}
    child.started_at -= children.STALE_AFTER_S + 1
    assert child.readiness() == {"consumer_process": f"process {child.process.pid} is not reporting"}


def test_a_stale_report_or_one_of_another_process_does_not_count(child):
    write(child, at=time.time() - children.STALE_AFTER_S - 1)
    assert child.report() is None
    write(child, pid=child.process.pid + 100_000)
    assert child.report() is None
    assert child.readiness()["consumer_process"] == "starting"


def test_an_exited_child_is_reported_as_such(child):
    write(child)
    child.stop(5)
    assert child.readiness() == {"consumer_process": f"exited with {child.process.returncode}; restarting"}
    assert child.report() is None
