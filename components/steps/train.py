"""Training steps: the stage plan, launching the workers, and the worker itself.

Every rank runs the same worker command, ``python -m components.steps.train worker --stage
data=URI ... --out-uri URI -- -c CONFIG -o ...``: it downloads each staged prefix (a per-node
cache), puts the local paths into the ``${name}`` placeholders of the overrides, resumes from
``latest.pt`` under ``--out-uri`` when a previous attempt left one, runs ``ocrflow train`` and, on
rank 0, uploads the checkpoints (``latest.pt`` while training, everything + manifest at the end).
The workers run as loopback processes (``launcher=local``), a PyTorchJob (``kubernetes``) or in
this process (``inprocess``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from components.steps.common import config_digest, content_key, log, resolve_config, scratch
from components.steps.data import data_overrides
from ocr_core.errors import ConfigError
from ocr_core.storage.client import open_store
from ocr_core.storage.manifest import Manifest, is_published, read_manifest, sync_down, sync_up
from ocr_core.storage.uri import join_uri

LAUNCHERS = ("local", "kubernetes", "inprocess")
DET_RECIPES = ("finetune", "cml")  # the training DAG's det_recipe values (pipelines/ocr_train_pipeline.py)
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")  # ${data}: not kubelet's $(VAR)


def train_key(config: str, overrides: Sequence[str], stage: Mapping[str, str], digests: Mapping[str, str],
              epochs: int, workers: int) -> str:
    """Content key of a training step: config file + overrides + staged manifests' digests."""
    return content_key(config_digest(config, overrides), sorted(overrides), sorted(stage), dict(digests),
                       epochs, workers)


def worker_program(config: str, overrides: Sequence[str], stage: Mapping[str, str], out_uri: str) -> list[str]:
    """The Python program each rank runs (``build_pytorchjob``/``run_local`` add the interpreter)."""
    prog = ["-m", "components.steps.train", "worker", "--out-uri", out_uri]
    for name, uri in sorted(stage.items()):
        prog += ["--stage", f"{name}={uri}"]
    return [*prog, "--", "-c", config, *(["-o", *overrides] if overrides else [])]


def run_workers(program: list[str], *, launcher: str, workers: int, gpus: int, name: str,
                    image: str | None = None, namespace: str = "default", secret: str = "") -> None:
    """Run ``program`` on ``workers`` nodes: loopback processes, a PyTorchJob, or in this process."""
    if launcher == "inprocess":
        rc = worker_main(program[3:])
        if rc:
            raise RuntimeError(f"training exited with {rc}")
    elif launcher == "local":
        from components.launcher.local import run_local

        res = run_local(program, nnodes=workers, log_sink=print)
        log.info("local job: %d node(s), %.1fs", res.nnodes, res.duration_s)
    elif launcher == "kubernetes":
        from components.launcher.client import launch_and_wait
        from components.launcher.pytorchjob import DEFAULT_IMAGE, build_pytorchjob

        env = {k: v for k, v in os.environ.items() if k.startswith("OCRFLOW_S3_") or k == "AWS_REGION"}
        job = build_pytorchjob(name, program, namespace=namespace, image=image or DEFAULT_IMAGE,
                               workers=workers, gpus_per_worker=gpus, env=env, secret_name=secret or None)
        launch_and_wait(job)
    else:
        raise ValueError(f"launcher must be one of {LAUNCHERS}, got {launcher!r}")


def launch_training_step(config: str, overrides: Sequence[str], stage: Mapping[str, str], run_root: str, step: str, *,
          launcher: str = "local", workers: int = 1, gpus: int = 0, epochs: int = 0,
          image: str | None = None, namespace: str = "default", secret: str = "") -> Manifest:
    """Train ``config`` on the staged prefixes; checkpoints land in ``<run_root>/runs/<key>/<step>``.

    The key is content-derived, so a retried or re-run step with the same inputs resumes from
    (or, when finished, reuses) the same prefix.
    """
    overrides = list(overrides) + ([f"Global.epoch_num={epochs}"] if epochs > 0 else [])
    if gpus <= 0:
        overrides.append("Global.use_gpu=false")
    digests = {n: read_manifest(u).digest() for n, u in stage.items()}
    key = train_key(config, overrides, stage, digests, epochs, workers)
    out_uri = join_uri(run_root, "runs", key[:16], step)
    if is_published(out_uri):
        log.info("%s: reusing the finished run at %s", step, out_uri)
        return read_manifest(out_uri)
    name = f"ocrflow-{step.replace('_', '-')}-{key[:8]}"
    run_workers(worker_program(resolve_config(config), overrides, stage, out_uri), launcher=launcher, workers=workers,
                    gpus=gpus, name=name, image=image, namespace=namespace, secret=secret)
    return read_manifest(out_uri)


def check_det_recipe(det_recipe: str, det_teacher_init_uri: str = "") -> None:
    """Fail fast on a detection recipe the DAG cannot run (before any data is moved or trained).

    ``cml`` trains a DML teacher first; it needs weights to start from (``det_teacher_init_uri``):
    an extracted DML teacher, an official distillation checkpoint or ImageNet backbones.
    """
    if det_recipe not in DET_RECIPES:
        raise ConfigError(f"det_recipe must be one of {', '.join(DET_RECIPES)}, got {det_recipe!r}")
    if det_recipe == "cml" and not det_teacher_init_uri:
        raise ConfigError("det_recipe=cml needs det_teacher_init_uri: a model prefix (model.pt) that initialises "
                          "the DML teacher's roles (an extracted DML teacher, the official distillation weights "
                          "converted with `ocrflow weights import-paddle`, or ImageNet backbones); "
                          "or use det_recipe=finetune")


def stage_plan(model_type: str, data_uri: str, init_uri: str = "", init_keys: Sequence[str] = (), teacher_uri: str = "",
               teacher_key: str = "") -> tuple[dict[str, str], list[str]]:
    """Prefixes to stage and the overrides that load them (``${name}`` = the staged directory).

    ``init_uri`` (e.g. imported PP-OCRv3 weights) initialises each of ``init_keys``
    (``Global.pretrained_model`` or ``Architecture.Models.<role>.pretrained``); ``teacher_uri``
    (an extracted teacher) goes into ``teacher_key``. Both prefixes hold ``model.pt``.
    """
    stage, overrides = {"data": data_uri}, data_overrides(model_type, "${data}")
    if init_uri:
        stage["init"] = init_uri
        overrides += [f"{k}=${{init}}/model.pt" for k in init_keys]
    if teacher_uri:
        stage["teacher"] = teacher_uri
        overrides.append(f"{teacher_key or 'Architecture.Models.Teacher.pretrained'}=${{teacher}}/model.pt")
    return stage, overrides


# ---------------------------------------------------------------------------- the worker side
class _Uploader(threading.Thread):
    """Rank 0: copy ``latest.pt`` to the run prefix whenever it changes (resume after a kill)."""

    def __init__(self, save_dir: Path, out_uri: str, every_s: float = 10.0) -> None:
        super().__init__(daemon=True)
        self.save_dir, self.out_uri, self.every_s = save_dir, out_uri, every_s
        self.stop = threading.Event()

    def run(self) -> None:
        seen = 0.0
        while not self.stop.wait(self.every_s):
            p = self.save_dir / "latest.pt"
            try:
                if p.is_file() and p.stat().st_mtime > seen:
                    seen = p.stat().st_mtime
                    open_store(self.out_uri).put_file(p, join_uri(self.out_uri, "latest.pt"))
            except Exception as exc:  # noqa: BLE001 - a failed interim upload must not kill training
                log.warning("interim checkpoint upload failed: %s", exc)


FAULT_ENV = "OCRFLOW_FAULT_KILL_AFTER_EPOCH"


def _install_fault(spec: str, rank: int, save_dir: Path, out_uri: str) -> None:
    """Fault injection for tests and chaos drills: ``OCRFLOW_FAULT_KILL_AFTER_EPOCH=E[:R]``.

    Right after epoch ``E``'s ``latest.pt`` is saved, rank 0 uploads it to the run prefix, all
    ranks meet at a barrier, then rank ``R`` (default 0) SIGKILLs itself: a lost node at a known
    point. A resumed attempt starts past epoch ``E``, so it fires once per run prefix.
    """
    import signal

    from ocr_core.engine import program
    from ocr_core.engine.distributed import barrier

    epoch_s, _, rank_s = spec.partition(":")
    epoch, victim = int(epoch_s), int(rank_s or 0)
    save = program.save

    def save_then_fault(run: Any, name: str, best: Any = None) -> Any:
        path = save(run, name, best)
        if name == "latest" and run.state.epoch == epoch:
            if rank == 0:
                open_store(out_uri).put_file(save_dir / "latest.pt", join_uri(out_uri, "latest.pt"))
            barrier()
            if rank == victim:
                print(f"[rank {rank}] {FAULT_ENV}: SIGKILL after epoch {epoch} (latest.pt uploaded)", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
        return path

    program.save = save_then_fault


def worker_main(argv: Sequence[str]) -> int:
    """One rank: stage in, (resume,) train, upload (rank 0)."""
    from ocr_core.train import run as train_run

    p = argparse.ArgumentParser(prog="components.steps.train worker")
    p.add_argument("--out-uri", required=True)
    p.add_argument("--stage", action="append", default=[], metavar="NAME=URI")
    p.add_argument("train_args", nargs=argparse.REMAINDER)
    args = p.parse_args(list(argv))
    train_args = [a for a in args.train_args if a != "--"] if args.train_args[:1] == ["--"] else args.train_args
    rank = int(os.environ.get("RANK", "0"))
    work = Path(os.environ.get("OCRFLOW_STAGE_DIR") or scratch(f"worker{rank}"))
    paths: dict[str, str] = {}
    for item in args.stage:
        name, uri = item.split("=", 1)
        sync_down(uri, work / "stage" / name, quiet=rank != 0)
        paths[name] = str(work / "stage" / name)
    train_args = [_PLACEHOLDER.sub(lambda m: paths[m.group(1)], a) for a in train_args]
    save_dir = work / "out"
    extra = [f"Global.save_model_dir={save_dir}"]
    store = open_store(args.out_uri)
    if store.exists(join_uri(args.out_uri, "latest.pt")):
        store.get_file(join_uri(args.out_uri, "latest.pt"), work / "resume" / "latest.pt")
        extra.append(f"Global.checkpoints={work / 'resume' / 'latest.pt'}")
        print(f"[rank {rank}] resuming from {args.out_uri}/latest.pt", flush=True)
    train_args = _add_overrides(train_args, extra)
    if os.environ.get(FAULT_ENV):
        _install_fault(os.environ[FAULT_ENV], rank, save_dir, args.out_uri)
    uploader = _Uploader(save_dir, args.out_uri) if rank == 0 else None
    if uploader:
        uploader.start()
    t0 = time.time()
    rc = train_run([*train_args, "--summary-json", str(work / "summary.json")])
    if uploader:
        uploader.stop.set()
    if rc == 0 and rank == 0:
        summary: dict[str, Any] = json.loads((work / "summary.json").read_text())
        ckpt = "best_accuracy.pt" if (save_dir / "best_accuracy.pt").is_file() else "latest.pt"
        (save_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
        sync_up(save_dir, args.out_uri, kind="model", quiet=True,
                extra={"checkpoint": ckpt, "best_metric": summary.get("best_metric", {}),
                       "global_step": summary.get("global_step"), "train_seconds": round(time.time() - t0, 1)})
    return rc


def _add_overrides(train_args: list[str], extra: list[str]) -> list[str]:
    return [*train_args, "-o", *extra]  # last wins: save dir and resume point are the worker's


if __name__ == "__main__":
    if sys.argv[1:2] != ["worker"]:
        sys.exit("usage: python -m components.steps.train worker --out-uri URI [--stage NAME=URI ...] -- -c CFG [-o ...]")
    sys.exit(worker_main(sys.argv[2:]))
