"""``ocrflow infer --c CFG --o Global.backend=onnx Global.onnx_model_path=M`` (OpenOCR's
``tools/infer_det.py``/``infer_rec.py`` with the ONNX backend).

The ONNX model runs through the same onnxruntime predictors as ``ocrflow predict``. A model we
exported carries its own settings; a foreign one (OpenOCR's ``openocr_det_model.onnx``) gets them
from the config, as OpenOCR does: the Eval resize/normalisation, the ``PostProcess`` section and,
for rec, the dictionary. Results are written as the torch backend writes them.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import cv2
import numpy as np

from ocr_core.data import image_io
from ocr_core.engine.infer_output import destinations, draw_polys, list_images, paddle_line
from ocr_core.errors import ConfigError, DataError
from ocr_core.progress import progress

log = logging.getLogger("ocrflow")


def config_metadata(cfg: dict[str, Any]) -> dict[str, Any]:
    """Inference metadata built from a config, for an ONNX model that has none."""
    from ocr_core.config import load_charset, model_type_of
    from ocr_core.config.plain import role_architecture
    from ocr_core.inference import metadata as md

    arch, _ = role_architecture(cfg, None)
    mtype = model_type_of({**cfg, "Architecture": arch}) or "det"
    return md.build_metadata(cfg, mtype, str(arch.get("algorithm") or ""), "", "",
                             character=load_charset({**cfg, "Architecture": arch}) if mtype == "rec" else None)


def infer_onnx(cfg: dict[str, Any], image_path: str | None, out_dir: str | None) -> list[dict[str, Any]]:
    """Run ``Global.onnx_model_path`` on ``image_path`` (or ``Global.infer_img``); write results."""
    from ocr_core.inference import metadata as md
    from ocr_core.inference.predictors import DetPredictor, RecPredictor

    g = cfg.get("Global") or {}
    model_path = g.get("onnx_model_path")
    if not model_path:
        raise ConfigError("Global.backend=onnx needs the model: -o Global.onnx_model_path=PATH",
                          "Global.onnx_model_path")
    path = md.resolve_model_path(model_path)
    embedded = md.read_metadata(path)
    meta = None if embedded.get(md.PREFIX + "model_type") else config_metadata(cfg)
    mtype = str((meta or embedded)[md.PREFIX + "model_type"])
    if meta is not None:
        log.info("%s has no OCRFlow metadata: pre/post-processing from the config", path)
    predictor: DetPredictor | RecPredictor = (DetPredictor(path, metadata=meta) if mtype == "det"
                                              else RecPredictor(path, metadata=meta))
    target = image_path or g.get("infer_img")
    if not target:
        raise ConfigError("give --image or set Global.infer_img", "Global.infer_img")
    dest, res_file = destinations(g.get("save_res_path"), g.get("save_model_dir") or ".", out_dir)
    dest.mkdir(parents=True, exist_ok=True)
    res_file = res_file or dest / ("predicts_db.txt" if mtype == "det" else "predicts_rec.txt")
    res_file.parent.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    lines: list[str] = []
    for img_path in progress(list_images(target), desc="infer (onnx)", unit="img"):
        try:
            img = image_io.read(img_path, cv2.IMREAD_COLOR)
        except image_io.ImageTooLarge as exc:
            raise DataError(str(exc)) from exc
        if img is None:
            raise DataError(f"{img_path}: could not decode the image")
        if isinstance(predictor, DetPredictor):  # mtype == "det"
            found = predictor(img)
            boxes = [np.asarray(b) for b in found["points"]]
            lines.append(paddle_line(img_path, "det", [{"points": boxes}]))
            results.append({"image": str(img_path), "boxes": [b.tolist() for b in boxes],
                            "scores": [float(s) for s in found.get("scores", [])]})
            cv2.imwrite(str(dest / f"det_res_{img_path.stem}.png"), draw_polys(img, boxes))
        else:
            text, score = predictor([img])[0]
            lines.append(paddle_line(img_path, "rec", [(text, score)]))
            results.append({"image": str(img_path), "text": text, "score": float(score)})
            print(f"{img_path}: ({text!r}, {float(score):.4f})")
    with open(dest / "predicts.json", "w", encoding="utf-8") as fh:
        json.dump(results, fh, ensure_ascii=False, indent=1)
    res_file.write_text("".join(lines), encoding="utf-8")
    log.info("wrote %d results to %s and %s", len(results), dest / "predicts.json", res_file)
    return results


__all__ = ["config_metadata", "infer_onnx"]
