"""Import the official PP-OCRv3 weights shipped in the ``rapidocr-onnxruntime==1.2.13`` wheel.

The wheel (Apache-2.0) carries PaddleOCR's ``ch_PP-OCRv3_det_infer.onnx`` and
``ch_PP-OCRv3_rec_infer.onnx``. Their weights are ``Constant`` nodes with Paddle names whose
numbering is not the layer order, so they are matched to our modules by graph structure
(:mod:`ocr_core.weights.onnx_weights`, :mod:`ocr_core.weights.layer_match`), loaded, checked against onnxruntime and written as a
normal OCRFlow checkpoint that ``Global.pretrained_model`` accepts.

Cache: ``$OCRFLOW_CACHE`` (default ``~/.cache/ocrflow``) holds ``wheels/<wheel>.whl`` and the
extracted ``wheels/<wheel stem>/<model>.onnx``. ``OCRFLOW_RAPIDOCR_WHEEL`` points at a local wheel
for offline use.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from ocr_core.errors import OCRFlowError
from ocr_core.weights.layer_match import load_matched
from ocr_core.weights.onnx_weights import read_onnx_layers

__all__ = ["ImportReport", "WeightsImportError", "extract_onnx", "fetch_rapidocr_wheel",
           "import_ppocrv3", "onnx_parity", "ppocrv3_architecture"]

REQUIREMENT = "rapidocr-onnxruntime==1.2.13"
WHEEL_GLOB = "rapidocr_onnxruntime-1.2.13-*.whl"
WHEEL_ENV = "OCRFLOW_RAPIDOCR_WHEEL"
ONNX_MEMBERS = {"det": "rapidocr_onnxruntime/models/ch_PP-OCRv3_det_infer.onnx",
                "rec": "rapidocr_onnxruntime/models/ch_PP-OCRv3_rec_infer.onnx"}
UPSTREAM = "PaddleOCR PP-OCRv3 (via rapidocr-onnxruntime 1.2.13)"
LICENSE = "Apache-2.0"
CONFIGS_DIR = Path(__file__).resolve().parents[2] / "configs"
CONFIG_FILES = {"det": CONFIGS_DIR / "det/ch_PP-OCRv3/ch_PP-OCRv3_det_student.yml",
                "rec": CONFIGS_DIR / "rec/PP-OCRv3/ch_PP-OCRv3_rec_finetune.yml"}  # CTC only, like the official model
DICTS_DIR = Path(__file__).resolve().parents[1] / "dicts"
DICT_NAME = "ppocr_keys_v1.txt"
# (input used to trace the layer graph, input used for the onnxruntime parity check)
TRACE_SHAPES = {"det": (1, 3, 64, 64), "rec": (1, 3, 48, 96)}
PARITY_SHAPES = {"det": (1, 3, 256, 320), "rec": (1, 3, 48, 320)}
PARITY_TOL = 1e-4


class WeightsImportError(OCRFlowError):
    """The pretrained weights could not be obtained or do not fit the model."""


@dataclass
class ImportReport:
    """What :func:`import_ppocrv3` did."""

    kind: str
    checkpoint: Path
    layers_matched: int
    layers_onnx: int
    fresh: list[str]
    parity_max_diff: float | None
    parity_shape: tuple[int, ...]
    dict_path: Path | None = None
    num_classes: int | None = None
    notes: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        parity = ("skipped (onnxruntime unavailable)" if self.parity_max_diff is None else
                  f"max |torch - onnxruntime| = {self.parity_max_diff:.3g} at {list(self.parity_shape)}")
        lines = [f"PP-OCRv3 {self.kind}: matched {self.layers_matched}/{self.layers_onnx} ONNX layers",
                 f"  parity: {parity}",
                 f"  initialised fresh ({len(self.fresh)}): {', '.join(self.fresh) or 'none'}"]
        if self.num_classes is not None:
            lines.append(f"  dictionary: {self.dict_path} ({self.num_classes - 2} chars, "
                         f"{self.num_classes} CTC classes incl. blank and space)")
        lines += [f"  note: {n}" for n in self.notes]
        lines.append(f"  wrote {self.checkpoint}")
        return "\n".join(lines)


# ------------------------------------------------------------------------------ the wheel
def cache_root() -> Path:
    """``$OCRFLOW_CACHE`` or ``~/.cache/ocrflow``."""
    env = os.environ.get("OCRFLOW_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ocrflow"


def fetch_rapidocr_wheel(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return a local ``rapidocr_onnxruntime-1.2.13`` wheel, downloading it with pip if needed.

    Order: ``$OCRFLOW_RAPIDOCR_WHEEL`` (a local file), a cached copy in ``cache_dir``
    (default ``<cache>/wheels``), then ``pip download --no-deps rapidocr-onnxruntime==1.2.13``.

    Raises:
        WeightsImportError: if the wheel cannot be found or pip fails (e.g. offline).
    """
    env = os.environ.get(WHEEL_ENV)
    if env:
        wheel = Path(env).expanduser()
        if not wheel.is_file():
            raise WeightsImportError(f"{WHEEL_ENV}={env} is not a file")
        return wheel
    cache = Path(cache_dir) if cache_dir is not None else cache_root() / "wheels"
    cached = sorted(cache.glob(WHEEL_GLOB))
    if cached:
        return cached[-1]
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           REQUIREMENT, "-d", str(cache)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WeightsImportError(f"could not run pip to download {REQUIREMENT}: {exc}") from None
    cached = sorted(cache.glob(WHEEL_GLOB))
    if proc.returncode != 0 or not cached:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise WeightsImportError(
            f"pip could not download {REQUIREMENT} (exit {proc.returncode}):\n{tail}\n"
            f"Offline? Download the wheel elsewhere and pass --wheel PATH or set {WHEEL_ENV}=PATH.")
    return cached[-1]


def extract_onnx(wheel: str | os.PathLike[str], kind: str,
                 cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Extract the ``kind`` (det/rec) ONNX model from ``wheel`` into the cache (reused if present)."""
    wheel = Path(wheel)
    member = ONNX_MEMBERS[kind]
    dest_dir = Path(cache_dir) if cache_dir is not None else cache_root() / "wheels" / wheel.stem
    dest = dest_dir / Path(member).name
    try:
        with zipfile.ZipFile(wheel) as zf:
            info = zf.getinfo(member)
            if dest.is_file() and dest.stat().st_size == info.file_size:
                return dest
            dest_dir.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.tmp{os.getpid()}")
            with zf.open(info) as src, open(tmp, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            os.replace(tmp, dest)
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise WeightsImportError(f"cannot extract {member} from {wheel}: {exc}") from None
    return dest


# ------------------------------------------------------------------------------- the model
def ppocrv3_architecture(kind: str) -> dict[str, Any]:
    """The Architecture of the official PP-OCRv3 inference models (used without shipped YAMLs)."""
    if kind == "det":
        return {"model_type": "det", "algorithm": "DB", "Transform": None,
                "Backbone": {"name": "MobileNetV3", "scale": 0.5, "model_name": "large",
                             "disable_se": True},
                "Neck": {"name": "RSEFPN", "out_channels": 96, "shortcut": True},
                "Head": {"name": "DBHead", "k": 50}}
    return {"model_type": "rec", "algorithm": "SVTR_LCNet", "Transform": None,
            "Backbone": {"name": "MobileNetV1Enhance", "scale": 0.5, "last_conv_stride": [1, 2],
                         "last_pool_type": "avg", "last_pool_kernel_size": [2, 2]},
            "Neck": {"name": "SequenceEncoder", "encoder_type": "svtr", "dims": 64, "depth": 2,
                     "hidden_dims": 120, "use_guide": True},
            "Head": {"name": "CTCHead", "fc_decay": 1e-5}}


def _config(kind: str, n_classes: int | None) -> tuple[dict[str, Any], str]:
    """The full config (shipped YAML if present) with rec heads sized to ``n_classes``."""
    from ocr_core.config import load_config, public_config

    path = CONFIG_FILES[kind]
    if path.is_file():
        cfg, source = public_config(load_config(path)), str(path.relative_to(CONFIGS_DIR.parent))
    else:
        cfg, source = {"Global": {}, "Architecture": ppocrv3_architecture(kind)}, "built-in"
        if kind == "rec":
            cfg["Global"] = {"character_dict_path": f"ppocr/utils/{DICT_NAME}", "use_space_char": True,
                             "max_text_length": 25}
            cfg["PostProcess"] = {"name": "CTCLabelDecode"}
    if kind == "rec" and n_classes is not None:
        from ocr_core.config import wire_rec_heads

        cfg = wire_rec_heads(cfg, n_classes)
    return cfg, source


def _main_output(out: Any) -> torch.Tensor:
    while isinstance(out, dict):
        out = out.get("maps", out.get("ctc", next(iter(out.values()))))
    return out


def onnx_parity(model: torch.nn.Module, onnx_path: str | os.PathLike[str],
                shape: tuple[int, ...], seed: int = 0) -> float | None:
    """max |model(x) - onnxruntime(x)| on a seeded random input (None without onnxruntime)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    x = torch.from_numpy(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    model.eval()
    with torch.no_grad():
        ours = _main_output(model(x)).numpy()
    if ours.shape != ref.shape:
        raise WeightsImportError(f"output shape differs from the ONNX model: ours {list(ours.shape)}, "
                                 f"onnxruntime {list(ref.shape)} for input {list(shape)}")
    return float(np.abs(ours - ref).max())


def _rec_dictionary(model: onnx.ModelProto) -> list[str]:
    meta = {p.key: p.value for p in model.metadata_props}
    if "character" not in meta:
        raise WeightsImportError("the rec ONNX model has no 'character' metadata")
    return meta["character"].split("\n")


def import_ppocrv3(kind: str, out_path: str | os.PathLike[str],
                   wheel: str | os.PathLike[str] | None = None) -> ImportReport:
    """Build our PP-OCRv3 ``kind`` model, load the official weights and save a checkpoint.

    Args:
        kind: ``"det"`` (MobileNetV3 + RSEFPN + DBHead student) or ``"rec"`` (SVTR_LCNet, CTC).
        out_path: Checkpoint path (``.pt`` is appended if missing). For rec the dictionary is
            written beside it as ``<name>.dict.txt``.
        wheel: A local ``rapidocr_onnxruntime-1.2.13`` wheel; fetched with pip when None.

    Returns:
        The :class:`ImportReport` (layer counts, fresh modules, parity, provenance).

    Raises:
        WeightsImportError: wheel unavailable, layers that do not match (naming the first one),
            or outputs that differ from onnxruntime by more than 1e-4.
    """
    from ocr_core.modeling import build_model
    from ocr_core.weights.checkpoint import file_sha256, save_checkpoint

    if kind not in ONNX_MEMBERS:
        raise WeightsImportError(f"--kind must be det or rec, got {kind!r}")
    wheel_path = Path(wheel) if wheel is not None else fetch_rapidocr_wheel()
    if not wheel_path.is_file():
        raise WeightsImportError(f"wheel not found: {wheel_path}")
    onnx_path = extract_onnx(wheel_path, kind)
    proto = onnx.load(str(onnx_path))
    chars = _rec_dictionary(proto) if kind == "rec" else None
    n_classes = len(chars) + 2 if chars is not None else None  # blank + chars + space
    cfg, cfg_source = _config(kind, n_classes)
    torch.manual_seed(0)  # the fresh modules (DB threshold branch) are reproducible
    model = build_model(copy.deepcopy(cfg["Architecture"])).eval()
    layers = read_onnx_layers(proto)
    try:
        match = load_matched(model, torch.zeros(TRACE_SHAPES[kind]), layers)
    except OCRFlowError as exc:
        raise WeightsImportError(f"{onnx_path.name} does not fit the {kind} architecture from "
                                 f"{cfg_source}: {exc}") from None
    parity = onnx_parity(model, onnx_path, PARITY_SHAPES[kind])
    if parity is not None and parity > PARITY_TOL:
        raise WeightsImportError(f"all {len(match.pairs)} layers loaded but outputs differ from "
                                 f"onnxruntime by {parity:.3g} (> {PARITY_TOL:g}): the architecture "
                                 f"from {cfg_source} computes something else (pooling, eps, activation?)")
    provenance = {
        "tool": "ocrflow weights import-ppocrv3", "kind": kind, "upstream": UPSTREAM, "license": LICENSE,
        "wheel": wheel_path.name, "wheel_sha256": file_sha256(wheel_path),
        "onnx_file": onnx_path.name, "onnx_sha256": file_sha256(onnx_path),
        "config_source": cfg_source, "layers_matched": len(match.pairs),
        "fresh_modules": list(match.fresh), "parity_max_abs_diff": parity,
        "parity_input_shape": list(PARITY_SHAPES[kind]),
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    charset = [*chars, " "] if chars is not None else None  # as load_charset: dict + space
    ckpt = save_checkpoint(out_path, {
        "model": model.state_dict(), "architecture": copy.deepcopy(cfg["Architecture"]),
        "model_type": kind, "config": cfg, "charset": charset, "epoch": 0, "global_step": 0,
        "best_metric": {}, "provenance": provenance})
    report = ImportReport(kind=kind, checkpoint=ckpt, layers_matched=len(match.pairs),
                          layers_onnx=len(layers), fresh=list(match.fresh), parity_max_diff=parity,
                          parity_shape=PARITY_SHAPES[kind], notes=list(match.notes),
                          provenance=provenance, num_classes=n_classes)
    if chars is not None:
        report.dict_path = _write_dictionary(chars, ckpt.with_suffix(".dict.txt"), report.notes)
    return report


def _write_dictionary(chars: list[str], path: Path, notes: list[str]) -> Path:
    text = "\n".join(chars) + "\n"
    path.write_text(text, encoding="utf-8")
    shipped = DICTS_DIR / DICT_NAME
    if shipped.is_file() and shipped.read_text(encoding="utf-8") != text:
        notes.append(f"the ONNX dictionary differs from the shipped {shipped}")
    return path
