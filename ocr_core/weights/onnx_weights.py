"""Read the weights out of an exported ONNX graph, layer by layer, with their wiring.

Exported inference graphs (Paddle → ONNX in particular) keep weights as ``Constant`` nodes with
names that say nothing about the PyTorch module they belong to, and their numbering is not the
order of the layers. :func:`read_onnx_layers` walks the graph in execution (topological) order
and returns each weight-bearing layer (Conv, BatchNorm, MatMul/Gemm, LayerNorm, ConvTranspose)
with its tensors in PyTorch layout and the set of layers its input comes from; the structure is
what :mod:`ocr_core.weights.layer_match` uses to pair them with our modules.

Recognised forms: weights as initializers or ``Constant`` nodes; Conv/ConvTranspose bias as a
third input or a following ``Add`` (Paddle: ``Reshape(bias)`` + ``Add``); MatMul weights
``[in, out]`` (transposed here) + bias ``Add``; LayerNorm as one op or decomposed into
``ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div/Mul/Add``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

__all__ = ["ROLES", "OnnxLayer", "read_onnx_layers"]

# a layer's tensors: role -> (ONNX name, array); a recognised layer: (kind, tensors, eps)
Params = dict[str, tuple[str, np.ndarray]]
Found = tuple[str, Params, float | None]
# tensor roles per kind, in PyTorch attribute names
ROLES = {"conv": ("weight", "bias"), "deconv": ("weight", "bias"), "linear": ("weight", "bias"),
         "ln": ("weight", "bias"), "bn": ("weight", "bias", "running_mean", "running_var")}


@dataclass
class OnnxLayer:
    """A weight-bearing layer of an ONNX graph; ``tensors`` are in PyTorch layout."""

    index: int
    kind: str
    node: str
    tensors: dict[str, np.ndarray]
    names: dict[str, str]
    preds: frozenset[int]
    eps: float | None = None


class _Graph:
    def __init__(self, model: onnx.ModelProto) -> None:
        g = model.graph
        self.consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        self.nodes = []
        for n in g.node:
            if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
                self.consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
            else:
                self.nodes.append(n)
        self.producer = {o: n for n in self.nodes for o in n.output}
        self.consumers: dict[str, list[Any]] = defaultdict(list)
        for n in self.nodes:
            for i in n.input:
                self.consumers[i].append(n)

    def param(self, name: str) -> tuple[str, np.ndarray] | None:
        """A constant, possibly behind Identity/Reshape/Cast (bias and LayerNorm reshapes)."""
        for _ in range(4):
            if name in self.consts:
                return name, self.consts[name]
            node = self.producer.get(name)
            if node is None or node.op_type not in ("Identity", "Reshape", "Cast", "Unsqueeze"):
                return None
            name = node.input[0]
        return None

    def op(self, name: str, op_type: str) -> Any:
        node = self.producer.get(name)
        return node if node is not None and node.op_type == op_type else None

    def only_consumer(self, name: str, op_type: str) -> Any:
        cons = self.consumers.get(name, [])
        return cons[0] if len(cons) == 1 and cons[0].op_type == op_type else None

    def vector_operand(self, node: Any, size: int, other: str) -> tuple[str, np.ndarray] | None:
        """The constant operand of a binary ``node`` (the one that is not ``other``), if a vector."""
        for i in node.input:
            if i == other:
                continue
            p = self.param(i)
            if p is not None and p[1].ndim >= 1 and p[1].size == size:  # not a 0-d scalar
                return p[0], p[1].reshape(-1)
        return None


def _attr(node: Any, name: str, default: Any) -> Any:
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _bias_add(g: _Graph, out: str, size: int) -> tuple[str, np.ndarray] | None:
    add = g.only_consumer(out, "Add")
    return g.vector_operand(add, size, out) if add is not None else None


def _layernorm(g: _Graph, div: Any) -> tuple[Any, Params, float | None] | None:
    """Recognise ``(x - mean(x)) / sqrt(var(x) + eps) * gamma + beta`` at its Div node."""
    sub, sqrt = g.op(div.input[0], "Sub"), g.op(div.input[1], "Sqrt")
    if sub is None or sqrt is None or g.op(sub.input[1], "ReduceMean") is None:
        return None
    add_eps = g.op(sqrt.input[0], "Add")
    if add_eps is None:
        return None
    eps_p = next((g.param(i) for i in add_eps.input if g.param(i) is not None), None)
    mul = g.only_consumer(div.output[0], "Mul")
    if mul is None:
        return None
    gamma = next((g.param(i) for i in mul.input if i != div.output[0] and g.param(i)), None)
    add = g.only_consumer(mul.output[0], "Add")
    beta = next((g.param(i) for i in add.input if i != mul.output[0] and g.param(i)), None) \
        if add is not None else None
    if gamma is None or beta is None:
        return None
    eps = float(eps_p[1].reshape(-1)[0]) if eps_p is not None else None
    return mul, {"weight": (gamma[0], gamma[1].reshape(-1)), "bias": (beta[0], beta[1].reshape(-1))}, eps


def _layer_of(g: _Graph, n: Any) -> Found | None:
    """(kind, role -> (onnx name, array in torch layout), eps) if ``n`` is a weight-bearing node."""
    t = n.op_type
    if t in ("Conv", "ConvTranspose"):
        w = g.param(n.input[1])
        if w is None:
            return None
        out_ch = w[1].shape[0] if t == "Conv" else w[1].shape[1] * int(_attr(n, "group", 1))
        b = g.param(n.input[2]) if len(n.input) > 2 and n.input[2] else _bias_add(g, n.output[0], out_ch)
        tensors = {"weight": w}
        if b is not None:
            tensors["bias"] = (b[0], b[1].reshape(-1))
        return ("conv" if t == "Conv" else "deconv"), tensors, None
    if t == "BatchNormalization":
        ps = [g.param(i) for i in n.input[1:5]]
        if any(p is None for p in ps):
            return None
        return "bn", dict(zip(ROLES["bn"], ps)), float(_attr(n, "epsilon", 1e-5))  # type: ignore[arg-type]
    if t in ("MatMul", "Gemm"):
        w = g.param(n.input[1])
        if w is None or w[1].ndim != 2:
            return None
        arr = w[1] if t == "Gemm" and _attr(n, "transB", 0) else w[1].T  # torch Linear is [out, in]
        tensors = {"weight": (w[0], np.ascontiguousarray(arr))}
        b = g.param(n.input[2]) if t == "Gemm" and len(n.input) > 2 else \
            _bias_add(g, n.output[0], arr.shape[0])
        if b is not None:
            tensors["bias"] = (b[0], b[1].reshape(-1))
        return "linear", tensors, None
    if t == "LayerNormalization":
        ps = [g.param(i) for i in n.input[1:3]]
        tensors = {r: p for r, p in zip(("weight", "bias"), ps) if p is not None}
        return "ln", tensors, float(_attr(n, "epsilon", 1e-5))
    return None


def read_onnx_layers(model: onnx.ModelProto) -> list[OnnxLayer]:
    """Weight-bearing layers of ``model`` in execution order, with their inputs' layers.

    Handles weights stored as initializers or ``Constant`` nodes, Conv/ConvTranspose bias given
    as a third input or as a following ``Add`` (Paddle: ``Reshape(bias)`` + ``Add``), BatchNorm,
    MatMul/Gemm (+ bias Add), and LayerNorm either as one op or decomposed into primitives.
    """
    g = _Graph(model)
    ln_at_mul: dict[str, tuple[Params, float | None]] = {}
    for n in g.nodes:
        ln = _layernorm(g, n) if n.op_type == "Div" else None
        if ln is not None:
            ln_at_mul[ln[0].output[0]] = (ln[1], ln[2])
    anc: dict[str, frozenset[int]] = {}
    layers: list[OnnxLayer] = []
    empty: frozenset[int] = frozenset()
    for n in g.nodes:
        if n.op_type == "Shape":  # shape-only dependencies are not dataflow
            continue
        preds = frozenset().union(*(anc.get(i, empty) for i in n.input))
        found: Found | None
        if n.op_type == "Mul" and n.output[0] in ln_at_mul:
            found = ("ln", *ln_at_mul[n.output[0]])
        else:
            found = _layer_of(g, n)
        if found is None:
            for o in n.output:
                anc[o] = preds
            continue
        kind, tensors, eps = found
        idx = len(layers)
        layers.append(OnnxLayer(
            index=idx, kind=kind, node=n.name or n.output[0],
            tensors={r: np.asarray(a, dtype=np.float32) for r, (_, a) in tensors.items()},
            names={r: nm for r, (nm, _) in tensors.items()}, preds=preds, eps=eps))
        for o in n.output:
            anc[o] = frozenset((idx,))
    return layers
