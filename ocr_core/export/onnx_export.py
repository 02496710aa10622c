"""Export det/rec checkpoints (or one role of a distillation checkpoint) to ONNX.

The graph is exported in export mode (raw shrink map ``[B,1,H,W]`` or CTC probabilities
``[B,T,C]``), with dynamic batch/height/width (rec: batch/width), constant folding, and then
cleaned so onnxruntime runs less: BatchNormalization folded into the preceding Conv /
ConvTranspose, Paddle's ``clamp(0.2x + 0.5, 0, 1)`` SE gate fused into one ``HardSigmoid``
(HardSwish is already one op at opset >= 14), Identity nodes dropped. The pre/post-processing
settings are embedded as ``metadata_props`` (see :mod:`ocr_core.inference.metadata`).
"""

from __future__ import annotations

import io
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from ocr_core.config import config_hash, dump_config
from ocr_core.config.plain import plain_config, role_architecture
from ocr_core.errors import ConfigError
from ocr_core.inference import metadata as md

if TYPE_CHECKING:
    from ocr_core.modeling.architectures import BaseModel

log = logging.getLogger("ocrflow")
DEFAULT_OPSET = 17
IO_NAMES = {"det": ("x", "maps"), "rec": ("x", "probs")}
DET_SAMPLE_HW = (128, 160)


@dataclass
class ExportedModel:
    """A model ready for export plus what the metadata needs."""

    model: BaseModel
    model_type: str
    algorithm: str
    arch: dict[str, Any]
    role: Optional[str] = None
    charset: Optional[list[str]] = None
    checkpoint: Optional[str] = None
    checkpoint_sha256: str = ""


@dataclass
class ExportResult:
    """Paths and metadata of one export."""

    onnx_path: Path
    config_path: Path
    metadata: dict[str, Any]
    exported: ExportedModel
    op_counts: dict[str, int] = field(default_factory=dict)


def _strip_role(state: dict[str, torch.Tensor], role: Optional[str]) -> dict[str, torch.Tensor]:
    prefixes = {k.split(".", 1)[0] for k in state if "." in k}
    if role is not None and any(k.startswith(role + ".") for k in state):
        return {k[len(role) + 1:]: v for k, v in state.items() if k.startswith(role + ".")}
    distill = {p for p in prefixes if p[:1].isupper() and p in ("Student", "Student2", "Teacher")}
    if distill and all(k.split(".", 1)[0] in distill for k in state):
        raise ConfigError(f"the checkpoint holds a distillation model ({', '.join(sorted(distill))}); "
                          "pick one with --role", "role")
    return state


def load_export_model(cfg: dict[str, Any], checkpoint: Optional[str] = None,
                      role: Optional[str] = None, loaded: Optional[dict[str, Any]] = None) -> ExportedModel:
    """Build the (role's) model from ``cfg``, load ``checkpoint`` strictly, switch to export mode.

    ``loaded``: ``checkpoint`` already read (``load_checkpoint``); the file is then only hashed, so an
    export that also needed the checkpoint's config reads it with ``torch.load`` once.
    """
    from ocr_core.build import create_model
    from ocr_core.config import load_charset, wire_rec_heads
    from ocr_core.modeling.architectures import BaseModel
    from ocr_core.weights import checkpoint as ckpt_mod

    arch, role = role_architecture(cfg, role)
    model_type = arch.get("model_type") or "det"
    ck: dict[str, Any] = {}
    if checkpoint:
        ck = loaded if loaded is not None else ckpt_mod.load_checkpoint(checkpoint)
    charset = None
    if model_type == "rec":
        charset = ck.get("charset") or load_charset({**cfg, "Architecture": arch})
        if charset is None:  # load_charset answers None only for a config that is not rec
            raise ConfigError("no rec dictionary: the architecture is not a rec model", "Architecture.model_type")
        arch = wire_rec_heads({"Architecture": arch}, len(charset) + 1)["Architecture"]
    model = create_model({"Architecture": arch})
    if not isinstance(model, BaseModel):  # role_architecture gives one role's plain architecture
        raise ConfigError(f"expected a plain architecture to export, built {type(model).__name__}", "Architecture")
    sha = ""
    if checkpoint:
        state = ckpt_mod.to_model_keys(_strip_role(ck["model"], role), model)
        report = ckpt_mod.load_weights(model, state, max_missing_ratio=1.0, source=str(checkpoint))
        ckpt_mod.require_inference_weights(report, model, ck, str(checkpoint), arch)
        if report.unexpected:
            raise ckpt_mod.CheckpointError(
                f"{checkpoint} holds {len(report.unexpected)} tensor(s) the exported model does not have: "
                f"{', '.join(report.unexpected[:5])}; the checkpoint holds {ckpt_mod.describe_checkpoint(ck)}")
        log.info("export: loaded %s (%s)", checkpoint, report.summary())
        sha = ckpt_mod.file_sha256(ckpt_mod.resolve_path(checkpoint))
    else:
        log.warning("export: no checkpoint given; exporting randomly initialised weights")
    model.eval()
    model.export_mode = True
    return ExportedModel(model=model, model_type=model_type, algorithm=str(arch.get("algorithm") or ""),
                         arch=arch, role=role, charset=charset, checkpoint=checkpoint, checkpoint_sha256=sha)


def deploy_model(model: nn.Module) -> nn.Module:
    """The graph to export: a re-parameterised copy when the model has RepViT branches (OpenOCR's
    ``fuse``), else ``model`` itself. The parity gate compares the export with the unfused model."""
    import copy

    from ocr_core.modeling.backbones.det_repvit import Conv2D_BN, RepVGGDW, reparameterize

    if not any(isinstance(m, (Conv2D_BN, RepVGGDW)) for m in model.modules()):
        return model
    fused = copy.deepcopy(model).eval()
    n = reparameterize(fused)
    if not n:
        return model
    log.info("export: re-parameterised %d RepViT modules into single convs", n)
    return fused


def sample_input(model_type: str, rec_shape: Optional[list[int]] = None, batch: int = 1) -> torch.Tensor:
    """A deterministic dummy input used for tracing."""
    gen = torch.Generator().manual_seed(0)
    if model_type == "rec":
        c, h, w = rec_shape or md.DEFAULT_REC_SHAPE
        return torch.randn(batch, c, h, w, generator=gen)
    return torch.randn(batch, 3, *DET_SAMPLE_HW, generator=gen)


def _check_opset(opset: int) -> None:
    if opset < 17:
        raise ConfigError(f"opset must be >= 17, got {opset}", "opset")


def to_onnx(model: nn.Module, model_type: str, opset: int = DEFAULT_OPSET,
            example: Optional[torch.Tensor] = None, optimize: bool = True) -> onnx.ModelProto:
    """Trace ``model`` (export mode, eval) into an ONNX ModelProto with dynamic axes."""
    _check_opset(opset)
    in_name, out_name = IO_NAMES[model_type]
    example = sample_input(model_type) if example is None else example
    if model_type == "rec":
        axes = {in_name: {0: "batch", 3: "width"}, out_name: {0: "batch", 1: "time"}}
    else:
        axes = {in_name: {0: "batch", 2: "height", 3: "width"}, out_name: {0: "batch", 2: "height", 3: "width"}}
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        # the TorchScript exporter (dynamo=False) writes to a BytesIO; the public annotation lists paths only
        torch.onnx.export(model, (example,), buf, dynamo=False,  # type: ignore[arg-type]
                          opset_version=opset, input_names=[in_name],
                          output_names=[out_name], dynamic_axes=axes, do_constant_folding=True)
    proto = onnx.load_from_string(buf.getvalue())
    if optimize:
        proto = optimize_graph(proto)
    onnx.checker.check_model(proto)
    return proto


# ----------------------------------------------------------------------------------- graph passes

def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    vals = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            vals[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return vals


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    out: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for i in n.input:
            out.setdefault(i, []).append(n)
    return out


def _remove_identity(graph: onnx.GraphProto) -> None:
    graph_outputs = {o.name for o in graph.output}
    for node in [n for n in graph.node if n.op_type == "Identity"]:
        src, dst = node.input[0], node.output[0]
        if dst in graph_outputs:
            producers = [n for n in graph.node if src in n.output]
            if len(producers) != 1 or src in graph_outputs or len(_consumers(graph).get(src, [])) != 1:
                continue
            producers[0].output[list(producers[0].output).index(src)] = dst
        else:
            for n in graph.node:
                for k, name in enumerate(n.input):
                    if name == dst:
                        n.input[k] = src
        graph.node.remove(node)


def _fold_batchnorm(graph: onnx.GraphProto) -> int:
    """Fold ``BatchNormalization(Conv(x))`` into the conv's weight/bias (conv output used once)."""
    inits = {i.name: i for i in graph.initializer}
    consumers = _consumers(graph)
    producer = {o: n for n in graph.node for o in n.output}
    folded = 0
    for bn in [n for n in graph.node if n.op_type == "BatchNormalization"]:
        conv = producer.get(bn.input[0])
        if conv is None or conv.op_type not in ("Conv", "ConvTranspose") or len(consumers[bn.input[0]]) != 1:
            continue
        if any(name not in inits for name in [*bn.input[1:5], conv.input[1], *conv.input[2:3]]):
            continue
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        gamma, beta, mean, var = (numpy_helper.to_array(inits[n]).astype(np.float64) for n in bn.input[1:5])
        scale = gamma / np.sqrt(var + eps)
        w = numpy_helper.to_array(inits[conv.input[1]]).astype(np.float64)
        groups = next((a.i for a in conv.attribute if a.name == "group"), 1)
        if conv.op_type == "Conv":
            w = w * scale.reshape(-1, 1, 1, 1)
        else:  # ConvTranspose weight: [C_in, C_out / groups, kH, kW]
            shape = w.shape
            w = w.reshape(groups, shape[0] // groups, *shape[1:]) * scale.reshape(groups, 1, -1, 1, 1)
            w = w.reshape(shape)
        n_out = scale.shape[0]
        b = numpy_helper.to_array(inits[conv.input[2]]).astype(np.float64) if len(conv.input) > 2 and conv.input[2] \
            else np.zeros(n_out)
        b = (b - mean) * scale + beta
        w_name, b_name = conv.output[0] + "_fused_w", conv.output[0] + "_fused_b"
        graph.initializer.extend([numpy_helper.from_array(w.astype(np.float32), w_name),
                                  numpy_helper.from_array(b.astype(np.float32), b_name)])
        conv.input[1] = w_name
        if len(conv.input) > 2:
            conv.input[2] = b_name
        else:
            conv.input.append(b_name)
        conv.output[0] = bn.output[0]
        graph.node.remove(bn)
        folded += 1
    return folded


def _scalar(consts: dict[str, np.ndarray], name: str) -> Optional[float]:
    v = consts.get(name)
    return float(v) if v is not None and v.size == 1 else None


def _fuse_hardsigmoid(graph: onnx.GraphProto) -> int:
    """``Clip(Add(Mul(x, a), b), 0, 1)`` -> ``HardSigmoid(x, alpha=a, beta=b)``."""
    consts = _constants(graph)
    consumers = _consumers(graph)
    producer = {o: n for n in graph.node for o in n.output}
    fused = 0
    for clip in [n for n in graph.node if n.op_type == "Clip"]:
        if len(clip.input) < 3 or _scalar(consts, clip.input[1]) != 0.0 or _scalar(consts, clip.input[2]) != 1.0:
            continue
        add = producer.get(clip.input[0])
        if add is None or add.op_type != "Add" or len(consumers[add.output[0]]) != 1:
            continue
        b_idx = next((k for k in (0, 1) if _scalar(consts, add.input[k]) is not None), None)
        if b_idx is None:
            continue
        mul = producer.get(add.input[1 - b_idx])
        if mul is None or mul.op_type != "Mul" or len(consumers[mul.output[0]]) != 1:
            continue
        a_idx = next((k for k in (0, 1) if _scalar(consts, mul.input[k]) is not None), None)
        if a_idx is None:
            continue
        alpha, beta = _scalar(consts, mul.input[a_idx]), _scalar(consts, add.input[b_idx])
        node = onnx.helper.make_node("HardSigmoid", [mul.input[1 - a_idx]], [clip.output[0]],
                                     name=clip.name + "_hardsigmoid", alpha=alpha, beta=beta)
        pos = list(graph.node).index(clip)
        for n in (clip, add, mul):
            graph.node.remove(n)
        graph.node.insert(pos - 2, node)
        fused += 1
    return fused


def _prune(graph: onnx.GraphProto) -> None:
    """Drop Constant nodes and initializers nothing reads."""
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    for n in [n for n in graph.node if n.op_type == "Constant" and n.output[0] not in used]:
        graph.node.remove(n)
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def optimize_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """Apply the graph passes (in place) and return the model, topologically valid."""
    g = model.graph
    _remove_identity(g)
    n_bn = _fold_batchnorm(g)
    n_hs = _fuse_hardsigmoid(g)
    _prune(g)
    log.debug("onnx passes: %d BN folded, %d HardSigmoid fused", n_bn, n_hs)
    return model


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    out: dict[str, int] = {}
    for n in model.graph.node:
        out[n.op_type] = out.get(n.op_type, 0) + 1
    return dict(sorted(out.items()))


def checkpoint_from_config(cfg: dict[str, Any]) -> Optional[str]:
    """``Global.pretrained_model`` (else ``Global.checkpoints``), as PaddleOCR's export_model."""
    g = cfg.get("Global") or {}
    src = g.get("pretrained_model") or g.get("checkpoints")
    return None if src in (None, "", "None") else str(src)


def export_onnx(cfg: dict[str, Any], out_dir: str | Path, checkpoint: Optional[str] = None,
                role: Optional[str] = None, opset: int = DEFAULT_OPSET,
                exported: Optional[ExportedModel] = None, loaded: Optional[dict[str, Any]] = None) -> ExportResult:
    """Export ``cfg``'s model to ``out_dir/model.onnx`` (+ ``inference.yml``) with metadata.

    Args:
        cfg: The resolved config.
        out_dir: Output directory (created).
        checkpoint: Weights (default: ``Global.pretrained_model`` / ``Global.checkpoints``).
        role: Sub-model of a DistillationModel config/checkpoint (default ``Student``).
        opset: ONNX opset (>= 17).
        exported: An already built model (skips building/loading).
        loaded: The checkpoint already read (see :func:`load_export_model`).
    """
    _check_opset(opset)  # bad settings and an unreadable checkpoint are refused before out_dir exists
    if exported is None:
        exported = load_export_model(cfg, checkpoint or checkpoint_from_config(cfg), role, loaded=loaded)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rec_shape = None
    example = None
    meta = md.build_metadata(cfg, exported.model_type, exported.algorithm, config_hash(cfg),
                             exported.checkpoint_sha256, character=exported.charset,
                             io_names=IO_NAMES[exported.model_type], role=exported.role, opset=opset)
    if exported.model_type == "rec":
        rec_shape = meta[md.PREFIX + "resize"]["image_shape"]
        example = sample_input("rec", rec_shape)
    proto = to_onnx(deploy_model(exported.model), exported.model_type, opset, example)
    md.write_metadata(proto, meta)
    onnx_path = out / "model.onnx"
    onnx.save(proto, str(onnx_path))
    config_path = out / "inference.yml"
    dump_config(cfg, config_path)
    counts = op_counts(proto)
    log.info("exported %s (%s, %s) to %s: ops %s", exported.model_type, exported.algorithm,
             exported.role or "single model", onnx_path, counts)
    return ExportResult(onnx_path=onnx_path, config_path=config_path, metadata=meta, exported=exported,
                        op_counts=counts)


__all__ = [
    "DEFAULT_OPSET",
    "ExportResult",
    "ExportedModel",
    "checkpoint_from_config",
    "deploy_model",
    "export_onnx",
    "load_export_model",
    "op_counts",
    "optimize_graph",
    "plain_config",
    "role_architecture",
    "to_onnx",
]
