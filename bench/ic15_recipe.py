"""The ICDAR2015 fine-tuning recipe, measured: off-the-shelf vs fine-tuned PP-OCRv3 det and rec.

Input is the pipeline's raw layout made by ``ocrflow split-icdar`` from the ICDAR2015 *train*
split (never its test split: that is the acceptance set)::

    RAW/det/{train,test}/images/*   RAW/det/{train,test}/gt/gt_*.txt   [RAW/rec/{train,test}/gt.txt + crops]

and the imported official weights (``ocrflow weights import-ppocrv3 --kind det|rec``). Word crops
are cut from the det ground truth when ``RAW/rec`` is absent. The script

1. evaluates the official PP-OCRv3 det student (hmean, DetResizeForTest limit 736 min) and rec
   model (word accuracy, case-insensitive alphanumeric: ``RecMetric.is_filter``) on the held-out split;
2. fine-tunes each with the shipped configs (``ch_PP-OCRv3_det_finetune.yml``,
   ``ch_PP-OCRv3_rec_finetune.yml``: the fine-tune guide's optimizers, the learning rate scaled to
   the global batch) within a wall-clock budget: the measured per-sample data cost sizes the epoch
   count so the schedule ends inside the budget (on a GPU the loader is the bottleneck; on a CPU pass
   ``--det-epochs``/``--rec-epochs``), and ``Global.max_train_seconds`` is the hard stop;
3. reports the final model (not the best evaluation: no selection on the held-out split) and the
   curve, and writes ``results.json`` + ``results.md`` under ``--out``.

    python bench/ic15_recipe.py --raw data/ic15_raw --weights weights --out bench_out/ic15 \\
        --device cuda --det-seconds 200 --rec-seconds 80

CPU (2 cores), the best measured: ``--device cpu --only det --det-batch 8 --det-epochs 30 --det-crop 512
--det-seconds 5100 --workers 2 --det-override Optimizer.lr.reference_batch_size=24`` (hmean 0.4359 -> 0.6746
in 71 min, docs/results.md).
``--dry-run`` runs every path on a few images in seconds (CI).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ocr_core.config import load_config  # noqa: E402
from ocr_core.data.icdar import convert_det_gt_dir, convert_rec_gt  # noqa: E402

DET_CONFIG = ROOT / "configs/det/ch_PP-OCRv3/ch_PP-OCRv3_det_finetune.yml"
REC_CONFIG = ROOT / "configs/rec/PP-OCRv3/ch_PP-OCRv3_rec_finetune.yml"


def say(msg: str) -> None:
    print(f"[ic15 {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------------------------ data
def prepare_labels(raw: Path, out: Path, limit: int | None = None) -> dict[str, Any]:
    """PaddleOCR label files for det (and rec, cropping words when ``raw/rec`` is absent) under ``out``.

    Label paths are relative to the data dirs this returns (``dirs``): det ``raw``; rec the
    folder holding ``train/`` and ``test/`` crops.
    """
    from ocr_core.data.crop_words import crop_words

    lab = out / "labels"
    lab.mkdir(parents=True, exist_ok=True)
    rec_root = raw / "rec" if (raw / "rec" / "train" / "gt.txt").is_file() else out / "rec"
    info: dict[str, Any] = {"dirs": {"det": str(raw), "rec": str(rec_root)}}
    for split in ("train", "test"):
        det = raw / "det" / split
        st = convert_det_gt_dir(str(det / "gt"), str(det / "images"), str(lab / f"det_{split}.txt"),
                                image_prefix=f"det/{split}/images")
        info[f"det_{split}_images"], info[f"det_{split}_boxes"] = st.files, st.boxes
        rec_dir = rec_root / split
        if not (rec_dir / "gt.txt").is_file():
            cs = crop_words(str(det / "gt"), str(det / "images"), str(rec_dir), progress=False)
            info[f"rec_{split}_crop_skips"] = {k: v for k, v in cs.to_dict().items() if k not in ("words", "images")}
        rs = convert_rec_gt(str(rec_dir / "gt.txt"), str(lab / f"rec_{split}.txt"), image_prefix=split)
        info[f"rec_{split}_words"] = rs.lines
        if limit:  # --dry-run: a few lines of each
            for kind in ("det", "rec"):
                f = lab / f"{kind}_{split}.txt"
                f.write_text("".join(f.read_text(encoding="utf-8").splitlines(True)[:limit]), encoding="utf-8")
    return info


def probe_ips(cfg: dict[str, Any], samples: int, workers: int) -> float:
    """Expected Train-loader samples/s: the per-sample transform cost measured in this process, times the
    workers, times 0.5.

    The 0.5 is what the first GPU run showed: 15 workers building whole batches of 64 delivered about
    half their summed rate (each epoch of 13 batches is one wave of workers, with a bubble at every
    epoch boundary). Timing the loader itself measured its prefetched first wave and overestimated
    7x (953 vs 130 samples/s), which sized a 90-epoch schedule that stopped in epoch 7.
    """
    from ocr_core.data.loader import build_dataloader

    dataset, _, _ = build_dataloader({**cfg, "Train": {**cfg["Train"], "loader": {
        **cfg["Train"].get("loader", {}), "num_workers": 0}}}, "Train")
    n = len(dataset)
    for i in range(min(2, n)):  # warm-up: imports, first decode
        dataset[i]
    k = max(1, min(samples, n))
    t0 = time.perf_counter()
    for i in range(k):
        dataset[(i * 7919) % n]
    per = (time.perf_counter() - t0) / k
    return max(1, workers) / max(1e-9, per) * (0.5 if workers > 1 else 1.0)


# ------------------------------------------------------------------------------- one model
def run_model(kind: str, args: argparse.Namespace, labels: Path, data_dir: str, out: Path) -> dict[str, Any]:
    """Off-the-shelf eval, budgeted fine-tune, final eval of one model kind (det or rec)."""
    from ocr_core.engine.run import evaluate_config, train

    cuda = args.device == "cuda"
    weights = Path(args.weights) / f"ppocrv3_{kind}.pt"
    batch = args.det_batch if kind == "det" else args.rec_batch
    seconds = args.det_seconds if kind == "det" else args.rec_seconds
    common = [f"Global.use_gpu={str(cuda).lower()}", f"Global.device={'cuda' if cuda else 'cpu'}",
              f"Train.dataset.data_dir={data_dir}", f"Eval.dataset.data_dir={data_dir}",
              f"Train.dataset.label_file_list=[{labels / f'{kind}_train.txt'}]",
              f"Eval.dataset.label_file_list=[{labels / f'{kind}_test.txt'}]",
              f"Train.loader.batch_size_per_card={batch}", f"Train.loader.num_workers={args.workers}",
              f"Eval.loader.num_workers={min(args.workers, 8)}", "Train.loader.persistent_workers=true",
              "Global.use_amp=true", "Global.amp_dtype=bfloat16", "Global.print_batch_step=10"]
    if kind == "det":
        config = DET_CONFIG
        common += [f"Train.dataset.transforms.EastRandomCropData.size=[{args.det_crop}, {args.det_crop}]",
                   "Global.channels_last=true"]
    else:
        config = REC_CONFIG
        common += [f"Global.character_dict_path={weights.with_name('ppocrv3_rec.dict.txt')}", "Metric.is_filter=true",
                   f"Eval.loader.batch_size_per_card={min(batch, 256)}"]
    res: dict[str, Any] = {"config": str(config.relative_to(ROOT)), "batch": batch, "budget_s": seconds}

    say(f"{kind}: off-the-shelf evaluation")
    t0 = time.perf_counter()
    shelf = evaluate_config(load_config(str(config), [*common, f"Global.pretrained_model={weights}",
                                                      f"Global.save_model_dir={out / f'{kind}_shelf'}"]))
    res["off_the_shelf"] = {k: float(v) for k, v in shelf.items()}
    res["eval_seconds"] = round(time.perf_counter() - t0, 1)

    n_train = sum(1 for _ in open(labels / f"{kind}_train.txt", encoding="utf-8"))
    probe_cfg = load_config(str(config), common)
    ips = probe_ips(probe_cfg, args.probe_samples, args.workers)
    epochs = args.det_epochs if kind == "det" else args.rec_epochs
    if not epochs:  # size the schedule to the budget (the loader is the bottleneck on a GPU; 0.8 margin)
        epochs = max(2, int(seconds * ips * 0.8 / max(1, n_train)))
    res.update(loader_ips=round(ips, 1), epochs=epochs, train_samples=n_train)
    say(f"{kind}: loader {ips:.0f} samples/s -> {epochs} epochs of {n_train} in a {seconds:.0f} s budget")
    tune = [*common, f"Global.pretrained_model={weights}", f"Global.save_model_dir={out / f'{kind}_ft'}",
            f"Global.epoch_num={epochs}", f"Global.max_train_seconds={seconds}",
            f"Global.eval_batch_epoch={max(1, epochs // 4)}", "Global.eval_batch_step=[0, 1000000000]",
            f"Global.save_epoch_step={epochs + 1}"]
    if kind == "rec":  # Piecewise: decay at 80% of the run, as the config's [80] of 100 epochs
        tune.append(f"Optimizer.lr.decay_epochs=[{max(1, round(0.8 * epochs))}]")
    tune += list(args.det_override if kind == "det" else args.rec_override)
    t0 = time.perf_counter()
    summary = train(load_config(str(config), tune))
    res["train_seconds"] = round(time.perf_counter() - t0, 1)
    res["global_step"] = summary["global_step"]
    res["stopped_epoch"] = summary["epoch"]
    res["curve"] = [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in h.items()} for h in summary["history"]]
    final = summary["history"][-1] if summary["history"] else {}
    res["fine_tuned"] = {k: float(v) for k, v in final.items() if isinstance(v, (int, float)) and k not in
                         ("epoch", "global_step", "best_epoch", "best_step")}
    res["best_during_training"] = {k: v for k, v in summary["best_metric"].items() if isinstance(v, (int, float))}
    res["weights"] = str(plain_weights(out / f"{kind}_ft" / "latest.pt", out / f"ppocrv3_{kind}_ic15.pt"))
    return res


def plain_weights(src: Path, dst: Path) -> Path:
    """The final model as a weights-only checkpoint (no optimizer state): small enough to copy back."""
    from ocr_core.weights.checkpoint import load_checkpoint, save_checkpoint

    ck = load_checkpoint(src)
    keep = ("model", "architecture", "model_type", "config", "charset", "epoch", "global_step", "best_metric")
    return save_checkpoint(dst, {k: ck[k] for k in keep if k in ck} | {"provenance": {"source": str(src)}})


# ---------------------------------------------------------------------------------- report
def environment(device: str) -> dict[str, Any]:
    import torch

    env = {"date_utc": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()), "python": platform.python_version(),
           "torch": torch.__version__, "cpus": os.cpu_count(), "device": device}
    if device == "cuda" and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


def markdown(results: dict[str, Any]) -> str:
    env = results["environment"]
    hw = env.get("gpu") or f"CPU x{env['cpus']}"
    lines = [f"ICDAR2015 train split, held-out part ({results['data']['det_test_images']} images, "
             f"{results['data']['rec_test_words']} words); {hw}; torch {env['torch']}; {env['date_utc']}", "",
             "| model | metric | off-the-shelf | fine-tuned | epochs | train s | batch |",
             "|---|---|---|---|---|---|---|"]
    for kind, metric in (("det", "hmean"), ("rec", "acc")):
        r = results.get(kind)
        if not r:
            continue
        lines.append(f"| PP-OCRv3 {kind} | {metric} | {r['off_the_shelf'].get(metric, 0):.4f} | "
                     f"{r['fine_tuned'].get(metric, 0):.4f} | {r['stopped_epoch']}/{r['epochs']} | "
                     f"{r['train_seconds']:.0f} | {r['batch']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raw", required=True, help="split-icdar output (det/{train,test}/images|gt)")
    ap.add_argument("--weights", required=True, help="folder with ppocrv3_det.pt, ppocrv3_rec.pt (+ .dict.txt)")
    ap.add_argument("--out", default="bench_out/ic15")
    ap.add_argument("--device", choices=("cuda", "cpu"), default=None)
    ap.add_argument("--only", choices=("det", "rec"), default=None)
    ap.add_argument("--det-seconds", type=float, default=200.0)
    ap.add_argument("--rec-seconds", type=float, default=80.0)
    ap.add_argument("--det-epochs", type=int, default=0, help="0: sized from the loader probe and the budget")
    ap.add_argument("--rec-epochs", type=int, default=0)
    ap.add_argument("--det-batch", type=int, default=64)
    ap.add_argument("--rec-batch", type=int, default=256)
    ap.add_argument("--det-crop", type=int, default=640)
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    ap.add_argument("--probe-samples", type=int, default=24, help="samples timed to size the schedule")
    ap.add_argument("--det-override", action="append", default=[], metavar="KEY=VALUE",
                    help="extra -o override for the det fine-tune (repeatable)")
    ap.add_argument("--rec-override", action="append", default=[], metavar="KEY=VALUE",
                    help="extra -o override for the rec fine-tune, e.g. Optimizer.lr.warmup_epoch=1")
    ap.add_argument("--dry-run", action="store_true", help="a few images and steps: exercise every path")
    args = ap.parse_args(argv)
    import cv2
    import torch

    # serial OpenCV in this process (the word crops run here; loader workers inherit the mode)
    cv2.setNumThreads(0)

    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.dry_run:
        args.det_batch, args.rec_batch, args.det_crop, args.probe_samples = 2, 2, 96, 2
        args.det_epochs, args.rec_epochs = args.det_epochs or 1, args.rec_epochs or 1
    t0 = time.perf_counter()
    results: dict[str, Any] = {"environment": environment(args.device), "args": vars(args)}
    results["data"] = prepare_labels(Path(args.raw).resolve(), out, limit=4 if args.dry_run else None)
    results["data"]["rec_test_words"] = sum(1 for _ in open(out / "labels" / "rec_test.txt", encoding="utf-8"))
    results["data"]["det_test_images"] = sum(1 for _ in open(out / "labels" / "det_test.txt", encoding="utf-8"))
    for kind in ("det", "rec"):
        if args.only in (None, kind):
            results[kind] = run_model(kind, args, out / "labels", results["data"]["dirs"][kind], out)
            (out / "results.json").write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    results["wall_seconds"] = round(time.perf_counter() - t0, 1)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    (out / "results.md").write_text(markdown(results), encoding="utf-8")
    print(markdown(results))
    say(f"done in {results['wall_seconds']:.0f} s; {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
