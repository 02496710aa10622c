"""Self-describing checkpoints, resume, and reported weight loading.

A checkpoint is one ``.pt`` file holding a plain dict (loadable with ``weights_only=True``):

``format``, ``model`` (state dict), ``architecture`` (the ``Architecture`` config),
``config`` (the whole resolved config), ``charset`` (rec dictionary or None), ``optimizer``,
``scheduler``, ``scaler``, ``epoch``, ``global_step``, ``best_metric``, ``rng``, ``provenance``.

Names follow PaddleOCR: ``latest``, ``best_accuracy``, ``iter_epoch_N``.
``Global.checkpoints`` resumes everything; ``Global.pretrained_model`` loads weights only and
reports matched / missing / unexpected / shape-mismatched keys.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ocr_core.errors import OCRFlowError

FORMAT = "ocrflow-checkpoint/1"
SUFFIX = ".pt"
log = logging.getLogger("ocrflow")


class CheckpointError(OCRFlowError):
    """A checkpoint is missing, unreadable, or does not fit the model."""


def resolve_path(path: str | os.PathLike[str]) -> Path:
    """Accept ``dir/latest`` or ``dir/latest.pt`` (the suffix is optional, as in PaddleOCR)."""
    p = Path(path)
    if p.is_file():
        return p
    for suffix in (SUFFIX, ".pdparams"):  # PaddleOCR passes checkpoint paths without suffix
        if p.with_name(p.name + suffix).is_file():
            return p.with_name(p.name + suffix)
    raise CheckpointError(f"checkpoint not found: {p} (also tried {p.name + SUFFIX}, {p.name}.pdparams)")


def rng_state() -> dict[str, Any]:
    """All RNG states as tensors / plain lists (safe for ``weights_only`` loading)."""
    np_state = np.random.get_state()
    assert isinstance(np_state, tuple)  # the global (legacy MT19937) RandomState gives the 5-tuple form
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": [s for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    p = state["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))


def save_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any]) -> Path:
    """Atomically write ``payload`` (temp file + rename) and return the final path."""
    p = Path(path)
    if p.suffix != SUFFIX:
        p = p.with_name(p.name + SUFFIX)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp{os.getpid()}")
    payload = {"format": FORMAT, **payload}
    try:
        torch.save(payload, tmp)
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()
    return p


def _load_failure(exc: Exception) -> str:
    """One line for why ``torch.load(weights_only=True)`` failed (torch's own text is a multi-line how-to
    that suggests ``weights_only=False``, which must not be followed for a file one did not write)."""
    text = str(exc)
    if "Weights only load failed" not in text:
        return next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)
    reason = text.split("WeightsUnpickler error:", 1)[1] if "WeightsUnpickler error:" in text else ""
    reason = next((ln.strip() for ln in reason.splitlines() if ln.strip()), "")
    glob = re.search(r"Unsupported global: GLOBAL (\S+)", reason)
    opcode = re.match(r"Unsupported operand (\d+)", reason)
    if opcode:  # not a pickle torch writes: garbage, or a pickle protocol/opcode outside the safe subset
        return (f"not a torch file of tensors and plain containers (pickle opcode {opcode.group(1)} is not "
                "accepted), so it was not loaded (weights_only=True)")
    if glob:
        reason = f"unsupported global {glob.group(1)}"
    elif reason:
        reason = reason.split(". ", 1)[0].rstrip(".")
    why = f" ({reason})" if reason else ""
    return (f"it holds pickled objects other than tensors and plain containers{why}, "
            "so it was not loaded (weights_only=True)")


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (``weights_only=True``). Raw state dicts are wrapped."""
    p = resolve_path(path)
    if p.suffix == ".pdparams":
        from ocr_core.weights.paddle_import import read_pdparams  # issue: bring your own checkpoints

        return {"model": read_pdparams(p)}
    try:
        with warnings.catch_warnings():  # "Detected pickle protocol 4 ...": noise beside the real error
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            obj = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - report any unpickling failure with the path
        raise CheckpointError(f"cannot read checkpoint {p}: {_load_failure(exc)}") from None
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        return obj
    if isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return {"model": obj}
    if isinstance(obj, dict) and "state_dict" in obj:  # OpenOCR / generic trainers
        return {"model": obj["state_dict"]}
    raise CheckpointError(f"{p} is not a checkpoint or a state dict")


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def to_model_keys(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Rename a foreign state dict onto ``model``'s keys; our own pass through.

    PaddleOCR (``.pdparams``) names are mapped; a DDP-saved state (every key ``module.``-prefixed,
    e.g. OpenOCR's ``.pth``) loses the prefix, and what then still does not name our tensors is
    mapped as ``ocrflow weights import-openocr`` does (by name, then by order with shape checks).
    """
    from ocr_core.weights.paddle_import import looks_like_paddle, map_paddle_state

    if looks_like_paddle(state):
        return map_paddle_state(state, model, max_missing_ratio=1.0)[0]
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
        own = model.state_dict()
        if not set(state) <= set(own):
            from ocr_core.weights.openocr_import import map_openocr_state

            try:
                return map_openocr_state(state, model, strict=False)[0]
            except CheckpointError:
                return state  # the loader reports what does not fit
    return state


def key_list_lines(groups: dict[str, list[str]], limit: int) -> list[str]:
    """``"  missing: a, b (+3 more)"``: one line per non-empty group, at most ``limit`` keys each."""
    lines = []
    for name, keys in groups.items():
        if keys:
            more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
            lines.append(f"  {name}: {', '.join(keys[:limit])}{more}")
    return lines


@dataclass
class LoadReport:
    """What :func:`load_weights` did."""

    matched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    def summary(self) -> str:
        return (f"matched {len(self.matched)}, missing {len(self.missing)}, "
                f"unexpected {len(self.unexpected)}, shape-mismatched {len(self.mismatched)}")

    def details(self, limit: int = 10) -> str:
        lines = [self.summary(), *key_list_lines({"missing": self.missing, "unexpected": self.unexpected}, limit)]
        for k, a, b in self.mismatched[:limit]:
            lines.append(f"  shape mismatch {k}: checkpoint {list(a)} vs model {list(b)}")
        return "\n".join(lines)


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], strict: bool = False,
                 max_missing_ratio: float = 0.5, source: str = "") -> LoadReport:
    """Load matching tensors into ``model`` key by key and report the rest.

    Raises:
        CheckpointError: if ``strict`` and anything did not match, or if more than
            ``max_missing_ratio`` of the model's tensors were not loaded.
    """
    own = model.state_dict()
    report = LoadReport()
    to_load: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key not in own:
            report.unexpected.append(key)
        elif tuple(own[key].shape) != tuple(value.shape):
            report.mismatched.append((key, tuple(value.shape), tuple(own[key].shape)))
        else:
            to_load[key] = value.to(dtype=own[key].dtype)
            report.matched.append(key)
    report.missing = [k for k in own if k not in to_load and not k.endswith("num_batches_tracked")]
    model.load_state_dict(to_load, strict=False)
    where = f" from {source}" if source else ""
    if strict and (report.missing or report.unexpected or report.mismatched):
        raise CheckpointError(f"strict weight loading{where} failed: {report.details()}")
    n_own = max(1, len([k for k in own if not k.endswith("num_batches_tracked")]))
    if len(report.missing) / n_own > max_missing_ratio:
        raise CheckpointError(
            f"only {len(report.matched)}/{n_own} model tensors loaded{where} "
            f"(more than {max_missing_ratio:.0%} missing; is this the right architecture? "
            f"set Global.pretrained_max_missing_ratio=1.0 to load anyway): {report.details()}")
    return report


def training_only_prefixes(model: nn.Module) -> list[str]:
    """State-dict prefixes of submodules that inference never runs (a module's ``training_only``
    names: the DB threshold branch, the SAR branch of a MultiHead)."""
    out = []
    for name, module in model.named_modules():
        for sub in getattr(module, "training_only", ()):
            out.append(f"{name}.{sub}." if name else f"{sub}.")
    return out


def _prefix_counts(keys: list[str], depth: int = 2) -> str:
    counts: dict[str, int] = {}
    for k in keys:
        p = ".".join(k.split(".")[:depth])
        counts[p] = counts.get(p, 0) + 1
    return ", ".join(f"{p} ({n})" for p, n in counts.items())


def describe_checkpoint(ck: dict[str, Any]) -> str:
    """``model_type rec, algorithm SVTR_LCNet, head CTCHead`` from a checkpoint's own architecture."""
    arch = ck.get("architecture") or (ck.get("config") or {}).get("Architecture") or {}
    if not arch:
        return "no architecture recorded (a bare state dict)"
    if "Models" in arch:
        return "a distillation model with roles " + ", ".join(arch["Models"])
    parts = " + ".join(str((arch.get(s) or {}).get("name")) for s in ("Backbone", "Neck", "Head") if arch.get(s))
    return (f"model_type {arch.get('model_type', ck.get('model_type', '?'))}, algorithm "
            f"{arch.get('algorithm', '?')}, {parts or 'no modules recorded'}")


def require_inference_weights(report: LoadReport, model: nn.Module, ck: dict[str, Any], source: str,
                              config_arch: dict[str, Any] | None = None) -> None:
    """Eval/infer/export: every tensor inference uses must have come from the checkpoint.

    Tensors of training-only submodules (``training_only_prefixes``) may stay unset.

    Raises:
        CheckpointError: naming the missing prefixes and what the checkpoint holds.
    """
    skip = tuple(training_only_prefixes(model))
    missing = [k for k in report.missing if not k.startswith(skip)]
    n_shape = sum(1 for k, _, _ in report.mismatched if not k.startswith(skip))
    if not missing:
        return
    built = ""
    if config_arch:
        built = "; the config builds " + describe_checkpoint({"architecture": config_arch})
    shape = f", {n_shape} of them with another shape in the checkpoint" if n_shape else ""
    raise CheckpointError(
        f"{source} leaves {len(missing)} model tensor(s) unloaded{shape}: {_prefix_counts(missing)}; the checkpoint "
        f"holds {describe_checkpoint(ck)}{built} (unexpected in the checkpoint: "
        f"{_prefix_counts(report.unexpected) or 'none'}). Use the checkpoint's own config (its `config` entry) "
        "or a config with the same architecture")


def log_partial_load(report: LoadReport, source: str) -> None:
    """Training: a complete load at INFO; a partial one (missing/unexpected/mismatched) at WARNING."""
    if report.missing or report.unexpected or report.mismatched:
        log.warning("pretrained weights from %s loaded partially (Global.pretrained_strict=true makes this "
                    "an error): %s", source, report.details())
    else:
        log.info("pretrained weights from %s: %s", source, report.summary())


def load_pretrained(model: nn.Module, path: str | os.PathLike[str], strict: bool = False,
                    max_missing_ratio: float = 0.5) -> LoadReport:
    """Fine-tune entry: load weights only (no optimizer, epoch restarts) and log the report."""
    ckpt = load_checkpoint(path)
    report = load_weights(model, to_model_keys(ckpt["model"], model), strict=strict,
                          max_missing_ratio=max_missing_ratio, source=str(path))
    log_partial_load(report, str(path))
    return report


def load_role_pretrained(model: nn.Module) -> None:
    """Load each distillation role's ``pretrained`` weights (``DistillationModel.role_setup``), in role order.

    A plain model has no roles: nothing happens.
    """
    for role, setup in getattr(model, "role_setup", {}).items():
        if setup.pretrained:
            assert isinstance(model, nn.ModuleDict)  # roles live on DistillationModel, a ModuleDict
            load_pretrained(model[role], setup.pretrained)
