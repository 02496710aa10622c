"""``ocrflow weights``: import pretrained weights into OCRFlow checkpoints.

Sub-commands:

* ``import-ppocrv3 --kind det|rec --out PATH [--wheel WHEEL]``: the official PP-OCRv3 det/rec
  inference models, taken from the ``rapidocr-onnxruntime==1.2.13`` wheel (Apache-2.0).
* ``import-paddle --in FILE.pdparams -c CONFIG --out PATH``: a PaddleOCR parameter file.
* ``import-openocr --in FILE.pth [-c CONFIG] --out PATH``: an OpenOCR checkpoint.
"""

from __future__ import annotations

import argparse

from ocr_core.commands._common import add_config_arguments

HELP = "Import pretrained weights (official PP-OCRv3, PaddleOCR .pdparams, OpenOCR .pth)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="weights_command", metavar="COMMAND", required=True)
    p = sub.add_parser(
        "import-ppocrv3", help="Import the official PP-OCRv3 det or rec weights (rapidocr wheel).",
        description="Fetch rapidocr-onnxruntime==1.2.13 with pip (or use --wheel / "
                    "$OCRFLOW_RAPIDOCR_WHEEL), load its PP-OCRv3 ONNX weights into our model, check "
                    "parity with onnxruntime and write an OCRFlow checkpoint (rec: also <out>.dict.txt).")
    p.add_argument("--kind", choices=("det", "rec"), required=True, help="which model to import")
    p.add_argument("--out", required=True, help="checkpoint path to write (.pt appended if missing)")
    p.add_argument("--wheel", default=None,
                   help="local rapidocr_onnxruntime-1.2.13 wheel (default: pip download into the cache)")
    p.set_defaults(_weights_run=_import_ppocrv3)

    p = sub.add_parser(
        "import-paddle", help="Import a PaddleOCR .pdparams file (trained model or ImageNet backbone).",
        description="Read FILE.pdparams safely (numpy arrays only), map Paddle's parameter names onto the "
                    "model built from CONFIG (distillation roles kept) and write an OCRFlow checkpoint.")
    p.add_argument("--in", dest="in_path", required=True, help="the .pdparams file")
    add_config_arguments(p, required=True)
    p.add_argument("--out", required=True, help="checkpoint path to write (.pt appended if missing)")
    p.add_argument("--role", default=None, help="distillation role for a backbone-only file")
    p.add_argument("--strict", action="store_true", help="fail on any missing/unexpected tensor")
    p.add_argument("--max-missing-ratio", type=float, default=0.05,
                   help="fail when more than this share of the model stays unfilled (default 0.05)")
    p.set_defaults(_weights_run=_import_paddle)

    p = sub.add_parser(
        "import-openocr", help="Import an OpenOCR .pth checkpoint (e.g. openocr_det_repvit_ch.pth).",
        description="Load an OpenOCR checkpoint ({'state_dict': ...} or a bare state dict) with "
                    "weights_only, map it strictly onto the model built from CONFIG and write an "
                    "OCRFlow checkpoint.")
    p.add_argument("--in", dest="in_path", required=True, help="the OpenOCR .pth file")
    add_config_arguments(p, required=False)  # default: configs/det/dbnet/repvit_db.yml
    p.add_argument("--out", required=True, help="checkpoint path to write (.pt appended if missing)")
    p.set_defaults(_weights_run=_import_openocr)


def _import_ppocrv3(args: argparse.Namespace) -> int:
    from ocr_core.weights.ppocr_weights import import_ppocrv3

    report = import_ppocrv3(args.kind, args.out, wheel=args.wheel)
    print(report.summary())
    return 0


def _import_paddle(args: argparse.Namespace) -> int:
    from ocr_core.weights.paddle_import import import_paddle

    ckpt, report = import_paddle(args.in_path, args.config, args.out, overrides=args.opt, role=args.role,
                                 strict=args.strict, max_missing_ratio=args.max_missing_ratio)
    print(report.details())
    print(f"wrote {ckpt}")
    return 0


def _import_openocr(args: argparse.Namespace) -> int:
    from ocr_core.weights.openocr_import import import_openocr

    ckpt, report = import_openocr(args.in_path, args.out, config=args.config, overrides=args.opt)
    print(report.details())
    print(f"wrote {ckpt}")
    return 0


def run(args: argparse.Namespace) -> int:
    return int(args._weights_run(args))
