"""Latency of our exported PP-OCRv3 det graph vs the official ``ch_PP-OCRv3_det_infer.onnx``.

Both run in onnxruntime (CPU, same thread count, ORT_ENABLE_ALL), in the same process, with
interleaved repeats (A B B A ...) so drift hits both equally. Prints a table of median ms, the
speed ratio (official / ours) and the max abs difference of the two outputs.

Weights: the official PP-OCRv3 det weights imported with ``ocr_core.weights.ppocr_weights``
(so outputs should agree to ~1e-6); if that import is unavailable (offline, no wheel), random
weights with calibrated BN are used and the diff column is meaningless (noted in the output).

    .venv/bin/python bench/onnx_latency.py [--sizes 736x1312,640x640] [--threads 2] [--repeats 20] [--int8]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

STUDENT_CFG = ROOT / "configs/det/ch_PP-OCRv3/ch_PP-OCRv3_det_student.yml"


def official_and_ours(work: Path, official: str | None, ours: str | None) -> tuple[Path, Path, str]:
    """Paths of the official ONNX and of our export (made here if not given), and a weights note."""
    from ocr_core.config import load_config
    from ocr_core.export.onnx_export import export_onnx, load_export_model

    note = "official PP-OCRv3 weights imported into our model"
    ckpt = None
    if official is None or ours is None:
        try:
            from ocr_core.weights.ppocr_weights import extract_onnx, fetch_rapidocr_wheel, import_ppocrv3

            wheel = fetch_rapidocr_wheel()
            official = official or str(extract_onnx(wheel, "det"))
            if ours is None:
                ckpt = str(import_ppocrv3("det", work / "ppocrv3_det", wheel=wheel).checkpoint)
        except Exception as exc:  # noqa: BLE001 - fall back to random weights, but say so
            if official is None:
                raise SystemExit(f"cannot obtain the official det ONNX ({exc}); pass --official PATH") from None
            note = f"RANDOM weights (weights import failed: {exc}); diff column is not meaningful"
    if ours is None:
        cfg = load_config(STUDENT_CFG)
        exported = load_export_model(cfg, ckpt)
        if ckpt is None:
            _calibrate_bn(exported.model)
        ours = str(export_onnx(cfg, work / "ours", exported=exported).onnx_path)
    else:
        note = f"our graph from {ours}"
    return Path(official), Path(ours), note


def _calibrate_bn(model) -> None:  # noqa: ANN001
    import torch

    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
            m.reset_running_stats()
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.rand(1, 3, 256, 256) * 4 - 2)
    model.eval()


def session(path: Path, threads: int):  # noqa: ANN201
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def bench(sessions: dict[str, object], x: np.ndarray, repeats: int, warmup: int) -> dict[str, list[float]]:
    """Interleaved timings (ms) per session name; the order alternates each repeat."""
    names = list(sessions)
    feeds = {n: {sessions[n].get_inputs()[0].name: x} for n in names}  # type: ignore[attr-defined]
    for n in names:
        for _ in range(warmup):
            sessions[n].run(None, feeds[n])  # type: ignore[attr-defined]
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for n in (names if r % 2 == 0 else names[::-1]):
            t0 = time.perf_counter()
            sessions[n].run(None, feeds[n])  # type: ignore[attr-defined]
            times[n].append((time.perf_counter() - t0) * 1000)
    return times


def graph_summary(path: Path) -> str:
    import onnx

    counts: dict[str, int] = {}
    for node in onnx.load(str(path)).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="736x1312,640x640", help="HxW list")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--official", default=None, help="official ch_PP-OCRv3_det_infer.onnx (default: from the wheel)")
    ap.add_argument("--ours", default=None, help="our exported model.onnx (default: export now)")
    ap.add_argument("--int8", action="store_true", help="also time an onnxruntime dynamic-int8 copy of ours")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        official, ours, note = official_and_ours(work, args.official, args.ours)
        paths = {"ours": ours, "official": official}
        if args.int8:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            q = work / "ours_int8.onnx"
            quantize_dynamic(str(ours), str(q), weight_type=QuantType.QUInt8)
            paths["ours_int8"] = q
        sessions = {n: session(p, args.threads) for n, p in paths.items()}
        print(f"weights: {note}")
        print(f"threads: {args.threads}, repeats: {args.repeats} (interleaved), warmup: {args.warmup}")
        for n, p in paths.items():
            print(f"{n} graph: {graph_summary(p)}")
        header = "| input | ours ms | official ms | official/ours | max abs diff |"
        if args.int8:
            header += " int8 ms | int8 max abs diff |"
        print()
        print(header)
        print("|" + "---|" * (header.count("|") - 1))
        rng = np.random.default_rng(0)
        for size in args.sizes.split(","):
            h, w = (int(v) for v in size.lower().split("x"))
            x = rng.standard_normal((1, 3, h, w)).astype(np.float32)
            times = bench(sessions, x, args.repeats, args.warmup)
            med = {n: statistics.median(t) for n, t in times.items()}
            outs = {n: s.run(None, {s.get_inputs()[0].name: x})[0] for n, s in sessions.items()}
            diff = float(np.abs(outs["ours"] - outs["official"]).max())
            row = (f"| 1x3x{h}x{w} | {med['ours']:.1f} | {med['official']:.1f} | "
                   f"{med['official'] / med['ours']:.2f}x | {diff:.2e} |")
            if args.int8:
                d8 = float(np.abs(outs["ours_int8"] - outs["official"]).max())
                row += f" {med['ours_int8']:.1f} | {d8:.2e} |"
            print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
