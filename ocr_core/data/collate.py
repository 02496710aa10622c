"""Batch collation and worker seeding, shared by the map-style loader (:mod:`ocr_core.data.loader`)
and the shard stream (:mod:`ocr_core.data.shards`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


def _collate_field(items: Sequence[Any]) -> Any:
    first = items[0]
    if isinstance(first, np.ndarray):
        if all(isinstance(x, np.ndarray) and x.shape == first.shape and x.dtype == first.dtype for x in items):
            return torch.from_numpy(np.stack(items))
        return list(items)
    if isinstance(first, torch.Tensor):
        if all(isinstance(x, torch.Tensor) and x.shape == first.shape for x in items):
            return torch.stack(list(items))
        return list(items)
    if isinstance(first, (bool, int, float, np.number, np.bool_)):
        if all(isinstance(x, (bool, int, float, np.number, np.bool_)) for x in items):
            return torch.as_tensor(np.asarray(items))
        return list(items)
    if isinstance(first, dict):
        return {k: _collate_field([x[k] for x in items]) for k in first}
    return list(items)


def collate_batch(batch: Sequence[Any]) -> Any:
    """Collate samples (lists from ``KeepKeys``, or dicts) field by field.

    Arrays of equal shape and dtype are stacked into one tensor; numbers become a tensor;
    anything else (polygons of different sizes, strings) stays a list per field. ``None`` samples
    (an evaluation sample that could not be read) are dropped; a batch of only those is ``None``.
    """
    batch = [sample for sample in batch if sample is not None]  # unreadable eval samples (counted by evaluate)
    if not batch:
        return None
    first = batch[0]
    if isinstance(first, (list, tuple)):
        return [_collate_field([sample[i] for sample in batch]) for i in range(len(first))]
    return _collate_field(batch)


def seed_worker(worker_id: int) -> None:
    """Seed numpy/random in each worker from torch's per-worker seed (augmentations use numpy)."""
    import random

    s = torch.initial_seed() % (2**32)
    np.random.seed(s)
    random.seed(s)
    # No cv2.setNumThreads here: a forked child that reconfigures the thread pool it inherited waits for
    # threads that do not exist in it (this hung eval loaders on a 16-core machine and in the test
    # suite). build_dataloader switches the parent to serial OpenCV before forking; children inherit it.


__all__ = ["collate_batch", "seed_worker"]
