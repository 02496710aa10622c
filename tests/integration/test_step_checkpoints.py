"""Step checkpoints (``Global.save_step_interval``), mid-epoch resume and SIGTERM (issue #16, item 2).

A run killed mid-epoch resumes from its last step checkpoint and ends bit-identical to a run that
was never interrupted: the epoch's first batches are replayed from the epoch-start RNG (same
shuffle, same random augmentation, in-process or in loader workers), then the step's RNG is
restored. SIGTERM stops every rank at the next step, saves ``latest`` and exits 143 (retryable).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ocr_core.engine.run import TrainHooks, train
from ocr_core.errors import Preempted
from ocr_core.weights.checkpoint import load_checkpoint
from tests.integration.det_fixtures import ROOT, det_config, make_det_split

DRIVER = Path(__file__).with_name("step_ckpt_driver.py")


class Killed(Exception):
    pass


def _cfg(tmp: Path, out: Path, *extra: str) -> dict:
    if not (tmp / "train" / "label.txt").exists():
        make_det_split(tmp / "train", num=8, seed=41, size=(160, 128))
        make_det_split(tmp / "eval", num=1, seed=42, size=(160, 128))
    # random crop + flips/rotation (IaaAugment) stay on: the resume must reproduce them
    return det_config(tmp / "train", tmp / "eval", out, "Global.num_threads=1", "Global.print_batch_step=1",
                      "Global.eval_at_end=false", *extra, crop=96, batch=2, epochs=2)


def _same_weights(a: Path, b: Path) -> None:
    wa, wb = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    assert wa.keys() == wb.keys()
    differ = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not differ, f"{len(differ)} tensors differ, e.g. {differ[:3]}"


@pytest.mark.parametrize("workers", [0, 2])
def test_a_run_killed_mid_epoch_resumes_bit_identical(tmp_path: Path, workers: int) -> None:
    loader = f"Train.loader.num_workers={workers}"
    train(_cfg(tmp_path, tmp_path / "ref", loader))  # 2 epochs x 4 steps, never interrupted

    def kill_at_6(run, state) -> bool:  # type: ignore[no-untyped-def]
        if state.global_step == 6:  # epoch 2, second step; the last step checkpoint is step 5
            raise Killed
        return False

    cut = _cfg(tmp_path, tmp_path / "cut", loader, "Global.save_step_interval=5")
    with pytest.raises(Killed):
        train(cut, hooks=TrainHooks(after_step=kill_at_6))
    ck = load_checkpoint(tmp_path / "cut" / "latest.pt")
    assert (ck["global_step"], ck["epoch"]) == (5, 1)  # lost 1 step (< interval)
    assert {k: ck["epoch_progress"][k] for k in ("epoch", "batches", "world_size")} == \
        {"epoch": 2, "batches": 1, "world_size": 1}
    resumed = train(_cfg(tmp_path, tmp_path / "cut", loader, f"Global.checkpoints={tmp_path / 'cut' / 'latest.pt'}"))
    assert resumed["global_step"] == 8
    _same_weights(tmp_path / "ref" / "latest.pt", tmp_path / "cut" / "latest.pt")


def test_the_replay_matters(tmp_path: Path) -> None:
    """Control: resuming the same checkpoint as if the epoch had not started gives other weights."""
    train(_cfg(tmp_path, tmp_path / "ref"))

    def kill_at_6(run, state) -> bool:  # type: ignore[no-untyped-def]
        if state.global_step == 6:
            raise Killed
        return False

    with pytest.raises(Killed):
        train(_cfg(tmp_path, tmp_path / "cut", "Global.save_step_interval=5"), hooks=TrainHooks(after_step=kill_at_6))
    ck_path = tmp_path / "cut" / "latest.pt"
    ck = load_checkpoint(ck_path)
    assert ck["epoch_progress"]["batches"] == 1
    ck.pop("epoch_progress")  # as an epoch-only checkpoint would resume: epoch 2 from its start
    ck["epoch"] = 1
    torch.save(ck, ck_path)
    train(_cfg(tmp_path, tmp_path / "cut", f"Global.checkpoints={ck_path}"))
    with pytest.raises(AssertionError, match="tensors differ"):
        _same_weights(tmp_path / "ref" / "latest.pt", ck_path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _logged_steps(log: Path) -> list[int]:
    text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    return [int(line.split("global_step: ")[1].split(",")[0]) for line in text.splitlines() if "global_step: " in line]


def _ranks(cfg: dict, tmp: Path, world: int, kill: tuple[int, int] | None = None,
           term: tuple[int, int] | None = None, seen: dict | None = None) -> list[int]:
    """Start ``world`` driver processes with the operator's env; when one dies, stop the rest (as
    torchrun does); their exit codes. ``term=(step, rank)``: once that rank has finished ``step`` (it
    then waits, see the driver) the test SIGTERMs it; 143 is then a normal exit, and ``seen`` gets
    the step and the steps in ``train.log`` at the signal, and every rank's output."""
    path = tmp / f"cfg_{time.monotonic_ns()}.json"
    path.write_text(json.dumps(cfg))
    marker = Path(f"{path}.at_step")
    port = _free_port()
    procs = []
    for rank in range(world):
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
               "WORLD_SIZE": str(world), "LOCAL_RANK": "0", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        at = kill or term
        argv = [sys.executable, str(DRIVER), str(path), *([str(at[0]), str(at[1])] if at else []),
                *(["term"] if term else [])]
        procs.append(subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and all(p.poll() is None for p in procs):
        if term and seen is not None and "signal_after_step" not in seen and marker.exists() \
                and marker.read_text().strip():
            seen["signal_after_step"] = int(marker.read_text())
            seen["logged_at_signal"] = _logged_steps(Path(cfg["Global"]["save_model_dir"]) / "train.log")
            procs[term[1]].send_signal(signal.SIGTERM)
        time.sleep(0.05 if term else 0.2)
    if any(p.poll() not in ((None, 0, Preempted.EXIT_CODE) if term else (None, 0)) for p in procs):
        for p in procs:
            if p.poll() is None:
                p.kill()
    codes = [p.wait(timeout=300) for p in procs]
    outs = [p.stdout.read().decode() if p.stdout else "" for p in procs]
    if seen is not None:
        seen["outputs"] = outs
    for p, out in zip(procs, outs):
        if kill is None and term is None and p.returncode != 0:
            raise AssertionError(out[-3000:])
    return codes


def test_two_ranks_lose_one_node_mid_epoch_and_resume_bit_identical(tmp_path: Path) -> None:
    """2 ranks (gloo, operator env), random augmentation on, 2 epochs x 2 steps; rank 1 is SIGKILLed
    after step 4 (epoch 2's second step), the last step checkpoint being step 3; rank 0 is then
    stopped as torchrun would. The resumed 2-rank run replays epoch 2's first batch and ends on the
    reference's weights."""
    ref = _cfg(tmp_path, tmp_path / "ref")
    assert _ranks(ref, tmp_path, 2) == [0, 0]
    cut = _cfg(tmp_path, tmp_path / "cut", "Global.save_step_interval=3")
    codes = _ranks(cut, tmp_path, 2, kill=(4, 1))
    assert codes[1] == -signal.SIGKILL and codes[0] != 0
    ck = load_checkpoint(tmp_path / "cut" / "latest.pt")
    assert ck["global_step"] == 3 and ck["epoch_progress"]["epoch"] == 2  # 2 steps/epoch with 2 ranks
    assert ck["epoch_progress"]["world_size"] == 2 and len(ck["epoch_progress"]["rng_epoch_start"]) == 2
    resume = _cfg(tmp_path, tmp_path / "cut", f"Global.checkpoints={tmp_path / 'cut' / 'latest.pt'}")
    assert _ranks(resume, tmp_path, 2) == [0, 0]
    assert load_checkpoint(tmp_path / "cut" / "latest.pt")["global_step"] == 4
    _same_weights(tmp_path / "ref" / "latest.pt", tmp_path / "cut" / "latest.pt")


def test_two_ranks_sigterm_on_one_rank_stops_both_at_the_next_step_and_resume_bit_identical(tmp_path: Path) -> None:
    """2 ranks (gloo, operator env), 2 epochs x 2 steps, no step checkpoints: rank 1 alone gets SIGTERM
    once step 2 is logged (it holds at step 2's end until the signal is in). The ranks agree through
    the per-step all-reduce: both stop after step 3 (mid-epoch 2), rank 0 saves ``latest`` and both
    exit 143. Resuming that checkpoint on 2 ranks ends on the uninterrupted reference's weights."""
    ref = _cfg(tmp_path, tmp_path / "ref")
    assert _ranks(ref, tmp_path, 2) == [0, 0]
    seen: dict = {}
    codes = _ranks(_cfg(tmp_path, tmp_path / "cut"), tmp_path, 2, term=(2, 1), seen=seen)
    outs = "\n".join(seen["outputs"])
    assert codes == [Preempted.EXIT_CODE, Preempted.EXIT_CODE], outs[-4000:]
    assert seen["signal_after_step"] == 2 and max(seen["logged_at_signal"]) == 2
    assert outs.count("preempted: SIGTERM at epoch 2, global_step 3") == 2 and "Traceback" not in outs
    ck = load_checkpoint(tmp_path / "cut" / "latest.pt")
    assert ck["global_step"] == 3 >= max(seen["logged_at_signal"])  # no finished step lost
    assert ck["global_step"] == max(_logged_steps(tmp_path / "cut" / "train.log"))
    assert (ck["epoch"], ck["epoch_progress"]["epoch"], ck["epoch_progress"]["batches"]) == (1, 2, 1)
    assert ck["epoch_progress"]["world_size"] == 2
    resume = _cfg(tmp_path, tmp_path / "cut", f"Global.checkpoints={tmp_path / 'cut' / 'latest.pt'}")
    assert _ranks(resume, tmp_path, 2) == [0, 0]
    assert load_checkpoint(tmp_path / "cut" / "latest.pt")["global_step"] == 4
    _same_weights(tmp_path / "ref" / "latest.pt", tmp_path / "cut" / "latest.pt")


def test_sigterm_saves_latest_at_the_next_step_and_exits_143(tmp_path: Path) -> None:
    cfg_out = tmp_path / "run"
    _cfg(tmp_path, cfg_out)  # makes the data
    argv = [sys.executable, "-m", "ocr_core.cli", "train", "-c", str(ROOT / "configs/det/det_mv3_db.yml"), "-o",
            f"Global.save_model_dir={cfg_out}", "Global.epoch_num=200", "Global.use_gpu=false",
            "Global.print_batch_step=1", "Global.eval_batch_step=[0, 100000]", "Global.eval_at_end=false",
            "Global.num_threads=1", f"Train.dataset.data_dir={tmp_path / 'train'}",
            f"Train.dataset.label_file_list=[{tmp_path / 'train' / 'label.txt'}]",
            "Train.dataset.transforms.EastRandomCropData.size=[96, 96]", "Train.loader.batch_size_per_card=2",
            "Train.loader.num_workers=0", f"Eval.dataset.data_dir={tmp_path / 'eval'}",
            f"Eval.dataset.label_file_list=[{tmp_path / 'eval' / 'label.txt'}]"]
    proc = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    log = cfg_out / "train.log"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        if log.exists() and "global_step: 3," in log.read_text(encoding="utf-8", errors="replace"):
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert "preempted: SIGTERM at epoch" in err and "Traceback" not in err
    ck = load_checkpoint(cfg_out / "latest.pt")
    steps_logged = [int(line.split("global_step: ")[1].split(",")[0])
                    for line in log.read_text(encoding="utf-8").splitlines() if "global_step: " in line]
    assert ck["global_step"] == max(steps_logged) >= 3  # no finished step lost
    assert ck["epoch_progress"]["batches"] == ck["global_step"] % 4 or ck["epoch_progress"]["batches"] == 4


def test_four_ranks_equal_one_rank_with_the_same_global_batch(tmp_path: Path) -> None:
    """4 ranks x batch 1 (gloo, operator env) vs 1 rank with a global batch of 4, CRNN + CTC, 4 steps.

    The CTC loss is a per-sample mean, so DDP's gradient average over 4 ranks is the batch-of-4
    gradient up to float arithmetic. BatchNorm runs frozen (``freeze_bn``): per-rank batch-1
    statistics differ from batch-4 statistics by definition (SyncBatchNorm is CUDA-only). Momentum
    SGD keeps the comparison linear in the gradients (Adam's first steps move every weight by about
    +-lr whatever the gradient's size). Distances are in units of the last step (|w(4) - w(3)|):

    * 4 ranks vs 1 rank accumulating 4 micro-batches of 1: the same per-sample arithmetic, summed in
      another order -> < 1e-4 (measured 7e-6).
    * 4 ranks vs 1 rank with batch 4: CPU kernels for a batch of 4 round differently from 4 batches
      of 1 (the single-process accumulation run shows the same gap) -> < 5e-2 (measured 2.1e-2).
    """
    from tests.integration.rec_fixtures import make_rec_split, rec_config

    make_rec_split(tmp_path / "train", num=8, seed=3, domain="receipt")
    make_rec_split(tmp_path / "eval", num=2, seed=4, domain="receipt")

    def run(out: str, world: int, batch: int, *extra: str) -> torch.Tensor:
        cfg = rec_config(tmp_path / "train", tmp_path / "eval", tmp_path / out, "Global.freeze_bn=true",
                         "Global.num_threads=1", "Global.eval_at_end=false", "Optimizer.name=Momentum",
                         "Optimizer.momentum=0.9", "Optimizer.lr.name=Const", "Optimizer.lr.learning_rate=0.001",
                         "Optimizer.regularizer.factor=0",
                         # float32 arithmetic is what is compared: pin it (the default takes bf16
                         # autocast on CPUs with native bf16, #17; 5.1e-2 against batch 4 there)
                         "Global.use_amp=false", "Global.channels_last=false", *extra, batch=batch, epochs=2)
        assert _ranks(cfg, tmp_path, world) == [0] * world
        ck = load_checkpoint(tmp_path / out / "latest.pt")
        state = ck["model"]
        return torch.cat([state[k].float().flatten() for k in sorted(state) if state[k].is_floating_point()])

    four = run("four", 4, 1)
    accum = run("accum", 1, 1, "Global.grad_accum_steps=4")
    one = run("one", 1, 4)
    three = run("three", 1, 4, "Global.max_steps=3")
    step = float((one - three).norm())
    assert step > 1e-3  # the weights really moved
    assert float((four - accum).norm()) / step < 1e-4
    assert float((four - one).norm()) / step < 5e-2


def test_resuming_with_another_global_batch_follows_the_scaling_rule(tmp_path: Path) -> None:
    """The elastic rule: per-rank batch kept, lr = reference rule for the new global batch, the
    cosine schedule continued at the same epoch count (here global batch 4 -> 2 after epoch 1)."""
    import math

    lr = ["Optimizer.lr.name=Cosine", "Optimizer.lr.learning_rate=0.001", "Optimizer.lr.warmup_epoch=0",
          "Optimizer.lr.reference_batch_size=8"]
    first = _cfg(tmp_path, tmp_path / "run", *lr)
    first["Global"]["epoch_num"] = 3
    first["Train"]["loader"]["batch_size_per_card"] = 4

    def kill_at_3(run, state) -> bool:  # type: ignore[no-untyped-def]
        if state.global_step == 3:  # epoch 2's first step; latest.pt holds epoch 1 (2 steps of batch 4)
            raise Killed
        return False

    with pytest.raises(Killed):
        train(first, hooks=TrainHooks(after_step=kill_at_3))
    seen: dict[int, float] = {}

    def record(run, state) -> bool:  # type: ignore[no-untyped-def]
        seen[state.global_step] = run.optimizer.param_groups[0]["lr"]  # the rate of the next step
        return False

    again = _cfg(tmp_path, tmp_path / "run", *lr, f"Global.checkpoints={tmp_path / 'run' / 'latest.pt'}")
    again["Global"]["epoch_num"] = 3
    again["Train"]["loader"]["batch_size_per_card"] = 2  # e.g. half the workers: global batch 4 -> 2
    out = train(again, hooks=TrainHooks(after_step=record))
    assert out["global_step"] == 2 + 2 * 4  # epochs 2 and 3 at 4 steps each
    base = 0.001 * 2 / 8  # reference rule for the new global batch
    total = 3 * 4
    # after the first resumed step the schedule stands at 1 epoch (4 new steps) + 1 step
    assert seen[3] == pytest.approx(base * 0.5 * (1 + math.cos(math.pi * 5 / total)), rel=1e-6)
    assert seen[10] == pytest.approx(0.0, abs=1e-12)  # the schedule ends with the run
