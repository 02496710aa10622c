"""Training steps: the stage plan, launching the workers, and the worker itself.

Every rank runs the same worker command, ``python -m components.steps.train worker --out-uri URI
--model-type det --stage data=URI [--stage init=URI --init-key KEY ...] -- -c CONFIG -o ...``
(a PyTorchJob replica needs a command line); with shards (``data_format=shards``) ``--shards URI``
replaces ``--stage data=URI``: Train and Eval stream the shard sets from object storage
(``ShardDataSet``) and nothing of the dataset is staged. The worker downloads each staged prefix (a per-node
cache), builds the config in Python (:func:`training_config`: the config file, the staged paths as
values, the ``-o`` overrides, then its own save dir and resume point), resumes from ``latest.pt``
under ``--out-uri`` when a previous attempt left one, calls the engine's ``train(cfg)`` and, on
rank 0, uploads the checkpoints (``latest.pt`` while training, everything + manifest at the end).
The workers run as loopback processes (``launcher=local``), a PyTorchJob (``kubernetes``) or in
this process (``inprocess``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from components.steps.common import config_digest, content_key, find_config_file, layered_config, log, scratch
from components.steps.data import data_settings, shard_dataset_config
from components.steps.train_hooks import FAULT_ENV, CheckpointUploader, combine_hooks, install_fault
from ocr_core.errors import ConfigError, OCRFlowError, Preempted
from ocr_core.storage.client import open_store
from ocr_core.storage.manifest import Manifest, is_published, read_manifest, sync_down, sync_up
from ocr_core.storage.uri import join_uri

if TYPE_CHECKING:
    pass

LAUNCHERS = ("local", "kubernetes", "inprocess")
DET_RECIPES = ("finetune", "cml")  # the training DAG's det_recipe values (pipelines/ocr_train_pipeline.py)
TEACHER_KEY = "Architecture.Models.Teacher.pretrained"
SAVE_STEP_KEY = "Global.save_step_interval"
# An elastic step's step-checkpoint interval when neither its config nor its overrides set one: a node
# lost (or joining) mid-epoch costs at most this many optimizer steps. At the measured rates
# (docs/scaling.md: det data-bound at ~169 img/s per GPU, batch 8; rec 3260 img/s, batch 64) that is
# under a minute of training, while one save (+ its background upload) costs 0.5-4 s.
ELASTIC_SAVE_STEP_INTERVAL = 1000


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


def check_elastic(workers: int, min_workers: int) -> None:
    """Fail fast on a ``workers``/``min_workers`` the DAG cannot run (``ConfigError`` naming the parameter).

    ``min_workers`` 0 is a fixed-size job of ``workers`` nodes; 0 < ``min_workers`` < ``workers``
    makes each training step an elastic PyTorchJob that keeps training on ``min_workers`` to
    ``workers`` nodes (:func:`elastic_policy`).
    """
    if min_workers < 0:
        raise ConfigError(f"min_workers must be >= 0 (0: a fixed-size job of `workers` nodes), got {min_workers}")
    if min_workers == 0:
        if workers < 1:
            raise ConfigError(f"workers must be >= 1 (the number of training nodes), got {workers}")
        return
    if workers < 2:
        raise ConfigError(f"min_workers={min_workers} needs workers >= 2 (an elastic job runs between min_workers "
                          f"and workers nodes), got workers={workers}; or use min_workers=0")
    if min_workers > workers:
        raise ConfigError(f"min_workers={min_workers} is more than workers={workers} (the elastic job's maximum); "
                          "min_workers must be below workers")
    if min_workers == workers:
        raise ConfigError(f"min_workers={min_workers} equals workers: the job could never shrink, so elastic means "
                          "nothing; use min_workers=0 (a fixed-size job) or a min_workers below workers")


def elastic_policy(min_workers: int, workers: int) -> dict[str, Any] | None:
    """The PyTorchJob ``elasticPolicy`` (:attr:`PyTorchJobSpec.elastic`) of a step with these
    ``min_workers``/``workers``; None when ``min_workers`` is 0 (a fixed-size job).

    It is exactly what ``ocrflow launch --elastic MIN:MAX`` builds (the launcher's own
    ``spec_from_args``: c10d rendezvous, its ``--max-restarts`` default), so a DAG step and a job
    launched by hand get the same policy.
    """
    check_elastic(workers, min_workers)
    if not min_workers:
        return None
    from components.launcher.cli import add_arguments, spec_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["-c", "-", "--name", "elastic", "--namespace", "-",
                              "--elastic", f"{min_workers}:{workers}"])
    return dict(spec_from_args(args).elastic or {})


def with_step_checkpoints(config: str, overrides: Sequence[str]) -> list[str]:
    """``overrides`` plus ``Global.save_step_interval`` = :data:`ELASTIC_SAVE_STEP_INTERVAL` unless the
    overrides or the config file set it (an elastic job resumes the survivors from the last step
    checkpoint after a resize; without one, from the last epoch's end). An override that sets it,
    ``null`` included, is kept as the user's choice."""
    from ocr_core.config import load_config

    if any(o.partition("=")[0].strip() == SAVE_STEP_KEY for o in overrides):
        return list(overrides)
    if load_config(find_config_file(config))["Global"].get("save_step_interval") is not None:
        return list(overrides)
    log.info("elastic training: %s=%d (step checkpoints to resume from after a resize; set %s in the step's "
             "overrides to choose another)", SAVE_STEP_KEY, ELASTIC_SAVE_STEP_INTERVAL, SAVE_STEP_KEY)
    return [*overrides, f"{SAVE_STEP_KEY}={ELASTIC_SAVE_STEP_INTERVAL}"]


# ------------------------------------------------------------------------------ the stage plan
@dataclass(frozen=True)
class StagePlan:
    """What a training step stages in, and which config keys read it.

    Attributes:
        model_type: ``det`` or ``rec``: the layout of ``data`` (det label files, or rec LMDBs).
        data: The dataset prefix (staged unless ``shards`` is given).
        init: A model prefix (``model.pt``) that initialises each of ``init_keys``
            (``Global.pretrained_model`` or ``Architecture.Models.<role>.pretrained``); "" for none.
        init_keys: The config keys ``init`` goes into.
        teacher: An extracted teacher prefix (``model.pt``); "" for none.
        teacher_key: The config key ``teacher`` goes into.
        shards: The ``build_shards`` prefix (``<shards>/<model_type>/{train,test}``) Train and Eval
            stream instead of staging ``data``; "" (``data_format=files``) stages ``data``.
    """

    model_type: str
    data: str
    init: str = ""
    init_keys: tuple[str, ...] = ()
    teacher: str = ""
    teacher_key: str = TEACHER_KEY
    shards: str = ""

    def uris(self) -> dict[str, str]:
        """Name -> prefix of everything to stage (``data`` unless streamed from shards, ``init``/``teacher``)."""
        data = "" if self.shards else self.data
        return {k: v for k, v in (("data", data), ("init", self.init), ("teacher", self.teacher)) if v}

    def key_fields(self) -> dict[str, Any]:
        """The plan as the training content key hashes it: ``shards`` only when set, so a ``files``
        plan keys exactly as before shards existed (finished runs are reused)."""
        return {k: v for k, v in asdict(self).items() if k != "shards" or v}

    def settings(self, staged: Mapping[str, str | Path]) -> dict[str, Any]:
        """The config values (dotted key -> value) that read the prefixes staged at ``staged`` (name -> dir);
        the shard sets are set by :func:`training_config` (they replace whole dataset sections)."""
        out = {} if self.shards else data_settings(self.model_type, staged["data"])
        if self.init:
            out.update({k: f"{staged['init']}/model.pt" for k in self.init_keys})
        if self.teacher:
            out[self.teacher_key] = f"{staged['teacher']}/model.pt"
        return out


def stage_plan(model_type: str, data_uri: str, init_uri: str = "", init_keys: Sequence[str] = (), teacher_uri: str = "",
               teacher_key: str = "", shards_uri: str = "") -> StagePlan:
    """The :class:`StagePlan` of a training step (``teacher_key`` "" means the CML default; ``shards_uri``
    "" stages ``data_uri``)."""
    return StagePlan(model_type, data_uri, init_uri, tuple(init_keys) if init_uri else (), teacher_uri,
                     teacher_key or TEACHER_KEY, shards_uri)


# ----------------------------------------------------------------------------- launching
def train_key(config: str, overrides: Sequence[str], plan: StagePlan, digests: Mapping[str, str],
              epochs: int, workers: int) -> str:
    """Content key of a training step: config file + overrides + stage plan + input manifests' digests."""
    return content_key(config_digest(config, overrides), sorted(overrides), plan.key_fields(), dict(digests),
                       epochs, workers)


def worker_program(config: str, overrides: Sequence[str], plan: StagePlan, out_uri: str) -> list[str]:
    """The Python program each rank runs (``build_pytorchjob``/``run_local_workers`` add the interpreter)."""
    prog = ["-m", "components.steps.train", "worker", "--out-uri", out_uri, "--model-type", plan.model_type]
    for name, uri in sorted(plan.uris().items()):
        prog += ["--stage", f"{name}={uri}"]
    if plan.shards:
        prog += ["--data-uri", plan.data, "--shards", plan.shards]
    for key in plan.init_keys:
        prog += ["--init-key", key]
    if plan.teacher:
        prog += ["--teacher-key", plan.teacher_key]
    return [*prog, "--", "-c", config, *(["-o", *overrides] if overrides else [])]


def training_job(program: list[str], *, name: str, workers: int, gpus: int, min_workers: int = 0,
                 model_type: str = "det", image: str | None = None, namespace: str = "",
                 secret: str = "") -> dict[str, Any]:
    """The PyTorchJob ``run_workers(launcher="kubernetes")`` submits: ``workers`` replicas (Master
    included) running ``program``, sized for ``model_type`` (det or rec: the step's stage plan); with
    0 < ``min_workers`` < ``workers`` an elastic job (:func:`elastic_policy`) that trains on
    ``min_workers`` to ``workers`` of them."""
    from components.launcher.pytorchjob import (
        DEFAULT_IMAGE,
        PyTorchJobSpec,
        build_pytorchjob,
        current_namespace,
    )

    env = {k: v for k, v in os.environ.items() if k.startswith("OCRFLOW_S3_") or k == "AWS_REGION"}
    return build_pytorchjob(PyTorchJobSpec(
        name, program, namespace=namespace or current_namespace(), image=image or DEFAULT_IMAGE, workers=workers,
        gpus_per_worker=gpus, model_type=model_type, env=env, secret_name=secret or None,
        elastic=elastic_policy(min_workers, workers)))


def run_workers(program: list[str], *, launcher: str, workers: int, gpus: int, name: str,
                image: str | None = None, namespace: str = "", secret: str = "", min_workers: int = 0,
                model_type: str = "det") -> None:
    """Run ``program`` on ``workers`` nodes: loopback processes, a PyTorchJob, or in this process.

    ``min_workers`` > 0 makes the PyTorchJob elastic (``min_workers`` to ``workers`` nodes); the
    ``local`` and ``inprocess`` launchers run a fixed number of nodes and only say so.
    """
    if min_workers and launcher != "kubernetes":
        check_elastic(workers, min_workers)
        log.info("min_workers=%d: only launcher=kubernetes runs elastic jobs; launcher=%s runs a fixed size",
                 min_workers, launcher)
    if launcher == "inprocess":
        rc = worker_main(program[3:])
        if rc:
            raise RuntimeError(f"training exited with {rc}")
    elif launcher == "local":
        from components.launcher.local import run_local_workers

        res = run_local_workers(program, nnodes=workers, log_sink=print)
        log.info("local job: %d node(s), %.1fs", res.nnodes, res.duration_s)
    elif launcher == "kubernetes":
        from components.launcher.client import launch_and_wait

        launch_and_wait(training_job(program, name=name, workers=workers, gpus=gpus, min_workers=min_workers,
                                     model_type=model_type, image=image, namespace=namespace, secret=secret))
    else:
        raise ValueError(f"launcher must be one of {LAUNCHERS}, got {launcher!r}")


def launch_training_step(config: str, overrides: Sequence[str], plan: StagePlan, run_root: str, step: str, *,
                         launcher: str = "local", workers: int = 1, gpus: int = 0, epochs: int = 0,
                         image: str | None = None, namespace: str = "", secret: str = "",
                         min_workers: int = 0) -> Manifest:
    """Train ``config`` on the prefixes of ``plan``; checkpoints land in ``<run_root>/runs/<key>/<step>``.

    The key is content-derived, so a retried or re-run step with the same inputs resumes from
    (or, when finished, reuses) the same prefix. ``min_workers`` > 0 (below ``workers``): an elastic
    PyTorchJob, with step checkpoints (:func:`with_step_checkpoints`) unless the step sets its own.
    """
    check_elastic(workers, min_workers)
    overrides = list(overrides) + ([f"Global.epoch_num={epochs}"] if epochs > 0 else [])
    if gpus <= 0:
        overrides.append("Global.use_gpu=false")
    if min_workers:
        overrides = with_step_checkpoints(config, overrides)
    inputs = {**plan.uris(), **({"shards": plan.shards} if plan.shards else {})}
    digests = {n: read_manifest(u).digest() for n, u in inputs.items()}
    key = train_key(config, overrides, plan, digests, epochs, workers)
    out_uri = join_uri(run_root, "runs", key[:16], step)
    if is_published(out_uri):
        log.info("%s: reusing the finished run at %s", step, out_uri)
        return read_manifest(out_uri)
    name = f"ocrflow-{step.replace('_', '-')}-{key[:8]}"
    run_workers(worker_program(find_config_file(config), overrides, plan, out_uri), launcher=launcher, workers=workers,
                gpus=gpus, name=name, image=image, namespace=namespace, secret=secret, min_workers=min_workers,
                model_type=plan.model_type)
    return read_manifest(out_uri)


# ---------------------------------------------------------------------------- the worker side
def training_config(config: str, overrides: Sequence[str], plan: StagePlan, staged: Mapping[str, str | Path],
                    save_dir: Path, resume: Path | None = None) -> dict[str, Any]:
    """The validated config one rank trains with.

    Layers, the last winning: the config file, the staged paths (:meth:`StagePlan.settings`; with
    shards, Train/Eval become ShardDataSets of the plan's shard sets: :func:`shard_dataset_config`),
    the ``-o`` overrides (recipe and user), then the worker's own ``Global.save_model_dir`` and (when
    a previous attempt left ``latest.pt``) ``Global.checkpoints``.
    """
    from ocr_core.config import validate_config

    own: dict[str, Any] = {"Global.save_model_dir": str(save_dir)}
    if resume is not None:
        own["Global.checkpoints"] = str(resume)
    base = layered_config(config, plan.settings(staged))
    if plan.shards:
        shard_dataset_config(base, plan.model_type, plan.shards)
    cfg = layered_config(base, overrides, own)
    cfg["Global"]["_config_file"] = base["Global"]["_config_file"]  # errors name the config file
    return validate_config(cfg)


def _parse_worker_args(argv: Sequence[str]) -> tuple[argparse.Namespace, StagePlan]:
    p = argparse.ArgumentParser(prog="components.steps.train worker")
    p.add_argument("--out-uri", required=True)
    p.add_argument("--model-type", choices=("det", "rec"), required=True)
    p.add_argument("--stage", action="append", default=[], metavar="NAME=URI", help="data, init, teacher")
    p.add_argument("--init-key", action="append", default=[], help="config key the init model.pt goes into")
    p.add_argument("--teacher-key", default=TEACHER_KEY)
    p.add_argument("--shards", default="", help="stream Train/Eval from this build_shards prefix (no data stage)")
    p.add_argument("--data-uri", default="", help="with --shards: the dataset the shards were built from")
    p.add_argument("train_args", nargs=argparse.REMAINDER, help="-- -c CONFIG [-o Section.key=value ...]")
    args = p.parse_args(list(argv))
    t = argparse.ArgumentParser(prog="components.steps.train worker --")
    t.add_argument("-c", "--config", required=True)
    t.add_argument("-o", "--opt", nargs="+", action="extend", default=[])
    args.train = t.parse_args(args.train_args[1:] if args.train_args[:1] == ["--"] else args.train_args)
    stage = dict(item.split("=", 1) for item in args.stage)
    plan = StagePlan(args.model_type, stage.get("data", args.data_uri), stage.get("init", ""), tuple(args.init_key),
                     stage.get("teacher", ""), args.teacher_key, args.shards)
    return args, plan


def worker_main(argv: Sequence[str]) -> int:
    """One rank: stage in, build the config, (resume,) train through the engine's Python API, upload (rank 0).

    Exit codes as ``ocrflow train``: 0, 2 on a config or data error (one line naming the key), 130
    when interrupted, 143 after SIGTERM once ``latest.pt`` is saved and uploaded (retryable under the
    PyTorchJob's ``ExitCode`` restart policy; the next attempt resumes it, mid-epoch included).
    """
    from ocr_core.engine.run import train

    args, plan = _parse_worker_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    work = Path(os.environ.get("OCRFLOW_STAGE_DIR") or scratch(f"worker{rank}"))
    staged: dict[str, Path] = {}
    for name, uri in plan.uris().items():
        sync_down(uri, work / "stage" / name, quiet=rank != 0)
        staged[name] = work / "stage" / name
    save_dir = work / "out"
    resume = None
    store = open_store(args.out_uri)
    if store.exists(join_uri(args.out_uri, "latest.pt")):
        resume = work / "resume" / "latest.pt"
        store.get_file(join_uri(args.out_uri, "latest.pt"), resume)
        print(f"[rank {rank}] resuming from {args.out_uri}/latest.pt", flush=True)
    fault = install_fault(os.environ[FAULT_ENV], rank, save_dir, args.out_uri) if os.environ.get(FAULT_ENV) else None
    uploader = CheckpointUploader(save_dir, args.out_uri) if rank == 0 else None
    if uploader:
        uploader.start()
    hooks = combine_hooks(uploader.hooks() if uploader else None, fault)
    t0 = time.time()
    try:
        result = train(training_config(args.train.config, args.train.opt, plan, staged, save_dir, resume), hooks=hooks)
    except Preempted as exc:  # latest.pt is saved (uploaded by close() below): the retry resumes it
        print(f"[rank {rank}] ocrflow train: preempted: {exc}", file=sys.stderr)
        return Preempted.EXIT_CODE
    except OCRFlowError as exc:
        print(f"ocrflow train: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ocrflow train: interrupted", file=sys.stderr)
        return 130
    finally:
        if uploader:
            uploader.close()
    (work / "summary.json").write_text(json.dumps(result, indent=2, default=str))
    if rank == 0:
        summary: dict[str, Any] = json.loads((work / "summary.json").read_text())
        ckpt = "best_accuracy.pt" if (save_dir / "best_accuracy.pt").is_file() else "latest.pt"
        (save_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
        sync_up(save_dir, args.out_uri, kind="model", quiet=True,
                extra={"checkpoint": ckpt, "best_metric": summary.get("best_metric", {}),
                       "global_step": summary.get("global_step"), "train_seconds": round(time.time() - t0, 1)})
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] != ["worker"]:
        sys.exit("usage: python -m components.steps.train worker --out-uri URI --model-type det|rec "
                 "--stage data=URI [--stage init=URI --init-key KEY ...] -- -c CFG [-o ...]")
    sys.exit(worker_main(sys.argv[2:]))
