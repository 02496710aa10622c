"""Fixtures for the Kubernetes launcher tests: a fake API server + operator on loopback."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def live_children() -> list[int]:
    """PIDs whose parent is this process (zombies included): what a test may have leaked."""
    me = str(os.getpid())
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[1] == me:
            out.append(int(entry))
    return out


# Children that already existed when a k8s test module started (e.g. a session-scoped embedded
# S3 server from another test package) are not replicas of ours and are ignored. Kept in the
# environment because test modules import this file under a second module name.
_BASELINE_ENV = "OCRFLOW_TEST_CHILD_BASELINE"


@pytest.fixture(scope="module", autouse=True)
def _child_baseline():
    os.environ[_BASELINE_ENV] = ",".join(str(p) for p in live_children())
    yield


def _baseline() -> set[int]:
    return {int(p) for p in os.environ.get(_BASELINE_ENV, "").split(",") if p}


def wait_no_children(timeout_s: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while (kids := [k for k in live_children() if k not in _baseline()]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return kids


@pytest.fixture(scope="module")
def cluster():
    from tests.k8s.fake_apiserver import FakeCluster

    with FakeCluster(workdir=str(ROOT)) as fake:
        yield fake
    assert wait_no_children() == [], "replica processes left running"
