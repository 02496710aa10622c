"""The fast path by default: mixed precision and channels_last chosen from the hardware.

``Global.use_amp`` / ``Global.channels_last`` / ``Global.amp_dtype`` left unset (PaddleOCR's
configs do not set them) mean *auto*:

- CUDA: channels_last on; AMP on, bfloat16 where the GPU has it natively (compute capability
  >= 8.0, Ampere and later), else float16 with a GradScaler; ``cudnn.benchmark`` on.
- CPU: channels_last on; bfloat16 autocast only where the CPU computes bfloat16 natively (the
  ``amx_bf16`` or ``avx512_bf16`` flag in /proc/cpuinfo, or PyTorch's oneDNN reporting bf16
  support); elsewhere float32, since emulated bfloat16 is slower than float32.
- Recognition models get no automatic AMP (channels_last only): CTC decoding is an argmax over
  near-tied logits, and bf16 moved rec accuracy where det hmean did not (``make demo``: 2 bf16
  fine-tune steps read 14 of 16 words, float32 16 of 16; IC15 rec eval ~1.5 points, see
  ``export/parity.py``). ``Global.use_amp=true`` still turns it on.

``Global.use_amp=false`` / ``Global.channels_last=false`` opt out; ``true`` forces. Losses are
always computed in float32 (``loop.train_one_epoch``). The choice and its reason are logged once.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from ocr_core.config.schema import GlobalConfig

log = logging.getLogger("ocrflow")

BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


@dataclass(frozen=True)
class FastPath:
    """What a run uses; ``reason`` says why (logged)."""

    amp: bool
    amp_dtype: torch.dtype
    channels_last: bool
    grad_scaler: bool  # float16 on CUDA needs loss scaling
    cudnn_benchmark: bool
    reason: str


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU feature flags of the first processor listed (empty when unreadable)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags") and ":" in line:
            return set(line.split(":", 1)[1].split())
    return set()


@lru_cache(maxsize=1)
def cpu_bf16() -> tuple[bool, str]:
    """``(native bf16?, why)`` for this machine's CPU."""
    flags = cpu_flags()
    found = [f for f in BF16_CPU_FLAGS if f in flags]
    capability = torch.backends.cpu.get_cpu_capability()
    if found:
        return True, f"CPU has {'+'.join(found)} (torch capability {capability})"
    if not flags:  # no /proc/cpuinfo (macOS, containers hiding it): ask oneDNN
        onednn = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        if onednn is not None and bool(onednn()):
            return True, f"oneDNN reports bf16 support (torch capability {capability})"
    return False, f"CPU lacks amx_bf16/avx512_bf16 (torch capability {capability}): bf16 would be emulated"


def _dtype(name: str | None, default: torch.dtype) -> torch.dtype:
    if name is None:
        return default
    return torch.float16 if name in ("float16", "fp16") else torch.bfloat16


def resolve_fast_path(g: GlobalConfig, device: torch.device, bf16_cpu: tuple[bool, str] | None = None,
                      model_type: str = "det") -> FastPath:
    """Decide precision/layout for ``device`` and ``model_type`` from ``Global`` (``None`` = auto)."""
    rec = model_type == "rec"
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        native_bf16 = major >= 8
        why = f"CUDA capability {major}.{minor}: " + ("bf16 native" if native_bf16 else "no native bf16, fp16")
        if rec and g.use_amp is None:
            why += "; rec: no automatic AMP"
        amp = (not rec) if g.use_amp is None else g.use_amp
        dtype = _dtype(g.amp_dtype, torch.bfloat16 if native_bf16 else torch.float16)
        cl = True if g.channels_last is None else g.channels_last
        return FastPath(amp, dtype, cl, grad_scaler=amp and dtype == torch.float16, cudnn_benchmark=True,
                        reason=why)
    native, why = bf16_cpu if bf16_cpu is not None else cpu_bf16()
    if rec and g.use_amp is None:
        why += "; rec: no automatic AMP"
    amp = (native and not rec) if g.use_amp is None else g.use_amp
    dtype = _dtype(g.amp_dtype, torch.bfloat16)
    if amp and dtype == torch.float16:
        log.warning("float16 autocast is not supported on CPU; using bfloat16")
        dtype = torch.bfloat16
    cl = (device.type == "cpu") if g.channels_last is None else g.channels_last
    return FastPath(amp, dtype, cl, grad_scaler=False, cudnn_benchmark=False, reason=why)


def apply_fast_path(g: GlobalConfig, device: torch.device, model_type: str = "det") -> tuple[GlobalConfig, FastPath]:
    """Resolve, log, set process-wide switches; returns ``Global`` with concrete booleans."""
    fp = resolve_fast_path(g, device, model_type=model_type)
    if fp.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    source = {k: "auto" if getattr(g, k) is None else "config" for k in ("use_amp", "channels_last")}
    log.info("fast path: amp %s (%s, %s), channels_last %s (%s); %s", fp.amp,
             str(fp.amp_dtype).replace("torch.", "") if fp.amp else "off", source["use_amp"],
             fp.channels_last, source["channels_last"], fp.reason)
    return dataclasses.replace(g, use_amp=fp.amp, channels_last=fp.channels_last), fp
