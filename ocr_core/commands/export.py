"""``ocrflow export -c CONFIG -o Global.pretrained_model=CKPT --format onnx [--out DIR] [--check]``.

Writes ``DIR/model.onnx`` (pre/post-processing settings embedded as metadata) and
``DIR/inference.yml`` (the resolved config). ``--check`` runs the parity gate; ``--format
tensorrt`` (or ``both``: the same files) also builds ``DIR/model.engine`` and, with ``--check``, gates
it against onnxruntime (exit 3 when no NVIDIA GPU / TensorRT is available: the ONNX model stays).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ocr_core.commands._common import add_config_arguments, config_from_args
from ocr_core.errors import ConfigError

HELP = "Export a checkpoint to ONNX (or TensorRT) with embedded pre/post-processing."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--format", choices=("onnx", "tensorrt", "both"), default="onnx",
                        help="tensorrt/both: ONNX plus a TensorRT engine (needs an NVIDIA GPU)")
    parser.add_argument("--out", default=None,
                        help="output directory (default: Global.save_inference_dir, else ./inference)")
    parser.add_argument("--role", default=None,
                        help="sub-model of a DistillationModel config/checkpoint to export (default Student)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17)")
    parser.add_argument("--check", action="store_true",
                        help="parity gate: eager vs onnxruntime tensors (and the Eval metric when available)")
    parser.add_argument("--no-metric", action="store_true", help="with --check, skip the Eval metric comparison")
    parser.add_argument("--fp16", action=argparse.BooleanOptionalAction, default=True,
                        help="TensorRT: build with the FP16 flag")
    parser.add_argument("--max-side", type=int, default=2048, help="TensorRT det profile: largest side")
    parser.add_argument("--max-batch", type=int, default=None, help="TensorRT profile: largest batch")
    parser.add_argument("--trt-atol", type=float, default=None,
                        help="with --check, the TensorRT gate's tensor tolerance vs onnxruntime (default 1e-2)")
    parser.add_argument("--random", action="store_true",
                        help="export the untrained (randomly initialised) model when no checkpoint is set")


def run(args: argparse.Namespace) -> int:
    from ocr_core.export.checked import TensorRTOptions, add_tensorrt, export_checked, needs_tensorrt
    from ocr_core.export.onnx_export import checkpoint_from_config

    cfg = config_from_args(args)
    if checkpoint_from_config(cfg) is None and not args.random:
        raise ConfigError("no checkpoint to export: set -o Global.pretrained_model=CKPT (or pass --random to "
                          "export untrained weights on purpose)", "Global.pretrained_model", file=args.config)
    out = Path(args.out or (cfg.get("Global") or {}).get("save_inference_dir") or "inference")
    checked = export_checked(cfg, out, role=args.role, opset=args.opset, check=args.check,
                             with_metric=not args.no_metric)
    result = checked.result
    summary: dict = {"onnx": str(result.onnx_path), "config": str(result.config_path),
                     "model_type": result.exported.model_type, "role": result.exported.role,
                     "ops": result.op_counts}
    if checked.parity is not None:
        summary["parity"] = checked.parity.to_dict()
    if needs_tensorrt(args.format):
        from ocr_core.export.tensorrt_build import EXIT_NO_TENSORRT, TensorRTUnavailable

        opts = TensorRTOptions(fp16=args.fp16, max_batch=args.max_batch, max_side=args.max_side)
        if args.trt_atol is not None:
            opts.atol = args.trt_atol
        try:
            add_tensorrt(checked, cfg, out, opts, check=args.check, with_metric=not args.no_metric)
        except TensorRTUnavailable as exc:
            print(json.dumps(summary, indent=2))
            print(str(exc), file=sys.stderr)
            return EXIT_NO_TENSORRT
        summary["engine"] = str(checked.engine)
        if checked.tensorrt_parity is not None:
            summary["tensorrt_parity"] = checked.tensorrt_parity.to_dict()
    print(json.dumps(summary, indent=2))
    return 0
