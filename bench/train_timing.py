"""Shared timing for the training-throughput benches (``det_train_throughput.py``,
``rec_train_throughput.py``): one epoch of batches loaded up front, then timed training steps."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from ocr_core.data.loader import build_dataloader


def load_batches(cfg: dict) -> tuple[list, float]:
    """All batches of one ``Train`` epoch and the data time per sample (single process)."""
    _, loader, sampler = build_dataloader(cfg, "Train")
    sampler.set_epoch(1)
    t0 = time.perf_counter()
    batches = list(loader)
    n = sum(int(b[0].shape[0]) for b in batches)
    return batches, (time.perf_counter() - t0) / max(1, n)


def median_step_seconds(forward: Callable[[Any], dict], loss_fn: torch.nn.Module, opt: torch.optim.Optimizer,
                        batches: list, steps: int, warmup: int, bf16: bool) -> float:
    """Median wall time of one training step (forward, loss, backward, optimizer step).

    Args:
        forward: ``batch -> predictions`` dict (the model call); run under bf16 autocast if ``bf16``.
        loss_fn: ``(predictions, batch) -> {"loss": ...}``.
        opt: Optimizer over the model's parameters.
        batches: Cycled through, one per step.
        steps: Timed steps.
        warmup: Untimed steps first.
        bf16: CPU bf16 autocast around the forward pass; predictions are cast back to fp32.
    """
    times = []
    for i in range(warmup + steps):
        batch = batches[i % len(batches)]
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            preds = forward(batch)
        preds = {k: v.float() for k, v in preds.items()}
        loss = loss_fn(preds, batch)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)
