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


def wait_no_children(timeout_s: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while (kids := live_children()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return kids


@pytest.fixture(scope="module")
def cluster():
    from tests.k8s.fake_apiserver import FakeCluster

    with FakeCluster(workdir=str(ROOT)) as fake:
        yield fake
    assert wait_no_children() == [], "replica processes left running"
