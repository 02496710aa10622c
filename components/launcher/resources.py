"""Pod resources that follow the GPUs: CPU cores, memory and /dev/shm per GPU, from measured costs.

A training replica with ``g`` GPUs needs enough loader workers to feed them, and what that takes
depends on the model type (:data:`MODEL_TYPES`). The det Train pipeline (decode, IaaAugment, 640
crop, border/shrink maps) costs :data:`DET_DATA_MS_PER_IMAGE` ms of one CPU core per image; the
PP-OCRv3 student trains at :data:`STUDENT_GPU_IMG_S` img/s on one H200 with bf16 + channels_last
(docs/benchmarks.md, both measured in the same GPU-suite run). A rec word crop costs
:data:`REC_DATA_MS_PER_IMAGE` ms and SVTR_LCNet trains at :data:`REC_GPU_IMG_S` img/s. Feeding one
such GPU at full speed takes ``ms/img x img/s / 1000`` cores: the defaults ask for that, capped at
:data:`MAX_CPU_PER_GPU` (a typical 8-GPU node has 96-128 cores), plus one core for the trainer
process itself. Memory: the loader workers' prefetched batches and decoded images, per GPU.
``/dev/shm`` (a memory-backed emptyDir: DataLoader workers pass batches through it) is counted
inside the memory limit, so it is never larger than the limit.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# Measured 2026-12-04 on one H200 + 16 cores (bench/gpu_suite.py; docs/benchmarks.md):
# the det_mv3_db Train pipeline delivered 245.5 img/s with 16 workers -> 16 * 1000 / 245.5 ms/img/core.
DET_DATA_MS_PER_IMAGE = 16 * 1000 / 245.5  # ~65 ms of one core per det training image
STUDENT_GPU_IMG_S = 552.0  # PP-OCRv3 det student, bf16 AMP + channels_last, batch 32, 640x640
REC_GPU_IMG_S = 3260.4  # SVTR_LCNet rec, bf16 AMP + channels_last, batch 256, 48x320
REC_DATA_MS_PER_IMAGE = 1.3  # decode + resize of a word crop, one core (bench/capacity.py --measure, 2026-12-05)
MAX_CPU_PER_GPU = 12
MIB_PER_WORKER = 512  # prefetch_factor 2 x batch 8 x 640x640 float maps + the decoded source images
BASE_MEMORY_MIB = 6144  # the trainer: model, optimizer, CUDA context, one dataset copy
# model type -> (a GPU's training rate in img/s, ms of one core per training image)
_COSTS = {"det": (STUDENT_GPU_IMG_S, DET_DATA_MS_PER_IMAGE), "rec": (REC_GPU_IMG_S, REC_DATA_MS_PER_IMAGE)}
MODEL_TYPES = tuple(_COSTS)  # ("det", "rec"): the model types sized here (Architecture.model_type)


@dataclass(frozen=True)
class Resources:
    """What one replica asks for (Kubernetes quantities)."""

    cpu: str
    memory: str
    shm: str
    loader_workers: int
    note: str


def cores_to_feed(gpu_img_s: float, data_ms_per_image: float) -> float:
    """CPU cores whose loader workers keep one GPU busy: ``ms/img x img/s / 1000``."""
    return data_ms_per_image * gpu_img_s / 1000.0


def _costs(model_type: str) -> tuple[float, float]:
    """(img/s per GPU, ms/img/core) of ``model_type``; ValueError for a type not in :data:`MODEL_TYPES`."""
    if model_type not in _COSTS:
        raise ValueError(f"model_type {model_type!r}: resources are sized for {' or '.join(MODEL_TYPES)} "
                         "(Architecture.model_type of the training config)")
    return _COSTS[model_type]


def per_gpu_defaults(model_type: str = "det") -> tuple[int, int]:
    """(cores, MiB) per GPU from ``model_type``'s measured costs (cores capped at :data:`MAX_CPU_PER_GPU`).

    Raises:
        ValueError: a model type not in :data:`MODEL_TYPES`.
    """
    gpu_img_s, data_ms = _costs(model_type)
    need = cores_to_feed(gpu_img_s, data_ms)
    cores = max(2, min(MAX_CPU_PER_GPU, math.ceil(need)))
    return cores, BASE_MEMORY_MIB + cores * MIB_PER_WORKER


_QTY = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti)?$")
_MIB = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 1024 * 1024, None: 1 / (1024 * 1024)}


def mebibytes(quantity: str) -> float:
    """``"16Gi"`` -> 16384.0 (binary suffixes and plain bytes; what the pod specs here use)."""
    m = _QTY.match(str(quantity).strip())
    if not m:
        raise ValueError(f"memory quantity {quantity!r}: use a number with Ki/Mi/Gi/Ti (e.g. 16Gi)")
    return float(m.group(1)) * _MIB[m.group(2)]


def replica_resources(gpus: int, model_type: str = "det", cpu_per_gpu: int | None = None,
                      memory_per_gpu: str | None = None, shm: str | None = None) -> Resources:
    """Requests for a replica with ``gpus`` GPUs (0: a CPU replica sized as one GPU's worth).

    ``model_type`` (:data:`MODEL_TYPES`) picks the measured data cost and GPU rate the defaults follow.

    Raises:
        ValueError: an unknown model type, a non-positive per-GPU value, or a /dev/shm larger than
            the memory limit.
    """
    if gpus < 0:
        raise ValueError(f"gpus must be >= 0, got {gpus}")
    cores, mib = per_gpu_defaults(model_type)
    if cpu_per_gpu is not None:
        if cpu_per_gpu < 1:
            raise ValueError(f"--cpu-per-gpu must be >= 1, got {cpu_per_gpu}")
        cores = cpu_per_gpu
    if memory_per_gpu is not None:
        mib = int(mebibytes(memory_per_gpu))
        if mib <= 0:
            raise ValueError(f"--memory-per-gpu must be > 0, got {memory_per_gpu}")
    n = max(1, gpus)
    total_mib = n * mib
    shm_mib = int(mebibytes(shm)) if shm else min(total_mib // 2, n * cores * MIB_PER_WORKER)
    if shm_mib > total_mib:
        raise ValueError(f"/dev/shm ({shm}) is larger than the memory limit ({total_mib}Mi): the emptyDir "
                         "is memory-backed and counts against the limit")
    workers = max(1, cores - 1)
    gpu_img_s, data_ms = _costs(model_type)
    note = (f"{n} GPU(s) x {cores} cores ({workers} loader workers/GPU), {mib}Mi/GPU; {model_type} data costs "
            f"{data_ms:.3g} ms/img/core, a GPU trains {gpu_img_s:.0f} img/s")
    return Resources(cpu=str(n * cores + 1), memory=f"{total_mib}Mi", shm=f"{shm_mib}Mi",
                     loader_workers=workers, note=note)


__all__ = ["MODEL_TYPES", "Resources", "cores_to_feed", "mebibytes", "per_gpu_defaults", "replica_resources"]
