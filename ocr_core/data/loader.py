"""build_dataloader: dataset + sampler + DataLoader from a ``Train``/``Eval`` config section.

The returned sampler always has ``set_epoch(epoch)``; the engine calls it before every epoch and
it also forwards the epoch to the dataset (``SimpleDataSet`` redraws its ``ratio_list`` subset).

* Train, distributed: :class:`torch.utils.data.DistributedSampler` (shuffle and drop_last from
  the loader section, seeded).
* Eval, distributed: each rank takes ``indices[rank::world_size]`` without padding, so no sample
  is counted twice when the metric counters are summed across ranks.
* Not distributed: a seeded random permutation per epoch (shuffle) or sequential order.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, IterableDataset, Sampler

from ocr_core.data.collate import collate_batch, seed_worker
from ocr_core.errors import ConfigError
from ocr_core.registry import check_dataclass, check_kwargs

logger = logging.getLogger(__name__)


@dataclass
class LoaderConfig:
    """``Train.loader`` / ``Eval.loader``."""

    shuffle: bool = False
    drop_last: bool = False
    batch_size_per_card: int = 1
    num_workers: int = 0
    use_shared_memory: bool = True
    collate_fn: str | None = None
    persistent_workers: bool = False


def _forward_epoch(dataset: Any, epoch: int) -> None:
    fn = getattr(dataset, "set_epoch", None)
    if callable(fn):
        fn(epoch)


class EpochDistributedSampler(DistributedSampler):
    """DistributedSampler whose ``set_epoch`` also reaches the dataset."""

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        _forward_epoch(self.dataset, epoch)


class EpochSampler(Sampler[int]):
    """Single-process or unpadded sharded sampler with ``set_epoch``.

    Args:
        dataset: The dataset (its ``set_epoch`` is called too).
        shuffle: Random permutation per epoch, seeded by ``seed + epoch``.
        seed: Base seed.
        rank: This process's shard.
        world_size: Number of shards (``indices[rank::world_size]``, no padding).
    """

    def __init__(self, dataset: Dataset, shuffle: bool = False, seed: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        self.dataset = dataset
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        _forward_epoch(self.dataset, epoch)

    def __iter__(self) -> Iterator[int]:
        n = len(self.dataset)  # type: ignore[arg-type]
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            order = torch.randperm(n, generator=g).tolist()
        else:
            order = list(range(n))
        return iter(order[self.rank :: self.world_size])

    def __len__(self) -> int:
        n = len(self.dataset)  # type: ignore[arg-type]
        return max(0, math.ceil((n - self.rank) / self.world_size))


def _rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def build_dataloader(
    cfg: dict[str, Any], mode: str, distributed: bool = False, seed: Optional[int] = None,
    pin_memory: bool = False, persistent_workers: Optional[bool] = None,
) -> tuple[Dataset, DataLoader, Sampler[int]]:
    """Build ``(dataset, loader, sampler)`` for ``cfg[mode]``.

    Args:
        cfg: The whole config (``Global`` plus the ``Train``/``Eval`` section).
        mode: ``"Train"`` or ``"Eval"``.
        distributed: Shard across ``torch.distributed`` ranks.
        seed: Base seed (default ``Global.seed``); also given to the dataset unless it sets one.
        pin_memory: Page-locked batches (the engine sets it for CUDA runs).
        persistent_workers: Overrides ``loader.persistent_workers`` when not None (the engine keeps
            Eval workers alive across evaluations on CUDA; Train keeps the config's choice, since
            per-epoch worker re-seeding needs fresh workers).

    Raises:
        ConfigError: for a missing/invalid section, naming the key path.
    """
    from ocr_core.data import DATASETS

    if mode not in ("Train", "Eval"):
        raise ConfigError(f"mode must be 'Train' or 'Eval', got {mode!r}", mode)
    section = cfg.get(mode)
    if not isinstance(section, dict) or not isinstance(section.get("dataset"), dict):
        raise ConfigError("missing dataset section", f"{mode}.dataset")
    if section.get("sampler"):
        raise ConfigError("custom samplers are not supported", f"{mode}.sampler")
    global_cfg = cfg.get("Global") or {}
    if seed is None:
        seed = int(global_cfg.get("seed") or 0)
    loader_cfg = check_dataclass(LoaderConfig, section.get("loader"), f"{mode}.loader")
    if loader_cfg.batch_size_per_card < 1:
        raise ConfigError(f"must be >= 1, got {loader_cfg.batch_size_per_card}", f"{mode}.loader.batch_size_per_card")
    if loader_cfg.num_workers < 0:
        raise ConfigError(f"must be >= 0, got {loader_cfg.num_workers}", f"{mode}.loader.num_workers")

    ds_cfg = dict(section["dataset"])
    where = f"{mode}.dataset"
    if "name" not in ds_cfg:
        raise ConfigError("a dataset section needs a 'name' key", where)
    cls = DATASETS.get(ds_cfg.pop("name"), f"{where}.name")
    transforms = ds_cfg.pop("transforms", None)
    check_kwargs(cls, ds_cfg, where)
    data_dir = ds_cfg.get("data_dir")
    shards = isinstance(cls, type) and issubclass(cls, IterableDataset)  # its data_dir: a URI, or its manifest.json
    if isinstance(data_dir, str) and data_dir and not shards and not os.path.isdir(data_dir):
        # refused here: the dataset would reject every sample, one warning each
        raise ConfigError(f"{data_dir}: " + ("is not a directory" if os.path.exists(data_dir) else "does not exist"),
                          f"{where}.data_dir")
    if "seed" not in ds_cfg and "seed" in inspect.signature(cls).parameters:
        ds_cfg["seed"] = seed
    dataset = cls(**ds_cfg, transforms=transforms, mode=mode.lower(), global_cfg=global_cfg,
                  shuffle=loader_cfg.shuffle)

    rank, world = _rank_world() if distributed else (0, 1)
    if isinstance(dataset, IterableDataset):  # ShardDataSet splits itself across ranks and workers
        from ocr_core.data.shards import build_shard_loader

        return (dataset, *build_shard_loader(dataset, loader_cfg, rank, world, seed=seed, pin_memory=pin_memory))
    sampler: Sampler[int]
    if distributed and mode == "Train":
        sampler = EpochDistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=loader_cfg.shuffle,
                                          seed=seed, drop_last=loader_cfg.drop_last)
    else:
        sampler = EpochSampler(dataset, shuffle=loader_cfg.shuffle, seed=seed, rank=rank, world_size=world)

    workers = loader_cfg.num_workers
    if workers > 0:
        # Workers inherit OpenCV's threading mode: serial, so N workers do not each start a pool of
        # all cores (as mmcv sets up its loaders). Switching here, in the parent, stops the pool's
        # threads before any fork; a child must not touch the setting (see seed_worker).
        import cv2

        cv2.setNumThreads(0)
    persistent = (loader_cfg.persistent_workers if persistent_workers is None else persistent_workers) and workers > 0
    if persistent and (getattr(dataset, "need_reset", False)
                       or any(getattr(op, "total_epoch", None) for op in getattr(dataset, "ops", []))):
        # worker copies of the dataset would keep the first epoch's subset / shrink ratio
        logger.warning("%s: persistent_workers disabled: ratio_list < 1 or total_epoch changes samples per epoch",
                       mode)
        persistent = False
    generator = torch.Generator()
    generator.manual_seed(seed + rank)  # per-rank worker seeds, so augmentations differ across ranks
    loader = DataLoader(
        dataset,
        batch_size=loader_cfg.batch_size_per_card,
        sampler=sampler,
        drop_last=loader_cfg.drop_last,
        num_workers=workers,
        collate_fn=collate_batch,
        persistent_workers=persistent,
        pin_memory=pin_memory,
        generator=generator,
        worker_init_fn=seed_worker,
    )
    loader.base_seed = seed + rank  # type: ignore[attr-defined]
    return dataset, loader, sampler


def set_loader_epoch(loader: DataLoader, epoch: int) -> None:
    """Re-seed the worker seed generator per epoch, so a resumed run draws the same augmentations."""
    gen = getattr(loader, "generator", None)
    base = getattr(loader, "base_seed", None)
    if gen is not None and base is not None:
        gen.manual_seed(int(base) * 1_000_003 + epoch)


__all__ = ["EpochDistributedSampler", "EpochSampler", "build_dataloader", "collate_batch", "seed_worker",
           "set_loader_epoch"]
