"""Checkpoint and resume policy of a run: what a checkpoint holds, and how a run starts from one.

``Global.checkpoints`` resumes everything (weights, optimizer, scheduler, AMP scaler, epoch,
``global_step``, best metric, every rank's RNG) and wins over ``Global.pretrained_model``, which
loads weights only: fitted to the run's rec dictionary and head layout, and reported key by key.
The file format itself is :mod:`ocr_core.weights.checkpoint`.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ocr_core.config import public_config, wire_rec_heads
from ocr_core.engine.distributed import all_gather_object, unwrap
from ocr_core.errors import ConfigError
from ocr_core.modeling import build_model
from ocr_core.weights import checkpoint as ckpt_mod

if TYPE_CHECKING:
    from pathlib import Path

    from ocr_core.engine.run import Run

log = logging.getLogger("ocrflow")

__all__ = ["EpochStart", "adapt_pretrained_state", "checkpoint_payload", "class_dependent_keys", "data_position",
           "load_for_run", "save", "start_epoch"]


def checkpoint_payload(run: Run, best: dict[str, float] | None = None) -> dict[str, Any]:
    model = unwrap(run.model)
    return {
        "model": model.state_dict(),
        "architecture": copy.deepcopy(run.cfg["Architecture"]),
        "model_type": run.model_type,
        "config": public_config(run.cfg),
        "charset": run.charset,
        "optimizer": run.optimizer.state_dict() if run.optimizer else None,
        "scheduler": run.scheduler.state_dict() if run.scheduler else None,
        "scaler": run.scaler.state_dict() if run.scaler is not None else None,
        "epoch": run.state.epoch,
        "global_step": run.state.global_step,
        "best_metric": dict(best if best is not None else run.state.best_metric),
        "rng": ckpt_mod.rng_state(),
        "run_shape": {"global_batch": run.global_batch, "steps_per_epoch": run.steps_per_epoch,
                      "world_size": run.dist.world_size},
        "provenance": {"tool": "ocrflow", "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
    }


def save(run: Run, name: str, best: dict[str, float] | None = None, mid_epoch: bool = False) -> Path | None:
    """Save ``name`` and return its path (rank 0 writes; every rank must call it).

    Under DDP every rank's RNG state is gathered into ``rng_per_rank``: each rank draws its own
    augmentation stream, and an exact resume needs all of them. ``mid_epoch`` (a step checkpoint)
    records ``epoch`` as the last finished epoch plus ``epoch_progress``: the epoch in progress, the
    micro-batches each rank consumed of it, the world size and every rank's RNG at the epoch's start
    (a resume replays the epoch's first batches from there, then restores the step's RNG); when the
    training set keeps a position (:func:`data_position`), every rank's position too, and a resume
    seeks there instead of replaying.
    """
    rngs = all_gather_object(ckpt_mod.rng_state()) if run.dist.enabled else None
    starts = positions = None
    if mid_epoch:
        start = run.epoch_start_rng or ckpt_mod.rng_state()
        starts = all_gather_object(start) if run.dist.enabled else [start]
        position = data_position(run.train_dataset)
        if position is not None:
            positions = all_gather_object(position.state_dict()) if run.dist.enabled else [position.state_dict()]
    if not run.dist.is_main:
        return None
    t0 = time.perf_counter()
    payload = checkpoint_payload(run, best)
    if rngs is not None:
        payload["rng_per_rank"] = rngs
    if mid_epoch:
        payload["epoch"] = run.state.epoch - 1
        payload["epoch_progress"] = {"epoch": run.state.epoch, "batches": run.state.batches_in_epoch,
                                     "world_size": run.dist.world_size, "rng_epoch_start": starts}
        if positions is not None:
            payload["epoch_progress"]["data_state"] = positions
    path = ckpt_mod.save_checkpoint(run.save_dir / name, payload)
    log.info("saved %s (%.2fs)", path, time.perf_counter() - t0)
    if run.telemetry is not None:
        run.telemetry.on_checkpoint(name, time.perf_counter() - t0)
    return path


def class_dependent_keys(run: Run) -> set[str]:
    """State-dict keys whose shape depends on the rec class count (CTC fc, SAR embedding/output).

    Found exactly by building the same architecture for another class count on the meta device
    and comparing shapes.
    """
    if not run.charset:
        return set()
    other = wire_rec_heads({"Architecture": run.cfg["Architecture"]}, len(run.charset) + 8)
    with torch.device("meta"):
        probe = build_model(other["Architecture"]).state_dict()
    own = unwrap(run.model).state_dict()
    return {k for k, v in own.items() if k in probe and tuple(probe[k].shape) != tuple(v.shape)}


def _multihead_to_ctc(state: dict[str, torch.Tensor], own: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Load a MultiHead (CTC+SAR) checkpoint's CTC branch into a Neck + CTCHead model."""
    if not any(k.startswith("head.ctc_encoder.") for k in state) or any(k.startswith("head.ctc_encoder.") for k in own):
        return state
    out: dict[str, torch.Tensor] = {}
    dropped = 0
    for k, v in state.items():
        if k.startswith("head.ctc_encoder."):
            out["neck." + k[len("head.ctc_encoder."):]] = v
        elif k.startswith("head.ctc_head."):
            out["head." + k[len("head.ctc_head."):]] = v
        elif k.startswith("head.sar_head."):
            dropped += 1
        else:
            out[k] = v
    log.info("checkpoint has a MultiHead (CTC+SAR) head: its CTC branch loads into the model's "
             "Neck + CTCHead; the SAR branch (%d tensors) is not used", dropped)
    return out


def _ctc_to_multihead(state: dict[str, torch.Tensor], own: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Load a Neck + CTCHead checkpoint (the official PP-OCRv3 rec) into a MultiHead model's CTC branch.

    The SAR branch is training-only: it stays freshly initialised (logged) and inference never uses it.
    """
    if not any(k.startswith("head.ctc_encoder.") for k in own) or any(k.startswith("head.ctc_") for k in state):
        return state
    if not any(k.startswith("neck.") for k in state):
        return state
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if k.startswith("neck."):
            out["head.ctc_encoder." + k[len("neck."):]] = v
        elif k.startswith("head."):
            out["head.ctc_head." + k[len("head."):]] = v
        else:
            out[k] = v
    n_sar = sum(1 for k in own if k.startswith("head.sar_head.") and not k.endswith("num_batches_tracked"))
    log.info("checkpoint has a Neck + CTCHead: it loads into the MultiHead's CTC branch; the SAR branch "
             "(%d tensors, training only) starts fresh", n_sar)
    return out


def adapt_pretrained_state(run: Run, ck: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Weights of a pretrained checkpoint fitted to this run's rec dictionary.

    When the checkpoint's dictionary differs from the config's, the class-dependent head
    tensors are dropped (they stay freshly initialised) and a log line names both sizes.
    """
    state = ckpt_mod.to_model_keys(dict(ck["model"]), unwrap(run.model))  # .pdparams, DDP/OpenOCR .pth
    if run.charset is None:
        return state
    own = unwrap(run.model).state_dict()
    state = _ctc_to_multihead(_multihead_to_ctc(state, own), own)
    ck_chars = ck.get("charset")
    if ck_chars is None or list(ck_chars) == list(run.charset):
        return state
    keys = class_dependent_keys(run)
    dropped = sorted(k for k in keys if k in state)
    for k in dropped:
        del state[k]
    log.warning("dictionary mismatch: the checkpoint's dictionary has %d characters (%d classes), the "
                "config's %d (%d classes); re-initialising the class-dependent head weights: %s",
                len(ck_chars), len(ck_chars) + 1, len(run.charset), len(run.charset) + 1,
                ", ".join(dropped) or "(none)")
    return state


def load_for_run(run: Run) -> None:
    """Apply ``Global.checkpoints`` (resume) or ``Global.pretrained_model`` (weights only)."""
    g = run.g
    model = unwrap(run.model)
    if g.checkpoints:
        try:
            ck = ckpt_mod.load_checkpoint(g.checkpoints, map_location=run.dist.device)
        except ckpt_mod.CheckpointError as exc:
            if not g.pretrained_model:
                raise
            # the guides promise a fallback PaddleOCR's load_model never does (it asserts): a resume
            # that silently restarts at epoch 1 from other weights is worse than stopping
            raise ckpt_mod.CheckpointError(
                f"Global.checkpoints: {exc}; Global.pretrained_model ({g.pretrained_model}) is not used in "
                "its place (a resume that cannot load never restarts from other weights): fix the path, "
                "or drop Global.checkpoints to start from the pretrained model") from None
        if run.charset is not None and ck.get("charset") is not None and list(ck["charset"]) != run.charset:
            raise ConfigError(f"{g.checkpoints} was trained with a {len(ck['charset'])}-character dictionary, "
                              f"the config has {len(run.charset)}: resuming needs the same dictionary "
                              "(use Global.pretrained_model to fine-tune with a new one)",
                              "Global.character_dict_path")
        ckpt_mod.load_weights(model, ckpt_mod.to_model_keys(ck["model"], model), strict=True,
                              source=g.checkpoints)
        if run.optimizer is not None and ck.get("optimizer"):
            run.optimizer.load_state_dict(ck["optimizer"])
        shape = ck.get("run_shape") or {}
        reshaped = bool(shape) and (shape.get("global_batch"), shape.get("steps_per_epoch")) != \
            (run.global_batch, run.steps_per_epoch)
        if run.scheduler is not None and ck.get("scheduler"):
            if reshaped:
                _follow_new_shape(run, ck, shape)
            else:
                run.scheduler.load_state_dict(ck["scheduler"])
        if run.scaler is not None and ck.get("scaler"):
            run.scaler.load_state_dict(ck["scaler"])
        run.state.epoch = int(ck.get("epoch", 0)) + 1
        run.state.global_step = int(ck.get("global_step", 0))
        run.state.best_metric = dict(ck.get("best_metric") or {})
        _restore_rng(run, ck, g.checkpoints)
        progress = ck.get("epoch_progress")
        if progress:
            run.resume_progress = _resume_position(run, progress, g.checkpoints)
        where = (f"epoch {run.state.epoch} after its first {run.resume_progress['batches']} batches"
                 if run.resume_progress else f"next epoch {run.state.epoch}")
        log.info("resumed from %s: %s, global_step %d, best %s", g.checkpoints, where,
                 run.state.global_step, run.state.best_metric)
    elif g.pretrained_model:
        ck = ckpt_mod.load_checkpoint(g.pretrained_model, map_location=run.dist.device)
        ck["model"] = ckpt_mod.to_model_keys(ck["model"], model)
        report = ckpt_mod.load_weights(model, adapt_pretrained_state(run, ck), strict=g.pretrained_strict,
                                       max_missing_ratio=g.pretrained_max_missing_ratio,
                                       source=g.pretrained_model)
        ckpt_mod.log_partial_load(report, g.pretrained_model)
    else:
        log.info("training from scratch")


def _restore_rng(run: Run, ck: dict[str, Any], source: str) -> None:
    """This rank's saved RNG state; a different world size keeps the fresh ``seed + rank`` streams."""
    per_rank = ck.get("rng_per_rank")
    world = run.dist.world_size
    if per_rank and len(per_rank) == world:
        ckpt_mod.set_rng_state(per_rank[run.dist.rank])
    elif ck.get("rng") and world == 1 and not per_rank:
        ckpt_mod.set_rng_state(ck["rng"])
    elif ck.get("rng"):
        saved = len(per_rank) if per_rank else 1
        log.warning("%s was saved by %d rank(s), this run has %d: augmentation RNG streams restart from "
                    "seed + rank (weights, optimizer and schedule are restored exactly)", source, saved, world)


def _resume_position(run: Run, progress: dict[str, Any], source: str) -> dict[str, Any]:
    """Where a mid-epoch checkpoint resumes: its epoch, the batches already trained, this rank's
    epoch-start RNG and data position (when saved), and the RNG to train on with (the step's, as
    :func:`_restore_rng` just set it).

    Same world size: exact (the replayed batches are the ones the interrupted run drew; a dataset
    position continues where this rank's stopped). Another world size (an elastic job that lost or
    gained workers): each rank skips ``k = batches x old_world // world`` batches (rounded down, so
    ``r = batches x old_world mod world`` batches' worth of samples, at most ``world - 1`` batches,
    are not counted as done), and the augmentation streams restart from the epoch start of this
    rank's fresh seed; not bit-identical. Which samples that leaves depends on the loader:

    - a map-style dataset (DistributedSampler): every world size splits the same permutation
      (``indices[rank::world]``), so both runs' batches cover a prefix of it: no sample is skipped,
      and the ``r x batch_size`` samples between the two prefixes are trained twice, all in the
      first batch each rank draws after the resume (fewer than one global batch of the new world);
    - a ShardDataSet: its position is rescaled by the dataset's own rule, which gives the same
      ``k`` batches, but each rank reads a contiguous slice of the epoch's stream whose bounds move
      with the world size, so only the count carries over: some samples trained before the resume
      are trained again in this epoch and about as many others are not trained in it at all.
    """
    old_world = int(progress.get("world_size") or 1)
    world = run.dist.world_size
    batches = int(progress.get("batches") or 0)
    starts = progress.get("rng_epoch_start") or []
    positions = progress.get("data_state") or []
    out: dict[str, Any] = {"epoch": int(progress["epoch"]), "batches": batches, "rng_epoch_start": None,
                           "data_state": positions[min(run.dist.rank, len(positions) - 1)] if positions else None,
                           "rng_step": ckpt_mod.rng_state()}
    if old_world == world and len(starts) == world:
        out["rng_epoch_start"] = starts[run.dist.rank]
    else:
        out["batches"] = (batches * old_world) // max(1, world)
        log.warning("%s was saved mid-epoch by %d rank(s), this run has %d: skipping %d batches per rank "
                    "(the samples already trained on); augmentation streams restart", source, old_world,
                    world, out["batches"])
    run.state.epoch = out["epoch"]
    return out


def _follow_new_shape(run: Run, ck: dict[str, Any], shape: dict[str, Any]) -> None:
    """Resume under another global batch or epoch length (an elastic job that lost or gained workers).

    The rule: each rank keeps its batch; the learning rate follows the new global batch through
    ``Optimizer.lr.reference_batch_size`` when the config sets it (a config without one keeps its
    rate); the schedule continues at the same point of training measured in epochs (samples seen),
    not in steps. So the freshly built scheduler (new scaled base rate, new steps per epoch) is
    kept and moved to ``epochs done x new steps per epoch``.
    """
    old_steps = max(1, int(shape.get("steps_per_epoch") or 1))
    old_done = int((ck.get("scheduler") or {}).get("last_epoch", ck.get("global_step", 0)))
    epochs_done = old_done / old_steps
    new_done = int(round(epochs_done * run.steps_per_epoch))
    sched = run.scheduler
    sched.last_epoch = new_done
    lrs = [base * fn(new_done) for base, fn in zip(sched.base_lrs, sched.lr_lambdas)]
    for group, base, lr in zip(run.optimizer.param_groups, sched.base_lrs, lrs):
        group["initial_lr"] = base
        group["lr"] = lr
    sched._last_lr = lrs
    log.warning("resuming with global batch %d (was %d) and %d steps/epoch (was %d): the schedule continues "
                "at %.3f epochs (step %d of the new schedule), lr %.6g; %s", run.global_batch,
                shape.get("global_batch"), run.steps_per_epoch, old_steps, epochs_done, new_done, lrs[0],
                "the base rate follows Optimizer.lr.reference_batch_size"
                if (run.cfg.get("Optimizer") or {}).get("lr", {}).get("reference_batch_size")
                else "no Optimizer.lr.reference_batch_size: the config's rate is kept")


def data_position(dataset: Any) -> Any:
    """``dataset`` when it keeps its own position (``state_dict``/``load_state_dict``, as ShardDataSet
    does: its order and augmentation are functions of the position), else None."""
    if callable(getattr(dataset, "state_dict", None)) and callable(getattr(dataset, "load_state_dict", None)):
        return dataset
    return None


@dataclass(frozen=True)
class EpochStart:
    """How :func:`ocr_core.engine.loop.train_one_epoch` begins an epoch (all zero: from its start).

    Attributes:
        replay: Batches to draw from the loader and discard (a mid-epoch resume of a loader without
            a position); ``after_replay`` runs once they are drawn.
        seeked: Batches already trained that the loader itself skips (its dataset was moved to the
            saved position): counted, never read.
    """

    replay: int = 0
    seeked: int = 0
    after_replay: Callable[[], None] | None = None


def start_epoch(run: Run, epoch: int) -> EpochStart:
    """Begin ``epoch`` (after the sampler's and dataset's ``set_epoch``, before its iterator is made).

    Sets ``run.epoch_start_rng`` (what a step checkpoint of this epoch records). For the first epoch
    of a mid-epoch resume: a dataset with a saved position seeks to it (``load_state_dict``) and this
    rank's RNG is set to the saved step's, so nothing is read twice; any other loader replays the
    epoch's first batches from the epoch-start RNG (the state the loader's workers and in-process
    augmentation drew from), and the step's RNG is restored once they are drawn.
    """
    pos = run.resume_progress
    if not pos or pos["epoch"] != epoch:
        run.epoch_start_rng = ckpt_mod.rng_state()
        return EpochStart()
    run.resume_progress = None
    batches, step_rng = int(pos["batches"]), pos["rng_step"]
    dataset = data_position(run.train_dataset)
    if dataset is not None and pos.get("data_state") is not None:
        dataset.load_state_dict(pos["data_state"])
        run.epoch_start_rng = pos["rng_epoch_start"] or ckpt_mod.rng_state()
        ckpt_mod.set_rng_state(step_rng)
        log.info("mid-epoch resume: epoch %d continues after its first %d batches at the dataset's saved "
                 "position (nothing replayed)", epoch, batches)
        return EpochStart(seeked=batches)
    if pos["rng_epoch_start"] is not None:
        ckpt_mod.set_rng_state(pos["rng_epoch_start"])
    run.epoch_start_rng = ckpt_mod.rng_state()
    log.info("mid-epoch resume: replaying the first %d batches of epoch %d", batches, epoch)
    return EpochStart(replay=batches, after_replay=lambda: ckpt_mod.set_rng_state(step_rng))
