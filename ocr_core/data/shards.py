"""ShardDataSet: stream det/rec samples from shards (local directory or ``s3://``), see docs/data.md.

The order of an epoch is a pure function of ``(index, seed, epoch, rank, world_size)``:

1. The shards are permuted by ``(seed, epoch)`` (train with ``shuffle``) and their samples laid end to
   end: the epoch's global stream of ``N`` samples.
2. Rank ``r`` takes the contiguous slice ``[r*n, (r+1)*n)`` with ``n = ceil(N / world_size)``; a slice
   past the end wraps around to the stream's start (DistributedSampler's padding: every rank gets the
   same count, at most ``world_size - 1`` samples are seen twice per epoch). Eval splits without
   padding (rank counts differ by at most one) so no sample is scored twice.
3. A shuffle buffer of ``shuffle_buffer`` samples, seeded by ``(seed, epoch, rank)``, reorders the
   slice (train with ``shuffle``).
4. The rank's stream is cut into batches; DataLoader worker ``w`` of ``W`` produces batches
   ``w, w + W, ...``. The DataLoader returns worker results round-robin, so the batches arrive in
   stream order whatever ``num_workers`` is.

Augmentation is seeded per sample from ``(seed, epoch, rank, position)``, so a sample comes out the
same whichever worker draws it and after a resume. The position is ``state_dict()``: ``{"epoch",
"samples"}`` consumed by this rank (counted by :class:`ShardLoader` as batches leave it);
``load_state_dict`` makes the next iteration start at that sample.
"""

from __future__ import annotations

import logging
import math
import os
import random
import tempfile
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Optional, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, Sampler, get_worker_info

from ocr_core.data import DATASETS
from ocr_core.data.shard_cache import ShardCache, ShardFile
from ocr_core.data.shard_format import ShardIndex, parse_size, read_index
from ocr_core.data.simple_dataset import OCRDataset
from ocr_core.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

_MASK64 = (1 << 64) - 1
_OPEN_SHARDS = 8  # shard files a reader keeps open (the shuffle buffer spans a few)


def _mix(*values: int) -> int:
    """A 63-bit seed from integers (splitmix64 steps): nearby inputs give unrelated seeds."""
    x = 0x9E3779B97F4A7C15
    for v in values:
        x = (x ^ (int(v) & _MASK64)) * 0xBF58476D1CE4E5B9 & _MASK64
        x = (x ^ (x >> 31)) * 0x94D049BB133111EB & _MASK64
        x ^= x >> 29
    return x >> 1


def rank_range(total: int, rank: int, world: int, pad: bool) -> tuple[int, int]:
    """``[start, stop)`` of rank ``rank`` in the epoch stream (``stop`` may pass ``total``: wrap-around)."""
    if pad:
        n = math.ceil(total / world)
        return rank * n, rank * n + n
    return rank * total // world, (rank + 1) * total // world


def buffer_shuffle(ids: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """WebDataset's shuffle buffer over ``ids``: fill ``size`` items, then emit a random one and put the
    next item in its place; at the end the rest comes out in random order."""
    if size <= 1 or len(ids) <= 1:
        return ids.copy()
    src = ids.tolist()
    buf = src[:size]
    out = []
    picks = rng.random(max(0, len(src) - size))
    for u, item in zip(picks.tolist(), src[size:]):
        j = int(u * len(buf))
        out.append(buf[j])
        buf[j] = item
    out.extend(buf[j] for j in rng.permutation(len(buf)).tolist())
    return np.asarray(out, dtype=np.int64)


def rank_plan(counts: np.ndarray, *, seed: int, epoch: int, rank: int, world: int, shuffle: bool, buffer: int,
              pad: bool) -> np.ndarray:
    """Global sample ids (``shard start + sample number``) rank ``rank`` yields in ``epoch``, in order."""
    counts = np.asarray(counts, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    total = int(counts.sum())
    order = np.random.default_rng([seed, epoch]).permutation(len(counts)) if shuffle else np.arange(len(counts))
    ends = np.cumsum(counts[order])
    a, b = rank_range(total, rank, world, pad)
    q = np.arange(a, b, dtype=np.int64) % total
    k = np.searchsorted(ends, q, side="right")
    ids = starts[order[k]] + (q - (ends[k] - counts[order[k]]))
    if shuffle:
        ids = buffer_shuffle(ids, buffer, np.random.default_rng([seed, epoch, rank, 1]))
    return ids


def worker_positions(n: int, start: int, batch_size: int, worker: int, workers: int) -> np.ndarray:
    """Positions ``>= start`` of a rank's stream of ``n`` that worker ``worker`` produces: batches
    ``worker, worker + workers, ...`` of the stream from ``start``."""
    pos = np.arange(start, n, dtype=np.int64)
    return pos[((pos - start) // batch_size) % workers == worker]


def _default_rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


@DATASETS.register()
class ShardDataSet(OCRDataset, IterableDataset):
    """Samples streamed from a shard set built by ``ocrflow build-shards``.

    Args:
        data_dir: The shard set: ``s3://bucket/prefix`` or a local directory holding ``manifest.json``.
        transforms: The transform list (the same as for SimpleDataSet/LMDBDataSet).
        cache_dir: Where downloaded shards are kept (default ``$OCRFLOW_SHARD_CACHE`` or
            ``<tmp>/ocrflow-shards-<uid>``); shared by the processes of a node. Unused for a local set.
        cache_size: Bound on the cache (``"8GB"``, ``"1GiB"`` or bytes); at least one shard, best a few.
        shuffle_buffer: Samples in the shuffle buffer (train with ``loader.shuffle``).
        verify: Hash each shard of a local set before reading it (once per process); downloads are
            always checked.
        ext_op_transform_idx: How many leading ops load an ``ext_data`` sample (stand-ins come from the
            shard in hand).
        seed: Seed of the shard order, shuffle buffer and augmentation (default ``Global.seed``).
        mode: ``"train"`` or ``"eval"`` (not a config key).
        global_cfg: The ``Global`` section (not a config key).
        shuffle: The loader's ``shuffle`` (not a config key).
    """

    def __init__(
        self,
        data_dir: str = "",
        transforms: Optional[list] = None,
        cache_dir: Optional[str] = None,
        cache_size: Union[int, str] = "8GB",
        shuffle_buffer: int = 1000,
        verify: bool = True,
        ext_op_transform_idx: int = 2,
        seed: Optional[int] = None,
        *,
        mode: str = "train",
        global_cfg: Optional[dict] = None,
        shuffle: bool = False,
    ) -> None:
        if not data_dir:
            raise ConfigError("data_dir is required (s3://... or a directory holding the shard index)", "data_dir")
        if shuffle_buffer < 0:
            raise ConfigError(f"must be >= 0, got {shuffle_buffer}", "shuffle_buffer")
        self._init_common(data_dir, seed, transforms, global_cfg, ext_op_transform_idx, mode)
        self.index: ShardIndex = read_index(data_dir)
        self.counts = np.asarray(self.index.counts, dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]])
        self.do_shuffle = bool(shuffle) and self.mode == "train"
        self.shuffle_buffer = shuffle_buffer
        self.pad = self.mode == "train"
        cache_dir = cache_dir or os.environ.get("OCRFLOW_SHARD_CACHE") or os.path.join(
            tempfile.gettempdir(), f"ocrflow-shards-{os.getuid()}")
        self.cache = ShardCache(self.index, cache_dir, parse_size(cache_size, "cache_size"), verify=verify)
        self.rank, self.world_size = _default_rank_world()
        self.batch_size = 1
        self.epoch = 0
        self.consumed = 0  # samples of this epoch handed out by this rank (ShardLoader counts them)
        self._resume_at: Optional[int] = None
        self._loader_counts = False
        self.need_reset = True  # each epoch's workers need the new epoch (no persistent workers)
        self._cur: Optional[ShardFile] = None
        logger.info("ShardDataSet: %d samples in %d shard(s) under %s", self.index.total, len(self.counts), data_dir)

    # -- position -----------------------------------------------------------------------------------
    def configure(self, rank: int, world_size: int, batch_size: int) -> None:
        """Set the rank split and the batch size the worker split follows (the loader calls this)."""
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank {rank} outside world size {world_size}", "RANK")
        self.rank, self.world_size, self.batch_size = rank, world_size, max(1, int(batch_size))

    def __len__(self) -> int:
        a, b = rank_range(self.index.total, self.rank, self.world_size, self.pad)
        return b - a

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` (a pending resume position for this epoch is kept)."""
        if epoch != self.epoch:
            self._resume_at = None
        self.epoch = epoch
        self.consumed = self._resume_at or 0
        for op in self.ops:
            if getattr(op, "total_epoch", None):
                op.set_epoch(epoch)  # type: ignore[attr-defined]

    def state_dict(self) -> dict[str, Any]:
        """This rank's position: the epoch and the samples of it already consumed."""
        return {"epoch": self.epoch, "samples": self.consumed, "rank": self.rank, "world_size": self.world_size,
                "seed": self.seed, "index": self.index.digest}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Make the next iteration continue where ``state`` left off.

        Same world size and seed: exact (the rest of the epoch, sample for sample). Another world size
        continues at ``samples x old_world / new_world`` rounded down to whole batches: for a position
        saved after ``b`` batches that is ``b x old_world // new_world`` batches, the engine's rule for
        a mid-epoch resume. Only the count carries over: each rank's slice of the epoch moves with the
        world size, so for the rest of that epoch some samples are trained twice and about as many
        not at all (the next epoch is whole again).

        Raises:
            DataError: the state belongs to another shard set.
        """
        if state.get("index") not in (None, self.index.digest):
            raise DataError(f"{self.data_dir}: the saved data position belongs to another shard set "
                            f"(index {str(state.get('index'))[:12]}, this one {self.index.digest[:12]})")
        samples, old_world = int(state.get("samples", 0)), int(state.get("world_size") or self.world_size)
        if old_world != self.world_size or int(state.get("seed", self.seed)) != self.seed:
            saved = samples
            samples = samples * old_world // self.world_size
            samples -= samples % self.batch_size  # batch-aligned: the worker split and the engine's count
            logger.warning("ShardDataSet: position saved with world size %d / seed %s after %d samples, now "
                           "%d / %d: the order differs, resuming after %d samples per rank", old_world,
                           state.get("seed"), saved, self.world_size, self.seed, samples)
        self.epoch = int(state.get("epoch", self.epoch))
        self._resume_at = min(samples, len(self))
        self.consumed = self._resume_at

    # -- iteration ----------------------------------------------------------------------------------
    def plan(self, epoch: Optional[int] = None) -> np.ndarray:
        """The global sample ids this rank yields in ``epoch`` (default: the current one), in order."""
        return rank_plan(self.counts, seed=self.seed, epoch=self.epoch if epoch is None else epoch,
                         rank=self.rank, world=self.world_size, shuffle=self.do_shuffle, buffer=self.shuffle_buffer,
                         pad=self.pad)

    def __iter__(self) -> Iterator[Any]:
        start = self._resume_at or 0
        if get_worker_info() is None and not self._loader_counts:
            self._resume_at = None  # iterated directly: the pending position is used up now
            self.consumed = start
        return self._samples(self.epoch, start)

    def _samples(self, epoch: int, start: int) -> Iterator[Any]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        ids = self.plan(epoch)
        positions = worker_positions(len(ids), start, self.batch_size, worker, workers)
        ids_here = ids[positions]
        shard_of = np.searchsorted(self.starts, ids_here, side="right") - 1
        sequence = list(dict.fromkeys(shard_of.tolist()))  # shards in order of first use
        first_use = {sh: u for u, sh in enumerate(sequence)}
        next_fetch = 0
        opened: OrderedDict[int, ShardFile] = OrderedDict()
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ocrflow-shard-fetch") \
            if not self.cache.local else None
        fetching: dict[int, Future[Any]] = {}
        direct = info is None and not self._loader_counts
        try:
            for pos, gid, shard in zip(positions.tolist(), ids_here.tolist(), shard_of.tolist()):
                if shard not in opened:
                    if pool is not None:
                        # download the next shard while this one is read
                        while next_fetch < min(first_use[shard] + 2, len(sequence)):
                            fetching[sequence[next_fetch]] = pool.submit(self.cache.fetch, sequence[next_fetch])
                            next_fetch += 1
                        if shard in fetching:
                            fetching.pop(shard).result()
                    opened[shard] = self.cache.open(shard)
                    while len(opened) > _OPEN_SHARDS:
                        opened.popitem(last=False)[1].close()
                opened.move_to_end(shard)
                self._cur = opened[shard]
                s = _mix(self.seed, epoch, self.rank, pos)
                random.seed(s)
                np.random.seed(s % (2**32))
                out = self[gid - int(self.starts[shard])]
                if direct:
                    self.consumed += 1
                yield out
        finally:
            self._cur = None
            for f in opened.values():
                f.close()
            if pool is not None:
                for fut in fetching.values():
                    fut.cancel()
                pool.shutdown(wait=True)

    # OCRDataset hooks: indices are sample numbers in the shard in hand; stand-ins (a rejected train
    # sample's replacement, ext_data) come from that shard too, never from a download
    def _raw_sample(self, idx: int) -> dict[str, Any]:
        assert self._cur is not None
        shard = self._cur
        img, meta = shard.read(idx % len(shard.samples))
        return {"img_path": f"{shard.name}:{meta.get('path')}", "image": img, "label": meta.get("label", "")}

    def _where(self, idx: int) -> str:
        if self._cur is None:
            return f"sample {idx}"
        ref = self._cur.samples[idx % len(self._cur.samples)]
        return f"{self.index.prefix}/{self._cur.name}:{ref.key}"  # asked for every sample: keep it cheap

    def __getitem__(self, idx: int) -> Any:
        if self._cur is None:
            raise TypeError("ShardDataSet is iterable: iterate it, or use its DataLoader")
        return super().__getitem__(idx)


def _batch_len(batch: Any) -> int:
    if batch is None:
        return 0
    first = batch[0] if isinstance(batch, (list, tuple)) else next(iter(batch.values())) if isinstance(batch, dict) \
        else batch
    return len(first)


class ShardLoader(DataLoader):
    """A DataLoader over a :class:`ShardDataSet` that counts the samples it hands out (the position)."""

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        ds: ShardDataSet = self.dataset  # type: ignore[assignment]
        ds._loader_counts = True
        ds.consumed = ds._resume_at or 0
        it = super().__iter__()  # workers start now, with the pending position copied into them
        ds._resume_at = None
        return self._counted(it, ds)

    @staticmethod
    def _counted(it: Iterator[Any], ds: ShardDataSet) -> Iterator[Any]:
        for batch in it:
            ds.consumed += _batch_len(batch)
            yield batch


class ShardEpochs(Sampler[int]):
    """The "sampler" the engine drives for a ShardDataSet: ``set_epoch`` and the per-rank length (the
    DataLoader itself gets none: the dataset orders and splits its samples)."""

    def __init__(self, dataset: ShardDataSet) -> None:
        self.dataset = dataset

    def __iter__(self) -> Iterator[int]:
        return iter(range(len(self.dataset)))

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)


def build_shard_loader(dataset: IterableDataset, loader_cfg: Any, rank: int, world: int, *, seed: int,
                       pin_memory: bool = False) -> tuple[ShardLoader, ShardEpochs]:
    """The loader and "sampler" for a ShardDataSet (``build_dataloader`` calls this for iterable datasets).

    Raises:
        ConfigError: for an iterable dataset that is not a ShardDataSet.
    """
    from ocr_core.data.collate import collate_batch, seed_worker

    if not isinstance(dataset, ShardDataSet):
        raise ConfigError(f"{type(dataset).__name__} is iterable; only ShardDataSet is supported as one", "dataset")

    dataset.configure(rank, world, loader_cfg.batch_size_per_card)
    if loader_cfg.num_workers > 0:
        import cv2

        cv2.setNumThreads(0)  # as build_dataloader: serial OpenCV in forked workers
    generator = torch.Generator()
    generator.manual_seed(seed + rank)
    loader = ShardLoader(dataset, batch_size=loader_cfg.batch_size_per_card, drop_last=loader_cfg.drop_last,
                         num_workers=loader_cfg.num_workers, collate_fn=collate_batch, pin_memory=pin_memory,
                         generator=generator, worker_init_fn=seed_worker, persistent_workers=False)
    loader.base_seed = seed + rank  # type: ignore[attr-defined]  # set_loader_epoch re-seeds it per epoch
    return loader, ShardEpochs(dataset)


__all__ = ["ShardDataSet", "ShardEpochs", "ShardLoader", "buffer_shuffle", "build_shard_loader", "rank_plan",
           "rank_range", "worker_positions"]
