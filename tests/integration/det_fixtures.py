"""Synthetic ICDAR-style det datasets and small det configs for integration tests."""

from __future__ import annotations

from pathlib import Path

from ocr_core.config import load_config
from ocr_core.data.icdar import convert_det_gt_dir
from ocr_core.data.synth import synth_det

ROOT = Path(__file__).resolve().parents[2]


def make_det_split(out: Path, num: int, seed: int, domain: str = "sign", size: tuple[int, int] = (320, 256)) -> Path:
    """Render ``num`` images, convert their ICDAR gt, return the PaddleOCR label file."""
    synth_det(str(out), num=num, seed=seed, domain=domain, size=size)
    label = out / "label.txt"
    convert_det_gt_dir(str(out / "gt"), str(out / "images"), str(label), image_prefix="images")
    return label


def det_config(train_dir: Path, eval_dir: Path, save_dir: Path, *extra: str,
               config: str = "configs/det/det_mv3_db.yml", crop: int = 256, batch: int = 4,
               epochs: int = 1) -> dict:
    """A shipped det config pointed at synthetic data, sized for a CPU test."""
    overrides = [
        f"Global.save_model_dir={save_dir}",
        f"Global.epoch_num={epochs}",
        "Global.use_gpu=false",
        "Global.print_batch_step=5",
        "Global.eval_batch_step=[0, 100000]",
        "Global.save_epoch_step=1000",
        "Global.seed=7",
        f"Train.dataset.data_dir={train_dir}",
        f"Train.dataset.label_file_list=[{train_dir / 'label.txt'}]",
        f"Train.dataset.transforms.EastRandomCropData.size=[{crop}, {crop}]",
        f"Train.loader.batch_size_per_card={batch}",
        "Train.loader.num_workers=0",
        f"Eval.dataset.data_dir={eval_dir}",
        f"Eval.dataset.label_file_list=[{eval_dir / 'label.txt'}]",
        "Eval.dataset.transforms.DetResizeForTest={limit_side_len: 320, limit_type: max}",
        "Eval.loader.num_workers=0",
        *extra,
    ]
    return load_config(ROOT / config, overrides)
