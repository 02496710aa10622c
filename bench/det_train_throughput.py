"""Detection training throughput on CPU: det_mv3_db, 640x640 crops, batch 4.

Measures images/s of the real training step (forward + DB loss + backward + Adam) for
fp32, channels_last and bf16 autocast, and the data pipeline separately (IaaAugment ->
EastRandomCropData -> border/shrink maps -> normalise) so data time and step time can be
compared. The anchor is PaddleOCR's own trainer on a 2-core CPU box (0.24 img/s, SPEC §5;
paddle is not installed here, so that row is quoted, not re-measured).

    python bench/det_train_throughput.py [--steps 6] [--warmup 2] [--batch 4] [--size 640]
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
from ocr_core.config import load_config  # noqa: E402
from ocr_core.data.icdar import convert_det_gt_dir  # noqa: E402
from ocr_core.data.synth import synth_det  # noqa: E402

PADDLE_CPU_IMG_S = 0.24  # SPEC §5: paddlepaddle 3.0 CPU, det_mv3_db, 640x640, batch 4, 2 vCPU


def make_data(root: Path, num: int) -> Path:
    synth_det(str(root), num=num, seed=0, domain="mixed", size=(1280, 720))
    convert_det_gt_dir(str(root / "gt"), str(root / "images"), str(root / "label.txt"), image_prefix="images")
    return root


def step_throughput(cfg: dict, batches: list, steps: int, warmup: int, channels_last: bool,
                    bf16: bool) -> tuple[float, float]:
    torch.manual_seed(0)
    model = create_model(cfg).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        batches = [[b[0].contiguous(memory_format=torch.channels_last), *b[1:]] for b in batches]
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    med = median_step_seconds(lambda batch: model(batch[0]), build_loss(cfg), opt, batches, steps,
                              warmup, bf16)
    return batches[0][0].shape[0] / med, med


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--size", type=int, default=640)
    ap.add_argument("--workers", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = make_data(Path(tmp) / "det", num=max(8, args.batch * 2))
        cfg = load_config(ROOT / "configs/det/det_mv3_db.yml", [
            f"Train.dataset.data_dir={data}", f"Train.dataset.label_file_list=[{data / 'label.txt'}]",
            f"Train.dataset.transforms.EastRandomCropData.size=[{args.size}, {args.size}]",
            f"Train.loader.batch_size_per_card={args.batch}", f"Train.loader.num_workers={args.workers}",
        ])
        batches, data_s_per_img = load_batches(cfg)
        rows = []
        for name, cl, bf in (("fp32", False, False), ("fp32 channels_last", True, False),
                             ("bf16 autocast", False, True), ("bf16 autocast + channels_last", True, True)):
            ips, med = step_throughput(cfg, batches, args.steps, args.warmup, cl, bf)
            rows.append((name, ips, med))
    threads = torch.get_num_threads()
    print(f"\ndet_mv3_db train step, {args.size}x{args.size}, batch {args.batch}, CPU threads {threads}")
    print(f"data pipeline (1 process): {data_s_per_img * 1000:.0f} ms/img "
          f"= {data_s_per_img * args.batch:.2f} s per batch (overlapped by DataLoader workers in training)")
    print(f"{'variant':34s} {'img/s':>8s} {'s/step':>8s} {'vs PaddleOCR CPU 0.24 img/s':>28s}")
    for name, ips, med in rows:
        print(f"{name:34s} {ips:8.2f} {med:8.2f} {ips / PADDLE_CPU_IMG_S:27.1f}x")
    print(f"{'PaddleOCR 3.0 trainer (SPEC §5, quoted)':34s} {PADDLE_CPU_IMG_S:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
