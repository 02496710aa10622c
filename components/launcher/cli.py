"""``ocrflow launch``: run training as a PyTorchJob, as local processes, or print the manifest.

``ocr_core/commands/launch.py`` wires this module (``add_arguments``/``run``) into the CLI.
"""

from __future__ import annotations

import argparse
import signal
import sys

from components.launcher.pytorchjob import (
    DEFAULT_IMAGE,
    DEFAULT_SECRET_KEYS,
    DEFAULT_SERVICE_ACCOUNT,
    build_pytorchjob,
    to_yaml,
    train_program,
)
from components.launcher.validate import validate_pytorchjob

HELP = "Launch training as a Kubernetes PyTorchJob (or print it with --dry-run, or run it locally)."


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"{flag} expects KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``ocrflow launch``."""
    parser.add_argument("-c", "--config", required=True, help="PaddleOCR-style YAML config (path inside the image)")
    parser.add_argument("-o", "--opt", nargs="+", action="extend", default=[], metavar="Section.key=value",
                        help="config overrides passed to every rank")
    parser.add_argument("--name", required=True, help="PyTorchJob name (DNS-1035 label)")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--image", default=DEFAULT_IMAGE)
    parser.add_argument("--workers", type=int, default=2, help="replicas (nodes) in total, the Master included")
    parser.add_argument("--nproc-per-node", type=int, default=None, help="torchrun processes per node "
                        "(default: no torchrun, one rank per pod; GPU count when --gpus-per-worker > 1)")
    parser.add_argument("--gpus-per-worker", type=int, default=0)
    parser.add_argument("--cpu", default="1", help="CPU request per replica")
    parser.add_argument("--cpu-limit", default=None)
    parser.add_argument("--memory", default="4Gi", help="memory request per replica")
    parser.add_argument("--memory-limit", default="4Gi")
    parser.add_argument("--shm-size", default="1Gi", help="size of the /dev/shm memory volume")
    parser.add_argument("--env", nargs="+", action="extend", default=[], metavar="KEY=VALUE")
    parser.add_argument("--secret", default=None, help="object-store Secret (keys accesskey/secretkey)")
    parser.add_argument("--secret-env-from", action="store_true",
                        help="load the whole Secret with envFrom instead of mapping accesskey/secretkey to AWS_*")
    parser.add_argument("--backoff-limit", type=int, default=3)
    parser.add_argument("--restart-policy", default="OnFailure", choices=["OnFailure", "Never", "ExitCode", "Always"])
    parser.add_argument("--clean-pod-policy", default="None", choices=["None", "Running", "All"])
    parser.add_argument("--ttl-seconds-after-finished", type=int, default=86400)
    parser.add_argument("--service-account", default=DEFAULT_SERVICE_ACCOUNT)
    parser.add_argument("--priority-class", default=None)
    parser.add_argument("--node-selector", nargs="+", action="extend", default=[], metavar="KEY=VALUE")
    parser.add_argument("--label", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="extra labels on the job and pods")
    parser.add_argument("--run-id", default=None, help="KFP run id, set as label pipelines.kubeflow.org/run_id")
    parser.add_argument("--dry-run", action="store_true", help="validate and print the manifest as YAML")
    parser.add_argument("--local", action="store_true", help="run the replicas as local processes instead")
    parser.add_argument("--timeout", type=float, default=24 * 3600, help="overall wait limit in seconds")
    parser.add_argument("--kubeconfig", default=None)
    parser.add_argument("--context", default=None)


def build_from_args(args: argparse.Namespace) -> dict:
    """The PyTorchJob manifest the flags describe."""
    labels = _pairs(args.label, "--label")
    if args.run_id:
        labels["pipelines.kubeflow.org/run_id"] = args.run_id
    return build_pytorchjob(
        args.name, train_program(args.config, args.opt), namespace=args.namespace, image=args.image,
        workers=args.workers, nproc_per_node=args.nproc_per_node, gpus_per_worker=args.gpus_per_worker,
        cpu_request=args.cpu, cpu_limit=args.cpu_limit, memory_request=args.memory,
        memory_limit=args.memory_limit, env=_pairs(args.env, "--env"), secret_name=args.secret,
        secret_keys=None if args.secret_env_from else DEFAULT_SECRET_KEYS, shm_size=args.shm_size or None,
        restart_policy=args.restart_policy, backoff_limit=args.backoff_limit,
        clean_pod_policy=args.clean_pod_policy, ttl_seconds_after_finished=args.ttl_seconds_after_finished,
        labels=labels, service_account=args.service_account or None,
        node_selector=_pairs(args.node_selector, "--node-selector"), priority_class=args.priority_class,
    )


def run(args: argparse.Namespace) -> int:
    """Exit codes: 0 success, 1 job failed or timed out, 2 invalid manifest/flags, 130/143 cancelled."""
    try:
        job = build_from_args(args)
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
        from components.launcher.local import LocalJobFailed, LocalJobTimeout, run_local

        try:
            run_local(train_program(args.config, args.opt), nnodes=args.workers, nproc_per_node=args.nproc_per_node,
                      env=_pairs(args.env, "--env"), timeout_s=args.timeout)
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
