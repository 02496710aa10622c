"""Synthetic word-crop sets and small rec configs for integration tests and the rec bench."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from ocr_core.config import load_config

ROOT = Path(__file__).resolve().parents[2]
EN_DICT = "ppocr/utils/en_dict.txt"


def price_text(rng: np.random.Generator) -> str:
    """A receipt amount such as ``$12.05`` or ``3.99``: a narrow text distribution a CPU test learns."""
    return f"{'$' if rng.random() < 0.3 else ''}{int(rng.integers(0, 100))}.{int(rng.integers(0, 100)):02d}"


DIGITS = "0123456789"


def digit_text(rng: np.random.Generator) -> str:
    """3 to 6 random digits (a receipt/ticket number): the from-scratch CI run's text distribution."""
    return "".join(DIGITS[int(rng.integers(10))] for _ in range(int(rng.integers(3, 7))))


def make_rec_split(out: Path, num: int, seed: int, domain: str = "sign",
                   text_fn: Callable[[np.random.Generator], str] | None = None) -> Path:
    """Render ``num`` word crops into ``out/images`` and return ``out/rec_gt.txt``.

    Uses ``ocr_core.data.synth.synth_rec`` when present (and no ``text_fn``), else the same
    renderer directly (``synth_scenes.render_word``): lines are ``images/word_i.png<TAB>text``.
    ``text_fn(rng)`` picks the texts instead of the domain's own generator.
    """
    label = out / "rec_gt.txt"
    try:
        from ocr_core.data.synth import synth_rec
    except ImportError:
        synth_rec = None
    if synth_rec is not None and text_fn is None:
        synth_rec(str(out), num=num, seed=seed, domain=domain)
        return label
    from ocr_core.data.synth_scenes import render_word

    rng = np.random.default_rng(seed)
    (out / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(num):
        img, text = render_word(rng, domain, text=text_fn(rng) if text_fn is not None else None)
        cv2.imwrite(str(out / "images" / f"word_{i}.png"), img)
        lines.append(f"images/word_{i}.png\t{text}\n")
    label.write_text("".join(lines), encoding="utf-8")
    return label


def read_labels(label: Path) -> list[str]:
    return [line.split("\t", 1)[1].rstrip("\n") for line in label.read_text(encoding="utf-8").splitlines()]


def rec_config(train_dir: Path, eval_dir: Path, save_dir: Path, *extra: str,
               config: str = "configs/rec/rec_icdar15_train.yml", batch: int = 32, epochs: int = 1,
               train_labels: list[Path] | None = None) -> dict:
    """A shipped rec config pointed at synthetic word sets, sized for a CPU test.

    ``train_dir``/``eval_dir`` are LMDB roots (no label files) when the config uses LMDBDataSet.
    """
    labels = train_labels or [train_dir / "rec_gt.txt"]
    lmdb = "bilstm_ctc" in config
    overrides = [
        f"Global.save_model_dir={save_dir}",
        f"Global.epoch_num={epochs}",
        "Global.use_gpu=false",
        "Global.print_batch_step=10",
        "Global.eval_batch_step=[0, 100000]",
        "Global.save_epoch_step=1000",
        "Global.seed=7",
        f"Train.dataset.data_dir={train_dir}",
        *([] if lmdb else [f"Train.dataset.label_file_list=[{', '.join(str(p) for p in labels)}]"]),
        f"Train.loader.batch_size_per_card={batch}",
        "Train.loader.num_workers=0",
        f"Eval.dataset.data_dir={eval_dir}",
        *([] if lmdb else [f"Eval.dataset.label_file_list=[{eval_dir / 'rec_gt.txt'}]"]),
        f"Eval.loader.batch_size_per_card={batch}",
        "Eval.loader.num_workers=0",
        *extra,
    ]
    return load_config(ROOT / config, overrides)
