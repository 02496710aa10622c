"""Pair a PyTorch model's layers with the layers of an ONNX graph and load the weights.

* :func:`trace_torch_layers` runs one dummy forward with hooks and records each Conv2d,
  BatchNorm2d, Linear, LayerNorm and ConvTranspose2d the first time it runs (forward-execution
  order), with the layers its input came from (tracked through every torch op by a
  ``TorchFunctionMode``).
* :func:`match_layers` orders both layer graphs canonically (dependency depth, canonical ranks of
  the inputs, height, kind and shapes, execution order), so two models that compute the same
  thing but schedule independent branches differently (PaddleOCR's RSEFPN runs its pyramid levels
  top-down, ours bottom-up) still line up. Pairs are checked for kind, tensor shapes and wiring;
  the first difference is an error that names both sides.
* :func:`load_matched` copies the tensors in and lists our modules the graph lacks ("fresh").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ocr_core.errors import OCRFlowError
from ocr_core.weights.onnx_weights import ROLES, OnnxLayer

__all__ = ["LayerMatchError", "MatchResult", "TorchLayer", "canonical_order", "load_matched",
           "match_layers", "trace_torch_layers"]

# torch module type -> layer kind (subclasses first)
TORCH_KINDS: tuple[tuple[type[nn.Module], str], ...] = (
    (nn.ConvTranspose2d, "deconv"), (nn.Conv2d, "conv"), (nn.BatchNorm2d, "bn"),
    (nn.Linear, "linear"), (nn.LayerNorm, "ln"))


class LayerMatchError(OCRFlowError):
    """The ONNX graph's layers do not fit the PyTorch model."""


@dataclass
class TorchLayer:
    """A weight-bearing module of the PyTorch model, in forward-execution order."""

    index: int
    kind: str
    name: str
    module: nn.Module
    preds: frozenset[int]

    def shapes(self) -> dict[str, tuple[int, ...]]:
        out = {}
        for role in ROLES[self.kind]:
            t = getattr(self.module, role, None)
            if isinstance(t, torch.Tensor):
                out[role] = tuple(t.shape)
        return out


@dataclass
class MatchResult:
    """Pairs ``(torch layer, onnx layer)`` in canonical order, plus our modules left untouched."""

    pairs: list[tuple[TorchLayer, OnnxLayer]] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# -------------------------------------------------------------------------------- torch side
def _tensors(obj: Any) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _tensors(o)]
    return []


class _Lineage(TorchFunctionMode):
    """Tracks, for every tensor made during a forward, the recorded layers it derives from."""

    def __init__(self) -> None:
        super().__init__()
        self.anc: dict[int, frozenset[int]] = {}
        self.keep: list[torch.Tensor] = []  # keeps ids unique while tracing

    def of(self, obj: Any) -> frozenset[int]:
        return frozenset().union(*(self.anc.get(id(t), frozenset()) for t in _tensors(obj)))

    def mark(self, obj: Any, value: frozenset[int]) -> None:
        for t in _tensors(obj):
            self.anc[id(t)] = value
            self.keep.append(t)

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        src = self.of((args, kwargs))
        if src:
            self.mark(out, src)
        return out


def _kind(module: nn.Module) -> str | None:
    return next((k for cls, k in TORCH_KINDS if isinstance(module, cls)), None)


def trace_torch_layers(model: nn.Module, example: torch.Tensor) -> list[TorchLayer]:
    """Run ``model(example)`` once (eval mode, no grad) and record its weight-bearing layers in order.

    Eval mode is what the exported graph computes (e.g. DBHead's threshold branch does not run).
    """
    lineage = _Lineage()
    layers: list[TorchLayer] = []
    seen: dict[int, int] = {}
    pending: dict[int, frozenset[int]] = {}
    names = {id(m): n for n, m in model.named_modules()}

    def pre_hook(mod: nn.Module, inputs: Any) -> None:
        pending[id(mod)] = lineage.of(inputs)

    def hook(mod: nn.Module, inputs: Any, output: Any) -> None:
        if id(mod) not in seen:
            seen[id(mod)] = len(layers)
            layers.append(TorchLayer(len(layers), _kind(mod) or "", names.get(id(mod), "?"), mod,
                                     pending.get(id(mod), frozenset())))
        lineage.mark(output, frozenset((seen[id(mod)],)))

    handles = []
    for m in model.modules():
        if _kind(m) is not None:
            handles += [m.register_forward_pre_hook(pre_hook), m.register_forward_hook(hook)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), lineage:
            model(example)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return layers


# ------------------------------------------------------------------------------- matching
def canonical_order(preds: list[frozenset[int]], signatures: list[Any] | None = None) -> list[int]:
    """Indices in an order that depends on the wiring only, not on how branches were scheduled.

    Sort key: dependency depth, then the canonical ranks of the inputs, then the height (longest
    path to an output; longer branches first), then ``signatures[i]`` (kind and shapes), then
    execution order. ``preds[i]`` holds indices < i (execution order is topological).
    """
    n = len(preds)
    depth: list[int] = []
    for p in preds:
        depth.append(1 + max(depth[q] for q in p) if p else 0)
    height = [0] * n
    for i in range(n - 1, -1, -1):
        for q in preds[i]:
            height[q] = max(height[q], height[i] + 1)
    sig = signatures if signatures is not None else [()] * n
    rank: dict[int, int] = {}
    order: list[int] = []
    for d in sorted(set(depth)):
        level = [i for i, di in enumerate(depth) if di == d]
        level.sort(key=lambda i: (sorted(rank[q] for q in preds[i]), -height[i], sig[i], i))
        for i in level:
            rank[i] = len(order)
            order.append(i)
    return order


def _describe(layer: TorchLayer | OnnxLayer) -> str:
    if isinstance(layer, TorchLayer):
        shapes = ", ".join(f"{r} {list(s)}" for r, s in layer.shapes().items())
        return f"our {type(layer.module).__name__} '{layer.name}' ({shapes})"
    shapes = ", ".join(f"{layer.names[r]} {list(a.shape)}" for r, a in layer.tensors.items())
    return f"ONNX {layer.kind} node '{layer.node}' ({shapes})"


def match_layers(ours: list[TorchLayer], theirs: list[OnnxLayer]) -> list[tuple[TorchLayer, OnnxLayer]]:
    """Pair the two layer lists in canonical order, checking kind, shapes and wiring.

    Raises:
        LayerMatchError: naming the first pair that differs (or the first unpaired layer).
    """
    sig_a = [(t.kind, sorted(t.shapes().items())) for t in ours]
    sig_b = [(o.kind, sorted((r, tuple(a.shape)) for r, a in o.tensors.items())) for o in theirs]
    a = [ours[i] for i in canonical_order([t.preds for t in ours], sig_a)]
    b = [theirs[i] for i in canonical_order([o.preds for o in theirs], sig_b)]
    pos_a = {t.index: k for k, t in enumerate(a)}
    pos_b = {o.index: k for k, o in enumerate(b)}
    pairs = []
    for k, (t, o) in enumerate(zip(a, b)):
        where = f"layer {k + 1} (in dependency order)"
        if t.kind != o.kind:
            raise LayerMatchError(f"{where}: kind differs: {_describe(t)} vs {_describe(o)}")
        shapes = t.shapes()
        if set(shapes) != set(o.tensors) or any(shapes[r] != o.tensors[r].shape for r in shapes):
            raise LayerMatchError(f"{where}: shape mismatch: {_describe(t)} vs {_describe(o)}")
        if {pos_a[q] for q in t.preds} != {pos_b[q] for q in o.preds}:
            raise LayerMatchError(f"{where}: wiring differs (inputs from layers "
                                  f"{sorted(pos_a[q] + 1 for q in t.preds)} vs "
                                  f"{sorted(pos_b[q] + 1 for q in o.preds)}): {_describe(t)} vs "
                                  f"{_describe(o)}")
        pairs.append((t, o))
    if len(a) != len(b):
        k = min(len(a), len(b))
        extra = _describe(a[k]) if len(a) > k else _describe(b[k])
        raise LayerMatchError(f"layer count differs: ours {len(a)}, ONNX {len(b)}; first unpaired "
                              f"layer {k + 1}: {extra}")
    return pairs


def load_matched(model: nn.Module, example: torch.Tensor, layers: list[OnnxLayer]) -> MatchResult:
    """Trace ``model``, match it to ``layers`` and copy the tensors in; report what stayed fresh."""
    ours = trace_torch_layers(model, example)
    pairs = match_layers(ours, layers)
    result = MatchResult(pairs=pairs)
    with torch.no_grad():
        for t, o in pairs:
            for role, arr in o.tensors.items():
                getattr(t.module, role).copy_(torch.from_numpy(arr))
            mod_eps = getattr(t.module, "eps", None)
            if o.eps is not None and mod_eps is not None and not np.isclose(mod_eps, o.eps, rtol=1e-3):
                result.notes.append(f"'{t.name}': our eps {mod_eps:g} vs ONNX {o.eps:g}")
    matched = {id(t.module) for t, _ in pairs}
    for name, m in model.named_modules():
        own = list(m.parameters(recurse=False)) + [b for b in m.buffers(recurse=False) if b.is_floating_point()]
        if own and id(m) not in matched:
            result.fresh.append(name)
    return result
