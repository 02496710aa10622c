"""Eager (PyTorch) inference on images with a checkpoint: PaddleOCR's ``infer_det.py``/``infer_rec.py``.

The pre-processing is the config's Eval transform list with label ops removed, so inference
resizes and normalises exactly as evaluation did.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from ocr_core.data import image_io
from ocr_core.engine.distributed import unwrap
from ocr_core.engine.infer_output import destinations, draw_polys, list_images, paddle_line
from ocr_core.engine.loop import autocast_context
from ocr_core.errors import ConfigError, DataError
from ocr_core.progress import progress
from ocr_core.weights import checkpoint as ckpt_mod

log = logging.getLogger("ocrflow")
def inference_ops(cfg: dict[str, Any], model_type: str) -> list[Any]:
    """Eval transforms without label ops, keeping what the model and post-process need."""
    from ocr_core.data.transforms import create_operators

    if not cfg.get("Eval"):
        raise ConfigError("inference needs the Eval dataset transforms to pre-process images", "Eval")
    ops_cfg = []
    for op in cfg["Eval"]["dataset"].get("transforms") or []:
        (name, kw), = op.items()
        if "Label" in name or name in ("MakeBorderMap", "MakeShrinkMap"):
            continue
        if name == "KeepKeys":
            kw = {"keep_keys": ["image", "shape"] if model_type == "det" else ["image"]}
        ops_cfg.append({name: kw})
    return create_operators(ops_cfg, cfg.get("Global") or {})


@torch.no_grad()
def infer(run: Any, images: list[Path], out_dir: Path, res_file: Path | None = None) -> list[dict[str, Any]]:
    """Run ``run.model`` on images; write ``predicts.json`` (+ PNGs for det) into ``out_dir`` and
    PaddleOCR's line format into ``res_file`` (default ``out_dir/predicts_db.txt`` or ``predicts_rec.txt``)."""
    from ocr_core.data.transforms import transform

    ops = inference_ops(run.cfg, run.model_type)
    model = unwrap(run.model).eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    res_file = res_file or out_dir / ("predicts_db.txt" if run.model_type == "det" else "predicts_rec.txt")
    res_file.parent.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    results: list[dict[str, Any]] = []
    for path in progress(images, desc="infer", unit="img"):
        data = transform({"img_path": str(path), "image": path.read_bytes()}, ops)
        if data is None:
            raise DataError(f"{path}: could not decode or pre-process the image")
        x = torch.from_numpy(np.asarray(data[0]))[None].to(run.dist.device)
        with autocast_context(run.dist.device, run.g.use_amp, run.amp_dtype):
            preds = model(x)
        preds = _float(preds)
        entry: dict[str, Any]
        if run.model_type == "det":
            shape = np.asarray(data[1], dtype=np.float32)[None]
            post = run.post_process(preds, shape)
            lines.append(paddle_line(path, "det", post))
            post = _first_role(post)
            boxes = post[0]["points"]
            scores = post[0].get("scores", [])
            entry = {"image": str(path), "boxes": [np.asarray(b).tolist() for b in boxes],
                     "scores": [float(s) for s in scores]}
            img = image_io.read(path, cv2.IMREAD_COLOR)  # already decoded once: within the limit
            if img is not None:
                cv2.imwrite(str(out_dir / f"det_res_{path.stem}.png"), draw_polys(img, boxes))
        else:
            post = run.post_process(preds)
            lines.append(paddle_line(path, "rec", post))
            post = _first_role(post)
            text, score = post[0]
            entry = {"image": str(path), "text": text, "score": float(score)}
            print(f"{path}: ({text!r}, {float(score):.4f})")
        results.append(entry)
    with open(out_dir / "predicts.json", "w", encoding="utf-8") as fh:
        json.dump(results, fh, ensure_ascii=False, indent=1)
    res_file.write_text("".join(lines), encoding="utf-8")
    return results


def _float(preds: Any) -> Any:
    if isinstance(preds, torch.Tensor):
        return preds.float()
    if isinstance(preds, dict):
        return {k: _float(v) for k, v in preds.items()}
    return preds


def _first_role(post: Any) -> Any:
    """Distillation post-processors return ``{role: result}``: use the first configured role."""
    if isinstance(post, dict):
        return next(iter(post.values()))
    return post


def infer_config(cfg: dict[str, Any], image_path: str | None, out_dir: str | None) -> list[dict[str, Any]]:
    """Load ``Global.pretrained_model``/``checkpoints`` and infer on ``image_path`` (or ``Global.infer_img``)."""
    from ocr_core.engine.resume import adapt_pretrained_state
    from ocr_core.engine.run import prepare

    if (cfg.get("Global") or {}).get("backend") == "onnx":  # OpenOCR's --o Global.backend=onnx
        from ocr_core.engine.infer_onnx import infer_onnx

        return infer_onnx(cfg, image_path, out_dir)
    run = prepare(cfg, "infer")
    src = run.g.checkpoints or run.g.pretrained_model
    if not src:
        raise ConfigError("set Global.pretrained_model (or Global.checkpoints) to the model to run",
                          "Global.pretrained_model")
    ck = ckpt_mod.load_checkpoint(src, map_location=run.dist.device)
    report = ckpt_mod.load_weights(unwrap(run.model), adapt_pretrained_state(run, ck), strict=False,
                                   max_missing_ratio=1.0, source=src)
    log.info("loaded %s: %s", src, report.summary())
    ckpt_mod.require_inference_weights(report, unwrap(run.model), ck, src, run.cfg["Architecture"])
    target = image_path or run.g.infer_img
    if not target:
        raise ConfigError("give --image or set Global.infer_img", "Global.infer_img")
    dest, res_file = destinations(run.g.save_res_path, run.save_dir, out_dir)
    results = infer(run, list_images(target), dest, res_file)
    log.info("wrote %d results to %s and %s", len(results), dest / "predicts.json",
             res_file or dest / "predicts_*.txt")
    return results
