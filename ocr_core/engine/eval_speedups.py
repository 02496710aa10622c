"""What makes :func:`ocr_core.engine.loop.evaluate` fast: BatchNorm folded into the preceding
convolution for inference, and post-processing/metric work overlapped with the next forward.
"""

from __future__ import annotations

import copy
import logging
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

log = logging.getLogger("ocrflow")

CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _conv_bn_pairs(model: nn.Module, run: Callable[[nn.Module], Any]) -> list[tuple[str, str]]:
    """``(conv name, bn name)`` where, in one forward pass, every call of the BatchNorm took the
    output of the same convolution's call just made (a ``bn(conv(x))`` chain)."""
    names = {m: n for n, m in model.named_modules()}
    # id -> (name, the tensor itself): holding it keeps its id from being reused by a later tensor
    last_conv_out: dict[int, tuple[str, torch.Tensor]] = {}
    feeds: dict[str, set[str | None]] = {}
    hooks = []

    def conv_hook(mod: nn.Module, inp: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor):
            last_conv_out.clear()  # only the most recent convolution output can be a direct input
            last_conv_out[id(out)] = (names[mod], out)

    def bn_hook(mod: nn.Module, inp: Any) -> None:
        src = last_conv_out.get(id(inp[0]))
        feeds.setdefault(names[mod], set()).add(src[0] if src is not None else None)

    for mod in model.modules():
        if isinstance(mod, CONV_TYPES):
            hooks.append(mod.register_forward_hook(conv_hook))
        elif isinstance(mod, BN_TYPES) and mod.running_mean is not None:  # batch statistics at eval: not foldable
            hooks.append(mod.register_forward_pre_hook(bn_hook))
    try:
        run(model)
    finally:
        for h in hooks:
            h.remove()
    conv_users: dict[str, int] = {}
    for srcs in feeds.values():
        for s in srcs:
            if s is not None:
                conv_users[s] = conv_users.get(s, 0) + 1
    pairs = []
    for bn, srcs in feeds.items():
        src = next(iter(srcs))
        if len(srcs) == 1 and src is not None and conv_users[src] == 1:
            pairs.append((src, bn))
    return pairs


def _set(model: nn.Module, name: str, value: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, value)


def fuse_conv_bn(model: nn.Module, example: torch.Tensor, forward: Callable[[nn.Module, torch.Tensor], Any],
                 atol: float = 1e-2) -> nn.Module:
    """An eval-mode copy of ``model`` with each ``bn(conv(x))`` folded into the convolution.

    The chains are found by running ``forward(model, example)`` once with hooks; a convolution
    whose output also goes elsewhere is only folded if that is invisible, which the check below
    enforces: the fused copy must reproduce the model's outputs on ``example`` (float32) within
    ``atol`` relative to their scale, otherwise ``model`` itself is returned. A wrongly folded
    chain changes outputs by O(1); reordered rounding stays near 1e-5 in trained models (up to
    ~1e-3 in untrained ones, which amplify it), hence 1e-2. ``model`` is never modified.
    """
    fused = copy.deepcopy(model).eval()
    with torch.inference_mode():
        pairs = _conv_bn_pairs(fused, lambda m: forward(m, example))
    if not pairs:
        return model
    for conv_name, bn_name in pairs:
        conv, bn = fused.get_submodule(conv_name), fused.get_submodule(bn_name)
        assert isinstance(conv, CONV_TYPES) and isinstance(bn, BN_TYPES)
        _set(fused, conv_name, fuse_conv_bn_eval(conv, bn))
        _set(fused, bn_name, nn.Identity())
    with torch.inference_mode():
        want, got = _flat(forward(model, example)), _flat(forward(fused, example))
    ok = len(want) == len(got) and all(
        a.shape == b.shape and float((a.float() - b.float()).abs().max()) <= atol * max(1.0, float(a.float().abs().max()))
        for a, b in zip(want, got))
    if not ok:
        log.warning("BatchNorm folding changed the model's outputs; evaluating unfused")
        return model
    log.debug("folded %d BatchNorm layers into their convolutions for evaluation", len(pairs))
    return fused


def _flat(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for k in sorted(out, key=str) for t in _flat(out[k])]
    if isinstance(out, (list, tuple)):
        return [t for v in out for t in _flat(v)]
    return []


def spare_cores() -> int:
    """Cores this process may use beyond torch's intra-op threads."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(0, cores - torch.get_num_threads())


def fusion_example(images: torch.Tensor, model_type: str) -> torch.Tensor:
    """One image of the first batch; det inputs cropped to <= 256x256 (fully convolutional, and
    the crop keeps DetResizeForTest's multiples of 32), rec inputs kept whole (fixed shapes)."""
    x = images[:1]
    return x[..., :256, :256] if model_type == "det" and x.dim() == 4 else x


def post_and_score(preds: Any, batch: list[Any], post_process: Callable[..., Any], metric: Any,
                   model_type: str, on_batch: Callable[[list[Any], Any], None] | None) -> None:
    """Post-process one batch's predictions, feed the metric and ``on_batch`` (host side)."""
    with torch.inference_mode():
        host_batch = [b.cpu().numpy() if isinstance(b, torch.Tensor) else b for b in batch]
        if model_type == "det" or len(host_batch) > 1:
            post = post_process(preds, host_batch[1])
        else:
            post = post_process(preds)
        metric(post, host_batch)
        if on_batch is not None:
            on_batch(host_batch, post)


class OrderedBackground:
    """Runs submitted jobs one at a time, in order, on one background thread, so the host-side
    post-process and metric of batch *i* overlap the forward of batch *i + 1* (numpy, OpenCV,
    GEOS and torch release the GIL). At most ``max_pending`` jobs wait; errors surface in the
    caller at the next :meth:`submit` or at :meth:`drain`."""

    def __init__(self, max_pending: int = 2) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ocrflow-eval-post")
        self._pending: deque[Future] = deque()
        self._max = max(1, max_pending)

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        while len(self._pending) >= self._max:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(fn, *args))

    def drain(self) -> None:
        """Wait for every job; raises the first job error."""
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        """Stop without raising (the caller is already handling an error)."""
        self._pending.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)
