"""Read PaddleOCR ``.pdparams`` files safely and map their parameter names onto our models.

A ``.pdparams`` file is what ``paddle.save(model.state_dict(), path)`` writes: a pickle of a dict
``name -> numpy array`` (protocol 2-4), sometimes with a ``StructuredToParameterName@@`` entry
mapping structured names to Paddle's internal parameter names. It is read through a restricted
unpickler that resolves only the few numpy globals an array needs; any other global (``os.system``,
``builtins.eval``, a class with ``__reduce__`` ...) is refused *before* it can be called.

Name mapping (:func:`map_paddle_state`) works per model part (``backbone.``, ``neck.``, ``head.``,
each optionally under a distillation role ``Student.``/``Student2.``/``Teacher.``):

1. Explicit renames for the differences between Paddle's layer names and ours (BN ``_mean`` /
   ``_variance`` -> ``running_mean`` / ``running_var``; MobileNetV3 det ``stage{i}`` -> ``stages.i``;
   ResNet_vd ``bb_{s}_{b}`` -> ``stages.s.b``; ``_conv`` / ``_batch_norm`` -> ``conv`` / ``bn``;
   DBFPN ``in{k}_conv`` / ``p{k}_conv`` -> ``in_convs.(k-2)`` / ``p_convs.(k-2)``; Paddle LSTM
   ``lstm.{l}.cell_fw|cell_bw.X`` -> ``lstm.X_l{l}[_reverse]``; other leading underscores dropped).
2. Whatever is left in a part is paired by order (Paddle's state-dict order is its layer-definition
   order), but only when both sides have the same number of tensors left; every pair is
   shape-checked.

Linear weights are stored ``[in, out]`` by Paddle and are transposed onto ``nn.Linear``.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ocr_core.weights.checkpoint import CheckpointError, key_list_lines

__all__ = ["PaddleMapReport", "import_paddle", "looks_like_paddle", "map_paddle_state",
           "paddle_to_ours", "read_pdparams"]

log = logging.getLogger("ocrflow")

PARTS = ("backbone", "neck", "head")
ROLES_HINT = ("Student", "Student2", "Teacher")
# classifier layers of ImageNet backbone files (PaddleClas): never part of a det/rec backbone
CLASSIFIER_PREFIXES = ("fc.", "fc_", "last_conv.", "out.", "classifier.")


# ------------------------------------------------------------------------------------ reading
def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """Stand-in for ``_codecs.encode``: protocol-2 pickles store ``bytes`` as ``encode(str, 'latin1')``.

    The real ``_codecs.encode`` is never resolved; this only turns a str into bytes.
    """
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise CheckpointError(f"refused _codecs.encode({type(text).__name__}, {encoding!r}) in a .pdparams pickle")
    return text.encode("latin-1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    try:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    import collections

    return {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("_codecs", "encode"): _latin1_encode,  # our stand-in, not the real function
    }


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only numpy's array-rebuilding globals and ``OrderedDict``; refuses the rest."""

    def __init__(self, fh: io.BufferedIOBase, source: str) -> None:
        super().__init__(fh)
        self._source = source
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102
        obj = self._allowed.get((module, name))
        if obj is None:
            raise CheckpointError(
                f"refused to load {self._source}: the pickle references the global {module}.{name}, "
                "which a Paddle parameter file never needs (only numpy arrays are allowed); "
                "it was not imported or executed")
        return obj

    def persistent_load(self, pid: Any) -> Any:  # noqa: D102
        raise CheckpointError(f"refused to load {self._source}: persistent ids are not allowed")


def read_pdparams(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a Paddle ``.pdparams`` file into ``{name: tensor}`` (Paddle's names, file order).

    Raises:
        CheckpointError: unreadable file, a refused pickle global, object arrays, or no arrays.
    """
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            obj = _RestrictedUnpickler(fh, str(p)).load()  # type: ignore[arg-type]
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - any unpickling failure names the file
        raise CheckpointError(f"cannot read Paddle parameters {p}: {type(exc).__name__}: {exc}") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{p} is not a Paddle state dict (got {type(obj).__name__})")
    if "UnpackBigParamInfor@@" in obj:
        raise CheckpointError(f"{p} splits parameters over 4 GB (UnpackBigParamInfor@@): not supported")
    out: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if isinstance(key, str) and key.endswith("@@"):
            continue  # StructuredToParameterName@@ and other bookkeeping
        if not isinstance(value, np.ndarray):
            continue
        if value.dtype.hasobject:
            raise CheckpointError(f"refused to load {p}: {key!r} is an object array")
        out[str(key)] = torch.from_numpy(np.ascontiguousarray(value).copy())
    if not out:
        raise CheckpointError(f"{p} holds no parameter arrays")
    return out


# ------------------------------------------------------------------------------------ mapping
_RENAMES: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(a), b) for a, b in (
    (r"\._mean$", ".running_mean"),
    (r"\._variance$", ".running_var"),
    (r"^stage(\d+)\.", r"stages.\1."),                       # det MobileNetV3
    (r"^bb_(\d+)_(\d+)\.", r"stages.\1.\2."),                # det ResNet_vd
    (r"(^|\.)_batch_norm\.", r"\1bn."),
    (r"(^|\.)_se\.", r"\1se."),
    (r"(^|\.)_([A-Za-z][A-Za-z0-9_]*)\.", r"\1\2."),       # _conv, _depthwise_conv, ...
    (r"lstm\.(\d+)\.cell_fw\.(\w+)$", r"lstm.\2_l\1"),       # Paddle LSTM sub-cells
    (r"lstm\.(\d+)\.cell_bw\.(\w+)$", r"lstm.\2_l\1_reverse"),
))
_DBFPN = re.compile(r"^(in|p)([2-5])_conv\.")


def paddle_to_ours(suffix: str) -> str:
    """Our name for a Paddle parameter name inside one part (no ``backbone.``/role prefix)."""
    for pat, rep in _RENAMES:
        suffix = pat.sub(rep, suffix)
    m = _DBFPN.match(suffix)
    if m:
        suffix = f"{m.group(1)}_convs.{int(m.group(2)) - 2}." + suffix[m.end():]
    return suffix


@dataclass
class PaddleMapReport:
    """What :func:`map_paddle_state` did (keys are full names)."""

    matched: list[tuple[str, str]] = field(default_factory=list)      # (paddle, ours)
    by_order: list[tuple[str, str]] = field(default_factory=list)     # subset of matched
    transposed: list[str] = field(default_factory=list)               # ours
    missing: list[str] = field(default_factory=list)                  # ours, not filled
    unexpected: list[str] = field(default_factory=list)               # paddle, unused
    mismatched: list[tuple[str, str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)                  # classifier / duplicates
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"matched {len(self.matched)} (by order {len(self.by_order)}, transposed "
                f"{len(self.transposed)}), missing {len(self.missing)}, unexpected {len(self.unexpected)}, "
                f"shape-mismatched {len(self.mismatched)}, ignored {len(self.ignored)}")

    def details(self, limit: int = 10) -> str:
        lines = [self.summary(), *key_list_lines({"missing": self.missing, "unexpected": self.unexpected}, limit)]
        for pk, ok, a, b in self.mismatched[:limit]:
            lines.append(f"  shape mismatch {pk} -> {ok}: paddle {list(a)} vs ours {list(b)}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def looks_like_paddle(state: dict[str, Any]) -> bool:
    """True when a state dict uses Paddle's naming (BN ``_mean``/``_variance``)."""
    return any(k.endswith(("._mean", "._variance")) for k in state)


def _linear_weights(model: nn.Module) -> set[str]:
    return {f"{name}.weight" if name else "weight" for name, mod in model.named_modules()
            if isinstance(mod, nn.Linear)}


def _part_of(key: str, roles: list[str]) -> tuple[str, str] | None:
    """Split ``[role.]part.rest`` into (``[role.]part.``, ``rest``)."""
    bits = key.split(".")
    if bits[0] in PARTS and len(bits) > 1:
        return bits[0] + ".", ".".join(bits[1:])
    if len(bits) > 2 and bits[0] in roles and bits[1] in PARTS:
        return f"{bits[0]}.{bits[1]}.", ".".join(bits[2:])
    return None


def _fits(src: torch.Tensor, dst_shape: tuple[int, ...], linear: bool) -> torch.Tensor | None:
    """``src`` in our layout (Paddle Linear ``[in, out]`` transposed), or None if it cannot fit."""
    if linear and src.ndim == 2 and tuple(src.shape[::-1]) == dst_shape:
        return src.t().contiguous()
    if tuple(src.shape) == dst_shape and not (linear and src.ndim == 2 and src.shape[0] != src.shape[1]):
        return src
    return None


def _map_part(prefix: str, src: list[tuple[str, torch.Tensor]], own: dict[str, torch.Tensor],
              linear: set[str], out: dict[str, torch.Tensor], report: PaddleMapReport,
              src_prefix: str) -> None:
    """Map one part's Paddle tensors (suffix names) onto our keys under ``prefix``."""
    ours = [k for k in own if k.startswith(prefix) and not k.endswith("num_batches_tracked")]
    taken: set[str] = set()
    left: list[tuple[str, torch.Tensor]] = []
    for suffix, tensor in src:
        pkey = src_prefix + suffix
        key = prefix + paddle_to_ours(suffix)
        if key in taken:  # Paddle LSTMs list each weight twice (flat and per cell)
            val = _fits(tensor, tuple(own[key].shape), key in linear)
            same = key in out and val is not None and torch.equal(out[key], val)
            (report.ignored if same else report.unexpected).append(pkey)
            continue
        if key not in own:
            left.append((suffix, tensor))
            continue
        val = _fits(tensor, tuple(own[key].shape), key in linear)
        if val is None:
            report.mismatched.append((pkey, key, tuple(tensor.shape), tuple(own[key].shape)))
        else:
            out[key] = val
            report.matched.append((pkey, key))
            if val is not tensor:
                report.transposed.append(key)
        taken.add(key)
    rest = [k for k in ours if k not in taken]
    if not left:
        return
    if len(left) != len(rest):
        report.unexpected += [src_prefix + s for s, _ in left]
        report.notes.append(f"{prefix}: {len(left)} Paddle tensors had no name match and {len(rest)} of ours "
                            "are unfilled; not pairing them by order (counts differ)")
        return
    for (suffix, tensor), key in zip(left, rest):
        val = _fits(tensor, tuple(own[key].shape), key in linear)
        if val is None:
            report.mismatched.append((src_prefix + suffix, key, tuple(tensor.shape), tuple(own[key].shape)))
            continue
        out[key] = val
        report.matched.append((src_prefix + suffix, key))
        report.by_order.append((src_prefix + suffix, key))
        if val is not tensor:
            report.transposed.append(key)


def map_paddle_state(paddle_state: dict[str, torch.Tensor], model: nn.Module,
                     arch_cfg: dict[str, Any] | None = None, role: str | None = None,
                     strict: bool = False, max_missing_ratio: float = 0.05, paddle_linear: bool = True
                     ) -> tuple[dict[str, torch.Tensor], PaddleMapReport]:
    """Map a Paddle state dict onto ``model``'s parameter names.

    Args:
        paddle_state: ``{paddle_name: tensor}`` as :func:`read_pdparams` returns.
        model: Our model (BaseModel or DistillationModel; roles keep their ``Student.`` ... prefix).
        arch_cfg: The ``Architecture`` config (only used in error messages).
        role: For a backbone-only file and a DistillationModel: the role whose backbone to fill
            (default: every role whose backbone takes all of it).
        strict: Fail on anything missing, unexpected or shape-mismatched.
        max_missing_ratio: Fail when more than this share of the target tensors stays unfilled
            (the target is the backbone for backbone-only ImageNet files, else the whole model).
        paddle_linear: Linear weights are stored ``[in, out]`` (Paddle); False for PyTorch sources.

    Returns:
        ``(state, report)``: ``state`` uses our names and shapes (load it with
        ``model.load_state_dict(state, strict=False)`` or ``load_weights``).

    Raises:
        CheckpointError: past the thresholds above, with the report.
    """
    own = model.state_dict()
    linear = _linear_weights(model) if paddle_linear else set()
    roles = sorted({k.split(".")[0] for k in own if k.split(".")[0] not in PARTS})
    report = PaddleMapReport()
    out: dict[str, torch.Tensor] = {}
    groups: dict[str, list[tuple[str, torch.Tensor]]] = {}
    loose: list[tuple[str, torch.Tensor]] = []
    for key, tensor in paddle_state.items():
        split = _part_of(key, roles or list(ROLES_HINT))
        if split is None:
            loose.append((key, tensor))
        else:
            groups.setdefault(split[0], []).append((split[1], tensor))
    backbone_only = not groups
    targets: list[str]
    if backbone_only:
        kept = [(k, t) for k, t in loose if not k.startswith(CLASSIFIER_PREFIXES)]
        report.ignored += [k for k, _ in loose if k.startswith(CLASSIFIER_PREFIXES)]
        candidates = [f"{role}.backbone." if role else "backbone."] if (role or not roles) else \
            [f"{r}.backbone." for r in roles]
        targets = []
        for prefix in candidates:
            trial = PaddleMapReport()
            part_out: dict[str, torch.Tensor] = {}
            _map_part(prefix, kept, own, linear, part_out, trial, "")
            n_target = len([k for k in own if k.startswith(prefix) and not k.endswith("num_batches_tracked")])
            if len(candidates) > 1 and len(part_out) < n_target:
                report.notes.append(f"{prefix}: the backbone file does not fit ({trial.summary()})")
                continue
            out.update(part_out)
            targets.append(prefix)
            for name in ("matched", "by_order", "transposed", "mismatched", "notes"):
                getattr(report, name).extend(getattr(trial, name))
            if len(targets) == 1:
                report.unexpected.extend(trial.unexpected)
        if not targets:
            raise CheckpointError(f"the backbone-only Paddle file fits no role's backbone: {report.details()}")
    else:
        report.unexpected += [k for k, _ in loose]
        for prefix, items in groups.items():
            _map_part(prefix, items, own, linear, out, report, prefix)
        targets = [""]
    scope = [k for k in own if any(k.startswith(t) for t in targets) and not k.endswith("num_batches_tracked")]
    report.missing = [k for k in scope if k not in out]
    where = f" for {arch_cfg.get('algorithm', 'the model')}" if isinstance(arch_cfg, dict) else ""
    if strict and (report.missing or report.unexpected or report.mismatched):
        raise CheckpointError(f"strict Paddle import{where} failed: {report.details()}")
    if len(report.missing) / max(1, len(scope)) > max_missing_ratio:
        raise CheckpointError(f"only {len(scope) - len(report.missing)}/{len(scope)} tensors mapped from the "
                              f"Paddle file{where} (more than {max_missing_ratio:.0%} missing): {report.details()}")
    for key, value in out.items():
        out[key] = value.to(dtype=own[key].dtype)
    return out, report


# ------------------------------------------------------------------------------ the command
def import_paddle(in_path: str | os.PathLike[str], config: str | os.PathLike[str], out_path: str | os.PathLike[str],
                  overrides: list[str] | None = None, role: str | None = None, strict: bool = False,
                  max_missing_ratio: float = 0.05) -> tuple[Path, PaddleMapReport]:
    """``ocrflow weights import-paddle``: build the config's model, map the file, write a checkpoint."""
    from ocr_core.config import load_charset, load_config, resolve_config
    from ocr_core.modeling import build_model
    from ocr_core.weights.checkpoint import load_role_pretrained

    cfg = resolve_config(load_config(config, overrides))
    charset = load_charset(cfg)
    model = build_model(cfg["Architecture"])
    load_role_pretrained(model)
    state, report = map_paddle_state(read_pdparams(in_path), model, cfg["Architecture"], role=role,
                                     strict=strict, max_missing_ratio=max_missing_ratio)
    model.load_state_dict(state, strict=False)
    ckpt = save_imported(out_path, model, cfg, charset, "ocrflow weights import-paddle", in_path, config, report,
                         missing=report.missing, unexpected=report.unexpected)
    return ckpt, report


def save_imported(out_path: str | os.PathLike[str], model: nn.Module, cfg: dict[str, Any], charset: list[str] | None,
                  tool: str, source: str | os.PathLike[str], config_source: str | os.PathLike[str],
                  report: PaddleMapReport, **extra: Any) -> Path:
    """Save imported weights as an epoch-0 checkpoint of ``cfg``, with where they came from.

    Args:
        out_path: Checkpoint to write.
        model: The model holding the imported weights.
        cfg: Its validated config.
        charset: The recognition dictionary (None for detection).
        tool: The command, recorded in ``provenance``.
        source: The imported file (hashed into ``provenance``).
        config_source: The config file it was built from.
        report: The mapping report (its counts go into ``provenance``).
        extra: More ``provenance`` fields.
    """
    import copy
    import time

    from ocr_core.config import model_type_of, public_config
    from ocr_core.weights.checkpoint import file_sha256, save_checkpoint

    provenance = {"tool": tool, "source": str(source), "source_sha256": file_sha256(source),
                  "config_source": str(config_source), "matched": len(report.matched),
                  "by_order": len(report.by_order), **extra,
                  "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    return save_checkpoint(out_path, {
        "model": model.state_dict(), "architecture": copy.deepcopy(cfg["Architecture"]),
        "model_type": model_type_of(cfg), "config": public_config(cfg), "charset": charset,
        "epoch": 0, "global_step": 0, "best_metric": {}, "provenance": provenance})
