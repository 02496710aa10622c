"""Import OpenOCR (PyTorch) checkpoints: ``ocrflow weights import-openocr``.

OpenOCR saves ``{epoch, global_step, state_dict, optimizer, scheduler, config, metrics}`` (or a bare
state dict; ``module.`` prefixes from DDP are stripped). Our ``RepSVTR_det`` uses OpenOCR's module
names, and OpenOCR's RSEFPN / DBHead use PaddleOCR's, so names map directly; anything left is paired
by order with shape checks (:func:`ocr_core.weights.paddle_import.map_paddle_state`), strictly.
OpenOCR's RSEFPN SE gate is torch's hardsigmoid (slope 1/6), PaddleOCR's is slope 0.2; OpenOCR-style
configs (``repvit_db.yml``) select ``Neck.se_gate: torch`` (see ``normalize_openocr``), and the imported
model then reproduces OpenOCR's outputs exactly (tests/integration/test_openocr_import.py compares
against the real ``openocr-python`` implementation).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ocr_core.weights.paddle_import import PaddleMapReport, map_paddle_state, save_imported

__all__ = ["DEFAULT_CONFIG", "import_openocr", "map_openocr_state", "read_openocr"]

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs/det/dbnet/repvit_db.yml"


def read_openocr(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The model state dict of an OpenOCR ``.pth`` (loaded with ``weights_only=True``)."""
    from ocr_core.weights.checkpoint import load_checkpoint

    state = load_checkpoint(path)["model"]
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()
            if isinstance(v, torch.Tensor)}


def map_openocr_state(state: dict[str, torch.Tensor], model: nn.Module, strict: bool = True
                      ) -> tuple[dict[str, torch.Tensor], PaddleMapReport]:
    """Map an OpenOCR state dict onto ``model`` (strict by default; raises CheckpointError)."""
    own = model.state_dict()
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked") or k in own}
    return map_paddle_state(state, model, strict=strict, max_missing_ratio=0.0 if strict else 0.05,
                            paddle_linear=False)


def import_openocr(in_path: str | os.PathLike[str], out_path: str | os.PathLike[str],
                   config: str | os.PathLike[str] | None = None, overrides: list[str] | None = None,
                   strict: bool = True) -> tuple[Path, PaddleMapReport]:
    """Build the config's model (default ``repvit_db.yml``), load the OpenOCR weights, save a checkpoint."""
    from ocr_core.config import load_config, validate_config
    from ocr_core.modeling import build_model
    from ocr_core.weights.checkpoint import load_role_pretrained

    cfg_path = Path(config) if config else DEFAULT_CONFIG
    cfg: dict[str, Any] = validate_config(load_config(cfg_path, overrides))
    model = build_model(copy.deepcopy(cfg["Architecture"]))
    load_role_pretrained(model)
    state, report = map_openocr_state(read_openocr(in_path), model, strict=strict)
    model.load_state_dict({k: v for k, v in state.items()}, strict=False)
    ckpt = save_imported(out_path, model, cfg, None, "ocrflow weights import-openocr", in_path, cfg_path, report)
    return ckpt, report
