"""Recognition training throughput on CPU: SVTR_LCNet (PP-OCRv3 rec), 48x320, batch 64.

Measures samples/s of the real training step (forward + loss + backward + Adam) for fp32 and
bf16 autocast, each with and without channels_last (cl), for the CTC-only fine-tune model (``ch_PP-OCRv3_rec_finetune.yml``) and the full
MultiHead CTC+SAR training model (``en_PP-OCRv3_rec.yml``), and the data pipeline separately
(DecodeImage -> RecAug -> label encode -> RecResizeImg, one process) so data time and step time
can be compared. Synthetic word crops are rendered first.

    python bench/rec_train_throughput.py [--steps 4] [--warmup 1] [--batch 64] [--width 320]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.train_timing import load_batches, median_step_seconds  # noqa: E402
from ocr_core.build import build_loss, create_model  # noqa: E402
from ocr_core.config import load_charset, wire_rec_heads  # noqa: E402
from ocr_core.engine.loop import forward_model  # noqa: E402
from tests.integration.rec_fixtures import make_rec_split, rec_config  # noqa: E402

MODELS = (
    ("SVTR_LCNet CTC (finetune)", "configs/rec/PP-OCRv3/ch_PP-OCRv3_rec_finetune.yml"),
    ("SVTR_LCNet CTC+SAR (en_PP-OCRv3)", "configs/rec/PP-OCRv3/en_PP-OCRv3_rec.yml"),
)


def config_for(config: str, data: Path, out: Path, batch: int, width: int) -> dict:
    cfg = rec_config(data, data, out, f"Train.dataset.transforms.RecResizeImg.image_shape=[3, 48, {width}]",
                     config=config, batch=batch)
    if "RecConAug" in str(cfg["Train"]["dataset"]["transforms"]):
        cfg["Train"]["dataset"]["transforms"] = [
            op for op in cfg["Train"]["dataset"]["transforms"] if "RecConAug" not in op]
    cfg = wire_rec_heads(cfg, len(load_charset(cfg) or []) + 1)
    return cfg


def step_throughput(cfg: dict, batches: list, steps: int, warmup: int, bf16: bool,
                    channels_last: bool = False) -> tuple[float, float]:
    torch.manual_seed(0)
    model = create_model(cfg).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        batches = [[b[0].contiguous(memory_format=torch.channels_last), *b[1:]] for b in batches]
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=5e-4)
    med = median_step_seconds(lambda batch: forward_model(model, batch, "rec", training=True),
                              build_loss(cfg), opt, batches, steps, warmup, bf16)
    return batches[0][0].shape[0] / med, med


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--only-ctc", action="store_true", help="skip the CTC+SAR model")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "words"
        make_rec_split(data, num=args.batch * 2, seed=0, domain="mixed")
        data_ms = {}
        for name, config in MODELS[:1] if args.only_ctc else MODELS:
            cfg = config_for(config, data, Path(tmp) / "out", args.batch, args.width)
            batches, data_s = load_batches(cfg)
            data_ms[name] = data_s * 1000
            for variant, bf16, cl in (("fp32", False, False), ("fp32 cl", False, True),
                                      ("bf16 autocast", True, False), ("bf16 + cl", True, True)):
                ips, med = step_throughput(cfg, batches, args.steps, args.warmup, bf16, cl)
                rows.append((name, variant, ips, med, data_s * args.batch))
    threads = torch.get_num_threads()
    print(f"\nrec train step, 48x{args.width}, batch {args.batch}, CPU threads {threads}")
    for name, ms in data_ms.items():
        print(f"data pipeline {name} (1 process): {ms:.1f} ms/sample = {ms * args.batch / 1000:.2f} s per batch")
    print(f"{'model':34s} {'variant':14s} {'samples/s':>10s} {'s/step':>8s} {'data s/batch':>13s}")
    for name, variant, ips, med, data_batch in rows:
        print(f"{name:34s} {variant:14s} {ips:10.1f} {med:8.2f} {data_batch:13.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
