"""Checkpoint files: atomic save, safe load, RNG restore, reported weight loading."""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ocr_core.weights.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_weights,
    rng_state,
    save_checkpoint,
    set_rng_state,
)


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))


def test_round_trip_and_optional_suffix(tmp_path: Path) -> None:
    net = _net()
    path = save_checkpoint(tmp_path / "latest", {"model": net.state_dict(), "epoch": 3, "global_step": 12,
                                                 "best_metric": {"hmean": 0.5}, "charset": ["a", "b"]})
    assert path.name == "latest.pt" and not list(tmp_path.glob(".*tmp*"))
    ck = load_checkpoint(tmp_path / "latest")  # suffix optional, as PaddleOCR's checkpoints
    assert ck["epoch"] == 3 and ck["global_step"] == 12 and ck["charset"] == ["a", "b"]
    other = _net()
    load_weights(other, ck["model"], strict=True)
    for a, b in zip(net.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)


def test_rng_state_restores_every_generator() -> None:
    state = rng_state()
    a = (torch.rand(3), np.random.rand(3), random.random())
    torch.rand(5), np.random.rand(5), random.random()
    set_rng_state(state)
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_rng_state_survives_weights_only_file(tmp_path: Path) -> None:
    state = rng_state()
    x = torch.rand(2)
    save_checkpoint(tmp_path / "r", {"model": {}, "rng": state})
    set_rng_state(load_checkpoint(tmp_path / "r.pt")["rng"])
    assert torch.equal(torch.rand(2), x)


def test_load_report_counts_and_thresholds() -> None:
    src = _net().state_dict()
    src["extra.weight"] = torch.zeros(1)
    src["2.weight"] = torch.zeros(9, 9, 1, 1)  # shape mismatch
    net = _net()
    rep = load_weights(net, src)
    assert ("2.weight", (9, 9, 1, 1), (2, 4, 1, 1)) in rep.mismatched
    assert rep.unexpected == ["extra.weight"]
    assert rep.missing == ["2.weight"]
    assert len(rep.matched) == len(net.state_dict()) - 1
    with pytest.raises(CheckpointError, match="strict"):
        load_weights(_net(), src, strict=True)
    only_one = {"0.weight": _net().state_dict()["0.weight"]}
    with pytest.raises(CheckpointError, match="more than 50% missing"):
        load_weights(_net(), only_one)
    load_weights(_net(), only_one, max_missing_ratio=1.0)  # told to load anyway


class _Evil:
    def __reduce__(self):  # noqa: ANN204
        return (print, ("pwned",))


def test_pickled_callables_are_refused(tmp_path: Path) -> None:
    p = tmp_path / "evil.pt"
    with open(p, "wb") as fh:
        pickle.dump({"model": _Evil()}, fh)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(p)


def test_missing_checkpoint_message(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope")
