"""``ocrflow predict --model DIR [--rec-model DIR] --image PATH_OR_DIR [--out DIR]``.

Runs exported ONNX models with onnxruntime only (no torch import): a det model gives boxes, a
rec model gives texts, det + ``--rec-model`` gives the full det -> crop -> rec system. Prints one
JSON object per image and writes PNG visualisations into ``--out``.

PaddleOCR's inference flags (``--det_db_thresh``, ``--det_limit_side_len``, ``--rec_image_shape``,
``--rec_char_dict_path``, ``--rec_batch_num``, ``--drop_score``, ...; see
:mod:`ocr_core.inference.paddle_flags`) override the settings the export embedded.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ocr_core.errors import DataError
from ocr_core.inference.paddle_flags import add_paddle_inference_arguments, det_overrides, rec_overrides

HELP = "Run an exported ONNX model (no torch needed)."
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="exported det or rec model (model.onnx or its directory)")
    parser.add_argument("--rec-model", default=None, help="exported rec model: run det + rec")
    parser.add_argument("--image", required=True, help="an image file or a directory of images")
    parser.add_argument("--out", default=None, help="write <name>.png visualisations and results.json here")
    parser.add_argument("--drop-score", "--drop_score", dest="drop_score", type=float, default=0.5,
                        help="det+rec: drop texts scoring below this")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
    parser.add_argument("--det_algorithm", "--det-algorithm", default=None, choices=["DB", "EAST"],
                        help="det post-processing (default: the algorithm recorded in the exported model)")
    add_paddle_inference_arguments(parser)


def _images(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    elif path.is_file():
        files = [path]
    else:
        raise DataError(f"no such image or directory: {path}")
    if not files:
        raise DataError(f"no images in {path}")
    return files


def run(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np

    from ocr_core.data import image_io
    from ocr_core.inference import metadata as md
    from ocr_core.inference.predictors import (
        DetPredictor,
        RecPredictor,
        TextSystem,
        draw_results,
        load_predictor,
    )

    def rec_kwargs(model: str) -> dict:
        meta = md.read_metadata(md.resolve_model_path(model))
        return rec_overrides(args, bool(meta.get(md.PREFIX + "use_space_char")))

    extra = {"det_algorithm": args.det_algorithm} if args.det_algorithm else {}
    first_meta = md.read_metadata(md.resolve_model_path(args.model))
    if first_meta.get(md.PREFIX + "model_type") == "rec":
        extra = rec_kwargs(args.model)
    else:
        extra.update(det_overrides(args))
    first = load_predictor(args.model, intra_op_num_threads=args.threads, **extra)
    system = None
    if args.rec_model:
        rec = RecPredictor(args.rec_model, intra_op_num_threads=args.threads, **rec_kwargs(args.rec_model))
        if not isinstance(first, DetPredictor):
            raise DataError(f"--model must be a det model when --rec-model is given ({args.model} is rec)")
        system = TextSystem(first, rec, drop_score=args.drop_score)
    out_dir = Path(args.out) if args.out else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    all_results = []
    for path in _images(Path(args.image)):
        try:
            img = image_io.read(path, cv2.IMREAD_COLOR)
        except image_io.ImageTooLarge as exc:
            raise DataError(str(exc)) from exc
        if img is None:
            raise DataError(f"cannot decode image {path}")
        if system is not None:
            results = system(img)
        elif isinstance(first, DetPredictor):
            found = first(img)
            results = [{"points": np.asarray(b).astype(int).tolist(), "score": float(s)}
                       for b, s in zip(found["points"], found["scores"])]
        else:
            text, score = first([img])[0]
            h, w = img.shape[:2]
            results = [{"points": [[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], "text": text, "score": score}]
        record = {"image": str(path), "results": results}
        print(json.dumps(record, ensure_ascii=False))
        all_results.append(record)
        if out_dir:
            cv2.imwrite(str(out_dir / f"{path.stem}.png"), draw_results(img, results))
    if out_dir:
        (out_dir / "results.json").write_text(json.dumps(all_results, ensure_ascii=False, indent=2), encoding="utf-8")
    return 0
