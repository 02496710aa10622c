"""``Global.dist_timeout_s`` reaches the process group (issue #16: a silent node loss in an elastic job)."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
import torch.distributed as dist

from ocr_core.config import parse_global
from ocr_core.engine import distributed
from ocr_core.errors import ConfigError


class _Store:
    def __init__(self) -> None:
        self.timeouts: list[datetime.timedelta] = []

    def set_timeout(self, timeout: datetime.timedelta) -> None:
        self.timeouts.append(timeout)


def _fake_group(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Record what init_distributed asks of torch.distributed, as 2 ranks (this one rank 1)."""
    seen: dict[str, Any] = {"store": _Store()}
    for key, value in {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(key, value)

    def rendezvous(url: str, rank: int, world: int, **kwargs: Any) -> Any:
        seen["rendezvous"] = (url, rank, world, kwargs)
        yield seen["store"], rank, world

    def init_process_group(**kwargs: Any) -> None:
        seen["init"] = kwargs

    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "rendezvous", rendezvous)
    monkeypatch.setattr(dist, "PrefixStore", lambda prefix, store: (prefix, store))
    monkeypatch.setattr(dist, "init_process_group", init_process_group)
    return seen


def test_the_timeout_reaches_init_process_group_and_the_store(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _fake_group(monkeypatch)
    info = distributed.init_distributed("cpu", use_gpu=False, timeout_s=42.5)
    assert (info.rank, info.world_size) == (1, 2)
    init = seen["init"]
    assert init["timeout"] == datetime.timedelta(seconds=42.5)
    assert (init["backend"], init["rank"], init["world_size"]) == ("gloo", 1, 2)
    assert init["store"] == ("default_pg", seen["store"])  # keys prefixed as init_process_group does
    # the rendezvous itself waits PyTorch's default (no timeout passed): late pods still meet
    assert seen["rendezvous"] == ("env://", 1, 2, {})
    assert seen["store"].timeouts == [datetime.timedelta(seconds=42.5)]


def test_no_timeout_keeps_pytorchs_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _fake_group(monkeypatch)
    distributed.init_distributed("cpu", use_gpu=False)
    assert seen["init"]["timeout"] is None
    assert seen["store"].timeouts == []


def test_prepare_passes_global_dist_timeout_s(monkeypatch: pytest.MonkeyPatch) -> None:
    from ocr_core.engine import run as run_mod

    got: dict[str, Any] = {}

    class Stop(Exception):
        pass

    def fake_init(device: Any, use_gpu: bool, timeout_s: Any = "unset") -> Any:
        got["timeout_s"] = timeout_s
        raise Stop

    monkeypatch.setattr(run_mod, "init_distributed", fake_init)
    monkeypatch.setattr(run_mod, "resolve_config", lambda cfg: cfg)
    for glob, expected in (({}, 300.0), ({"dist_timeout_s": 60}, 60), ({"dist_timeout_s": None}, None)):
        with pytest.raises(Stop):
            run_mod.prepare({"Global": glob})
        assert got["timeout_s"] == expected


@pytest.mark.parametrize("bad", [0, -5, float("nan"), float("inf"), "300", True])
def test_a_bad_timeout_is_refused_naming_the_key(bad: Any) -> None:
    with pytest.raises(ConfigError, match="Global.dist_timeout_s"):
        parse_global({"Global": {"dist_timeout_s": bad}})
