"""Det training engine on synthetic data: resume equivalence, DDP equivalence, eval/infer CLI."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ocr_core.cli import main as cli
from ocr_core.config import dump_config
from ocr_core.engine.run import train
from ocr_core.weights.checkpoint import load_checkpoint
from tests.integration.det_fixtures import ROOT, det_config, make_det_split


@pytest.fixture(scope="module")
def tiny_det(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("tinydet")
    make_det_split(root / "train", num=8, seed=11, size=(160, 128))
    make_det_split(root / "eval", num=2, seed=12, size=(160, 128))
    return root / "train", root / "eval"


def _params(path: Path) -> dict[str, torch.Tensor]:
    ck = load_checkpoint(path)
    return {k: v for k, v in ck["model"].items() if "running_" not in k and "num_batches" not in k}


def test_resume_equals_straight_run(tiny_det: tuple[Path, Path], tmp_path: Path) -> None:
    """2 epochs straight == 1 epoch + resume from latest + 1 epoch (weights, global_step, LR)."""
    train_dir, eval_dir = tiny_det
    common = ("Global.eval_at_end=false", "Train.loader.batch_size_per_card=4", "Optimizer.lr.name=Cosine",
              "Optimizer.lr.warmup_epoch=1")
    straight = det_config(train_dir, eval_dir, tmp_path / "a", *common, crop=64, epochs=2)
    out_a = train(straight)
    first = det_config(train_dir, eval_dir, tmp_path / "b", *common, crop=64, epochs=1)
    train(first)
    resumed = det_config(train_dir, eval_dir, tmp_path / "b", *common,
                         f"Global.checkpoints={tmp_path / 'b' / 'latest'}", crop=64, epochs=2)
    out_b = train(resumed)
    assert out_a["global_step"] == out_b["global_step"] == 4
    a, b = load_checkpoint(tmp_path / "a" / "latest.pt"), load_checkpoint(tmp_path / "b" / "latest.pt")
    assert a["epoch"] == b["epoch"] == 2
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 4
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    # the resolved config is saved beside the checkpoints
    assert (tmp_path / "a" / "config.yml").is_file() and (tmp_path / "a" / "train.log").is_file()


def _deterministic_transforms() -> list[dict]:
    return [
        {"DecodeImage": {"img_mode": "BGR", "channel_first": False}},
        {"DetLabelEncode": None},
        {"DetResizeForTest": {"image_shape": [64, 96]}},
        {"MakeBorderMap": {"shrink_ratio": 0.4, "thresh_min": 0.3, "thresh_max": 0.7}},
        {"MakeShrinkMap": {"shrink_ratio": 0.4, "min_text_size": 8}},
        {"NormalizeImage": {"scale": "1./255.", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                            "order": "hwc"}},
        {"ToCHWImage": None},
        {"KeepKeys": {"keep_keys": ["image", "threshold_map", "threshold_mask", "shrink_map", "shrink_mask"]}},
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(300)
def test_ddp_two_ranks_equal_one_process_with_accumulation(tiny_det: tuple[Path, Path], tmp_path: Path) -> None:
    """2 gloo ranks x batch 1 == 1 process x 2 accumulated micro-batches of 1 (same samples per step).

    A DDP without gradient all-reduce, or ranks reading the same samples, would differ by ~1e-3.

    Per-micro-batch BatchNorm statistics and the batch-global Dice make DDP differ from a single
    batch of 2; accumulation reproduces exactly what DDP averages. SGD keeps the comparison
    linear in the gradients (Adam's first step is sign-like and amplifies float noise).
    """
    train_dir, eval_dir = tiny_det
    # two optimizer steps at a small LR: DB's k=50 binary map makes training chaotic, so float
    # summation-order noise (~1e-7) would grow to ~1e-4 within a few large steps
    common = ("Global.eval_at_end=false", "Optimizer.name=SGD", "Optimizer.lr.learning_rate=0.002",
              "Train.loader.batch_size_per_card=1", "Global.max_steps=2")
    single = det_config(train_dir, eval_dir, tmp_path / "single", *common, "Global.grad_accum_steps=2")
    single["Train"]["dataset"]["transforms"] = _deterministic_transforms()
    out = train(single)
    assert out["global_step"] == 2

    ddp_cfg = det_config(train_dir, eval_dir, tmp_path / "ddp", *common)
    ddp_cfg["Train"]["dataset"]["transforms"] = _deterministic_transforms()
    cfg_file = tmp_path / "ddp.yml"
    dump_config(ddp_cfg, cfg_file)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "ocr_core.train", "-c", str(cfg_file)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "world 2" in proc.stdout
    a, b = _params(tmp_path / "single" / "latest.pt"), _params(tmp_path / "ddp" / "latest.pt")
    assert load_checkpoint(tmp_path / "ddp" / "latest.pt")["global_step"] == 2
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst < 1e-5, worst  # measured ~3e-7
    # and training really moved the weights away from the (seeded) initialisation
    from ocr_core.modeling import build_model

    torch.manual_seed(7)
    init = build_model(single["Architecture"]).state_dict()
    assert max(float((init[k] - a[k]).abs().max()) for k in a) > 1e-3  # measured ~6.6e-3


def test_eval_and_infer_cli(tiny_det: tuple[Path, Path], tmp_path: Path) -> None:
    train_dir, eval_dir = tiny_det
    cfg = det_config(train_dir, eval_dir, tmp_path / "m", "Global.max_steps=1", crop=64)
    cfg_file = tmp_path / "c.yml"
    dump_config(cfg, cfg_file)
    assert cli(["train", "-c", str(cfg_file), "--summary-json", str(tmp_path / "s.json")]) == 0
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["global_step"] == 1
    ck = tmp_path / "m" / "latest"
    assert cli(["eval", "-c", str(cfg_file), "-o", f"Global.checkpoints={ck}", "--json", str(tmp_path / "e.json")]) == 0
    metrics = json.loads((tmp_path / "e.json").read_text())
    assert set(metrics) >= {"precision", "recall", "hmean", "fps"}
    out = tmp_path / "infer"
    assert cli(["infer", "-c", str(cfg_file), "-o", f"Global.pretrained_model={ck}",
                "--image", str(eval_dir / "images"), "--out", str(out)]) == 0
    results = json.loads((out / "predicts.json").read_text())
    assert len(results) == 2 and all("boxes" in r for r in results)
    assert len(list(out.glob("det_res_*.png"))) == 2


def test_bad_override_is_a_clean_cli_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli(["train", "-c", str(ROOT / "configs/det/det_mv3_db.yml"), "-o", "Global.epoch_numm=3"])
    assert code == 2
    err = capsys.readouterr().err
    assert "Global.epoch_numm" in err and "det_mv3_db.yml" in err and "Traceback" not in err


@pytest.mark.parametrize("extra", [("Global.use_amp=true", "Global.amp_dtype=bfloat16"),
                                   ("Global.use_amp=true", "Global.amp_dtype=float16", "Global.channels_last=true")])
def test_amp_and_channels_last_train_steps(tiny_det: tuple[Path, Path], tmp_path: Path, extra: tuple[str, ...]) -> None:
    """bf16 autocast on CPU (float16 falls back to bf16 there) trains with finite losses."""
    train_dir, eval_dir = tiny_det
    cfg = det_config(train_dir, eval_dir, tmp_path / "amp", "Global.max_steps=2", "Global.eval_at_end=false",
                     *extra, crop=64)
    out = train(cfg)
    assert out["global_step"] == 2
    logs = out["last_epoch"]
    assert all(torch.isfinite(torch.tensor(v)) for k, v in logs.items() if k.startswith("loss"))
    ck = load_checkpoint(tmp_path / "amp" / "latest.pt")
    assert all(v.dtype != torch.bfloat16 for v in ck["model"].values())  # weights stay fp32


def _torchrun(cfg: dict, cfg_file: Path, timeout: int = 280) -> subprocess.CompletedProcess[str]:
    dump_config(cfg, cfg_file)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "ocr_core.train", "-c", str(cfg_file)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.timeout(400)
def test_ddp_resume_with_random_augmentation_equals_straight_run(tiny_det: tuple[Path, Path],
                                                                  tmp_path: Path) -> None:
    """2 gloo ranks, random crops/flips/rotations: 2 epochs straight == 1 epoch + resume + 1 epoch.

    Each rank draws its own augmentation stream (seed + rank), so exact resume needs every rank's RNG
    state in the checkpoint; restoring rank 0's on both ranks makes rank 1 crop differently.
    """
    train_dir, eval_dir = tiny_det
    common = ("Global.eval_at_end=false", "Optimizer.name=SGD", "Optimizer.lr.learning_rate=0.002",
              "Train.loader.batch_size_per_card=2")
    _torchrun(det_config(train_dir, eval_dir, tmp_path / "a", *common, crop=64, epochs=2), tmp_path / "a.yml")
    _torchrun(det_config(train_dir, eval_dir, tmp_path / "b", *common, crop=64, epochs=1), tmp_path / "b1.yml")
    ck1 = load_checkpoint(tmp_path / "b" / "latest.pt")
    assert len(ck1["rng_per_rank"]) == 2
    assert not torch.equal(ck1["rng_per_rank"][0]["torch"], ck1["rng_per_rank"][1]["torch"])
    resume = f"Global.checkpoints={tmp_path / 'b' / 'latest'}"
    _torchrun(det_config(train_dir, eval_dir, tmp_path / "b", *common, resume, crop=64, epochs=2),
              tmp_path / "b2.yml")
    a, b = load_checkpoint(tmp_path / "a" / "latest.pt"), load_checkpoint(tmp_path / "b" / "latest.pt")
    assert a["global_step"] == b["global_step"] == 4
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k


def test_max_train_seconds_stops_at_a_step_then_evaluates_and_saves(tiny_det: tuple[Path, Path],
                                                                     tmp_path: Path) -> None:
    """A time budget of 0 s stops after the first step of a 3-epoch run; the end-of-run evaluation and
    ``latest`` still happen (a budgeted run keeps what it trained)."""
    train_dir, eval_dir = tiny_det
    cfg = det_config(train_dir, eval_dir, tmp_path / "t", "Global.max_train_seconds=0",
                     "Train.loader.batch_size_per_card=4", crop=64, epochs=3)
    out = train(cfg)
    assert out["global_step"] == 1 and out["epoch"] == 1
    assert [h["global_step"] for h in out["history"]] == [1] and "hmean" in out["history"][0]
    assert load_checkpoint(tmp_path / "t" / "latest.pt")["global_step"] == 1
    assert "max_train_seconds=0 reached" in (tmp_path / "t" / "train.log").read_text(encoding="utf-8")
