"""PaddleOCR's own det training step, timed on batches handed over by ``det_train_throughput.py``.

Run by the PaddlePaddle interpreter (a separate venv with paddlepaddle, outside this repo), never
imported by OCRFlow::

    PY bench/paddle_det_step.py --paddleocr-src DIR --batches batches.npz --steps 6 --warmup 2

It builds the model, loss and optimizer from PaddleOCR's ``configs/det/det_mv3_db.yml`` with
PaddleOCR's own builders (``ppocr.modeling.architectures.build_model``, ``ppocr.losses.build_loss``,
``ppocr.optimizer.build_optimizer``), then runs what ``tools/program.py``'s train loop runs per step
(``model(images)``, the DB loss on ``[image, threshold_map, threshold_mask, shrink_map,
shrink_mask]``, ``backward``, ``optimizer.step``, ``clear_grad``, the lr scheduler's ``step``) on
exactly the arrays in ``--batches``. Prints one JSON line: per-step seconds, batch size, versions.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--paddleocr-src", type=Path, required=True)
    ap.add_argument("--batches", type=Path, required=True, help=".npz with arrays k0..k4 per batch: b{i}_{k}")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--config", default="configs/det/det_mv3_db.yml")
    args = ap.parse_args()
    sys.path.insert(0, str(args.paddleocr_src))
    import numpy as np
    import paddle
    import yaml
    from ppocr.losses import build_loss
    from ppocr.modeling.architectures import build_model
    from ppocr.optimizer import build_optimizer

    paddle.set_device("cpu")
    paddle.seed(0)
    cfg = yaml.safe_load((args.paddleocr_src / args.config).read_text(encoding="utf-8"))
    cfg["Architecture"]["Backbone"].pop("pretrained", None)  # from scratch, as our side
    model = build_model(cfg["Architecture"])
    model.train()
    loss_fn = build_loss(cfg["Loss"])
    optimizer, lr_scheduler = build_optimizer(cfg["Optimizer"], epochs=1, step_each_epoch=1000, model=model)
    data = np.load(args.batches)
    n_batches = len({k.split("_")[0] for k in data.files})
    batches = [[paddle.to_tensor(data[f"b{i}_{k}"]) for k in range(5)] for i in range(n_batches)]
    times = []
    for step in range(args.warmup + args.steps):
        batch = batches[step % n_batches]
        t0 = time.perf_counter()
        preds = model(batch[0])
        loss = loss_fn(preds, batch)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        if not isinstance(lr_scheduler, float):
            lr_scheduler.step()
        float(loss)  # the step is done
        if step >= args.warmup:
            times.append(time.perf_counter() - t0)
    print(json.dumps({"step_s": times, "batch": int(batches[0][0].shape[0]), "paddle": paddle.__version__,
                      "threads": paddle.get_flags(["FLAGS_paddle_num_threads"]).get("FLAGS_paddle_num_threads"),
                      "loss_last": float(loss)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
