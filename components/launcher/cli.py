"""``ocrflow launch``: run training as a PyTorchJob, as local processes, or print the manifest.

The flags that describe the job map onto :class:`~components.launcher.pytorchjob.PyTorchJobSpec`
fields (``dest`` is the field name; the defaults are the dataclass's). The verb joins the
``ocrflow`` command through the ``ocrflow.verbs`` entry point (``pyproject.toml``).

Pods are sized per GPU from the model type's measured costs (``resources.py``): ``--model-type``
when given, else ``Architecture.model_type`` of the ``-c`` config (with the ``-o`` overrides) when
that path is readable here (the same relative path as in the image, e.g. run from the repo root),
else ``det``.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from components.launcher.pytorchjob import PyTorchJobSpec, build_pytorchjob, to_yaml, train_program
from components.launcher.resources import MODEL_TYPES
from components.launcher.validate import validate_pytorchjob

HELP = "Launch training as a Kubernetes PyTorchJob (or print it with --dry-run, or run it locally)."

_DEFAULTS = {f.name: f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
             for f in fields(PyTorchJobSpec) if f.default is not MISSING or f.default_factory is not MISSING}
# KEY=VALUE list flags -> the mapping field they fill
_PAIR_FLAGS = {"env": "--env", "labels": "--label", "node_selector": "--node-selector"}


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"{flag} expects KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def _spec_flag(group: Any, flag: str, field: str, help: str = "", **kw: Any) -> None:  # noqa: A002
    """A flag that sets ``PyTorchJobSpec.<field>``; its default is the dataclass default."""
    if field in _PAIR_FLAGS:
        kw.update(nargs="+", action="extend", default=[], metavar="KEY=VALUE")
    else:
        kw.setdefault("default", _DEFAULTS.get(field))
        shown = kw["default"] if kw.get("action") != "store_const" else None
        help = f"{help} (default: {shown})" if help and shown not in (None, "") else help or None
    group.add_argument(flag, dest=field, help=help, **kw)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``ocrflow launch``."""
    parser.add_argument("-c", "--config", required=True, help="PaddleOCR-style YAML config (path inside the image)")
    parser.add_argument("-o", "--opt", nargs="+", action="extend", default=[], metavar="Section.key=value",
                        help="config overrides passed to every rank")
    job = parser.add_argument_group("the PyTorchJob (PyTorchJobSpec)")
    _spec_flag(job, "--name", "name", "PyTorchJob name (DNS-1035 label)", required=True, default=None)
    # resolved when the job is built, not at import: the pod's own namespace (current_namespace)
    _spec_flag(job, "--namespace", "namespace", "namespace (default: $OCRFLOW_NAMESPACE, $POD_NAMESPACE, "
               "this pod's service-account namespace, else default)", default=None)
    _spec_flag(job, "--image", "image", "image of every replica")
    _spec_flag(job, "--workers", "workers", "replicas (nodes) in total, the Master included", type=int)
    _spec_flag(job, "--nproc-per-node", "nproc_per_node", "torchrun processes per node (default: no torchrun, "
               "one rank per pod; GPU count when --gpus-per-worker > 1)", type=int)
    _spec_flag(job, "--gpus-per-worker", "gpus_per_worker", "GPUs per replica", type=int)
    _spec_flag(job, "--cpu", "cpu_request", "CPU request per replica")
    _spec_flag(job, "--cpu-limit", "cpu_limit", "CPU limit per replica")
    _spec_flag(job, "--memory", "memory_request", "memory request per replica")
    _spec_flag(job, "--memory-limit", "memory_limit", "memory limit per replica")
    _spec_flag(job, "--shm-size", "shm_size", "size of the /dev/shm memory volume ('' for none; default: "
               "sized from the GPUs, within the memory limit)")
    _spec_flag(job, "--cpu-per-gpu", "cpu_per_gpu", "cores per GPU (default: measured data cost x GPU rate, "
               "see docs/scaling.md)", type=int)
    _spec_flag(job, "--memory-per-gpu", "memory_per_gpu", "memory per GPU, e.g. 16Gi (default: sized from "
               "the loader workers)")
    _spec_flag(job, "--model-type", "model_type", "det or rec: whose measured data cost per image and GPU rate "
               "size the per-GPU defaults (default: Architecture.model_type of the -c config with the -o "
               "overrides when that file is readable here, else det)", choices=list(MODEL_TYPES), default=None)
    job.add_argument("--elastic", default=None, metavar="MIN:MAX",
                     help="elastic job: between MIN and MAX nodes (c10d rendezvous; --workers becomes MAX); "
                          "a restart after a lost node resumes from the last step checkpoint")
    job.add_argument("--max-restarts", type=int, default=3, help="with --elastic: restarts torchrun allows")
    job.add_argument("--rdzv-conf", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                     help="with --elastic: torchrun rendezvous settings (elasticPolicy.rdzvConf), e.g. "
                          "last_call_timeout=5 keep_alive_interval=2 keep_alive_max_attempt=3 (a lost node is "
                          "dropped after interval x attempts seconds; see docs/scaling.md)")
    _spec_flag(job, "--env", "env", "env of every replica")
    _spec_flag(job, "--secret", "secret_name", "object-store Secret (keys accesskey/secretkey)")
    _spec_flag(job, "--secret-env-from", "secret_keys", "load the whole Secret with envFrom instead of mapping "
               "accesskey/secretkey to AWS_*", action="store_const", const=None)
    _spec_flag(job, "--backoff-limit", "backoff_limit", "restarts before the job fails", type=int)
    _spec_flag(job, "--restart-policy", "restart_policy", "replica restart policy",
               choices=["OnFailure", "Never", "ExitCode", "Always"])
    _spec_flag(job, "--clean-pod-policy", "clean_pod_policy", "pods deleted when the job ends",
               choices=["None", "Running", "All"])
    _spec_flag(job, "--ttl-seconds-after-finished", "ttl_seconds_after_finished", "job TTL", type=int)
    _spec_flag(job, "--service-account", "service_account", "service account of the replicas")
    _spec_flag(job, "--priority-class", "priority_class", "PriorityClass of the replicas")
    _spec_flag(job, "--node-selector", "node_selector", "node selector of the replicas")
    _spec_flag(job, "--label", "labels", "extra labels on the job and pods")
    parser.add_argument("--run-id", default=None, help="KFP run id, set as label pipelines.kubeflow.org/run_id")
    parser.add_argument("--dry-run", action="store_true", help="validate and print the manifest as YAML")
    parser.add_argument("--local", action="store_true", help="run the replicas as local processes instead")
    parser.add_argument("--timeout", type=float, default=24 * 3600, help="overall wait limit in seconds")
    parser.add_argument("--kubeconfig", default=None)
    parser.add_argument("--context", default=None)


def spec_from_args(args: argparse.Namespace) -> PyTorchJobSpec:
    """The :class:`PyTorchJobSpec` the flags describe (the program: ``-m ocr_core.train --resume -c ... -o ...``)."""
    values = {f.name: getattr(args, f.name) for f in fields(PyTorchJobSpec) if hasattr(args, f.name)}
    if not values.get("namespace"):
        values.pop("namespace", None)  # PyTorchJobSpec's default: where this pod runs
    for name, flag in _PAIR_FLAGS.items():
        values[name] = _pairs(values.get(name) or [], flag)
    if args.run_id:
        values["labels"]["pipelines.kubeflow.org/run_id"] = args.run_id
    rdzv_conf = _pairs(getattr(args, "rdzv_conf", None) or [], "--rdzv-conf")
    if getattr(args, "elastic", None):
        lo, hi = parse_elastic(args.elastic)
        values["workers"] = hi
        values["elastic"] = {"min_replicas": lo, "max_replicas": hi, "rdzv_backend": "c10d",
                             "max_restarts": args.max_restarts}
        if rdzv_conf:
            values["elastic"]["rdzv_conf"] = rdzv_conf
    elif rdzv_conf:
        raise argparse.ArgumentTypeError("--rdzv-conf needs --elastic")
    if not values.get("model_type"):
        values["model_type"] = config_model_type(args.config, args.opt)
        if values["model_type"] is None:
            values["model_type"] = _DEFAULTS["model_type"]
            if (values.get("gpus_per_worker") or 0) > 0:
                print(f"ocrflow launch: note: cannot read {args.config} here; pods are sized for "
                      f"{values['model_type']} (pass --model-type for another)", file=sys.stderr)
    return PyTorchJobSpec(program=train_program(args.config, args.opt), **values)


def config_model_type(path: str, overrides: Sequence[str] = ()) -> str | None:
    """``Architecture.model_type`` of the config at ``path`` with ``overrides`` (OpenOCR's
    ``Global.model_type`` too); None when the file is not here or does not load.

    Only the YAML is read (no validation, no torch): cheap enough for every launch.
    """
    if not path or not Path(path).is_file():
        return None
    try:
        from ocr_core.config import load_config, model_type_of
        from ocr_core.config.schema import normalize_openocr
        from ocr_core.errors import ConfigError
    except ImportError:
        return None
    try:
        model_type = model_type_of(normalize_openocr(load_config(path, list(overrides))))
    except (ConfigError, AttributeError, StopIteration, TypeError, ValueError):
        return None
    return model_type if isinstance(model_type, str) else None


def parse_elastic(text: str) -> tuple[int, int]:
    """``"2:4"`` -> (2, 4); MIN >= 1, MAX >= MIN and >= 2 (an elastic job has Worker replicas)."""
    lo_s, sep, hi_s = text.partition(":")
    try:
        lo, hi = int(lo_s), int(hi_s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--elastic expects MIN:MAX nodes (e.g. 2:4), got {text!r}") from None
    if not sep or lo < 1 or hi < lo or hi < 2:
        raise argparse.ArgumentTypeError(f"--elastic {text}: need 1 <= MIN <= MAX and MAX >= 2")
    return lo, hi


def run(args: argparse.Namespace) -> int:
    """Exit codes: 0 success, 1 job failed or timed out, 2 invalid manifest/flags, 130/143 cancelled."""
    try:
        spec = spec_from_args(args)
        job = build_pytorchjob(spec)
    except (ValueError, argparse.ArgumentTypeError) as exc:
        print(f"ocrflow launch: error: {exc}", file=sys.stderr)
        return 2
    errors = validate_pytorchjob(job)
    if errors:
        print("ocrflow launch: invalid PyTorchJob:\n  " + "\n  ".join(map(str, errors)), file=sys.stderr)
        return 2
    if args.dry_run:
        sys.stdout.write(to_yaml(job))
        return 0
    if args.local:
        from components.launcher.local import LocalJobFailed, LocalJobTimeout, run_local_workers

        try:
            run_local_workers(spec.program, nnodes=spec.workers, nproc_per_node=spec.nproc_per_node, env=spec.env,
                              timeout_s=args.timeout)
        except (LocalJobFailed, LocalJobTimeout) as exc:
            print(f"ocrflow launch: {exc}", file=sys.stderr)
            return 1
        return 0
    from components.launcher.client import (
        PyTorchJobCancelled,
        PyTorchJobError,
        api_client_from_env,
        launch_and_wait,
    )

    try:
        api = api_client_from_env(args.kubeconfig, args.context)
        launch_and_wait(job, api, timeout_s=args.timeout, validate=False)
    except PyTorchJobCancelled:
        return 128 + signal.SIGTERM
    except PyTorchJobError as exc:
        print(f"ocrflow launch: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m components.launcher.cli`` (same flags as ``ocrflow launch``)."""
    parser = argparse.ArgumentParser(prog="ocrflow launch", description=HELP)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
