"""``ocrflow pipeline compile|run|submit|schedule``: the KFP training DAG (``pipelines/``).

``--pipeline retrain`` selects the retrain pipeline (training only when new labelled data has
landed); ``schedule`` creates a KFP recurring run of it (default) or of the training pipeline.

The verb joins the ``ocrflow`` command through the ``ocrflow.verbs`` entry point
(``pyproject.toml``); kfp is imported inside ``run`` so ``ocrflow pipeline --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from ocr_core.errors import ConfigError

HELP = "Compile, run locally, submit or schedule the KFP training pipeline."
PIPELINES = ("train", "retrain")
SERVICE_ACCOUNT_HELP = ("the Kubernetes account every pod of the run runs as, e.g. ocrflow-trainer "
                        "(manifests/base; docs/security.md); default: KFP's (pipeline-runner, default-editor)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``ocrflow pipeline`` (one sub-parser per action)."""
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    c = sub.add_parser("compile", help="write the pipeline YAML")
    c.add_argument("--out", help="default: dist/ocr_<pipeline>_pipeline.yaml")
    c.add_argument("--pipeline", choices=PIPELINES, default="train")
    c.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a new default in the YAML (the UI form, runs that do not set it)")
    r = sub.add_parser("run", help="run the whole DAG on this machine (kfp.local + embedded S3)")
    r.add_argument("--local", action="store_true", required=True, help="(the only mode: kfp.local)")
    r.add_argument("--raw-data", required=True, help="raw labelled data: local dir or published URI")
    r.add_argument("--pipeline-root", default="output/kfp_local")
    r.add_argument("--external-s3", action="store_true",
                   help="use the S3 endpoint from the environment instead of an embedded server")
    r.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE")
    r.add_argument("--pipeline", choices=PIPELINES, default="train")
    s = sub.add_parser("submit", help="submit a run to a KFP API server (kfp.Client)")
    s.add_argument("--host", required=True)
    s.add_argument("--experiment", required=True)
    s.add_argument("--run-name")
    s.add_argument("--package", help="a compiled YAML (default: compile now)")
    s.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE")
    s.add_argument("--pipeline", choices=PIPELINES, default="train")
    s.add_argument("--service-account", metavar="NAME", help=SERVICE_ACCOUNT_HELP)
    j = sub.add_parser("schedule", help="create a KFP recurring run (default: the retrain pipeline)")
    j.add_argument("--host", required=True)
    j.add_argument("--experiment", required=True)
    j.add_argument("--job-name", required=True)
    j.add_argument("--cron", required=True,
                   help="crontab (5 fields: '0 2 * * *' = 02:00 daily) or KFP's 6 fields, seconds first ('0 0 2 * * *')")
    j.add_argument("--max-concurrency", type=int, default=1)
    j.add_argument("--no-catchup", action="store_true", help="do not backfill missed intervals")
    j.add_argument("--pipeline", choices=PIPELINES, default="retrain")
    j.add_argument("--package", help="a compiled YAML (default: compile --pipeline now)")
    j.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE")
    j.add_argument("--service-account", metavar="NAME", help=SERVICE_ACCOUNT_HELP)


def run(args: argparse.Namespace) -> int:
    """Compile, schedule, submit, or run locally (kfp.local + an embedded S3 server unless ``--external-s3``)."""
    from pipelines.schedule import compile_named, create_schedule, default_package, validate_schedule
    from pipelines.submit import check_service_account, parse_params, submit

    try:
        params = parse_params(args.param)
        if getattr(args, "service_account", None) is not None:
            check_service_account(args.service_account)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if args.action == "compile":
        try:
            print(compile_named(args.pipeline, args.out or default_package(args.pipeline), params))
        except ValueError as exc:  # e.g. "Pipeline parameter worker does not match any known pipeline input."
            raise ConfigError(f"pipeline compile -p: {exc}") from None
        return 0
    if args.action == "schedule":
        try:
            cron = validate_schedule(args.cron, args.max_concurrency)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        print(f"schedule: cron {args.cron!r} -> KFP cron {cron!r} (second minute hour day-of-month month "
              f"day-of-week, the scheduler's time zone), max_concurrency {args.max_concurrency}, "
              f"{'no catch-up' if args.no_catchup else 'catch-up (missed runs are backfilled)'}", file=sys.stderr)
        job_id = create_schedule(args.host, args.experiment, args.job_name, cron, params,
                                 pipeline=args.pipeline, package=args.package,
                                 max_concurrency=args.max_concurrency, no_catchup=args.no_catchup,
                                 service_account=args.service_account)
        print(json.dumps({"recurring_run_id": job_id, "cron": cron}))
        return 0
    if args.action == "submit":
        package = args.package
        if package is None and args.pipeline != "train":
            package = compile_named(args.pipeline, Path(tempfile.mkdtemp(prefix="ocrflow-kfp-")) / "p.yaml")
        run_id = submit(args.host, args.experiment, params, run_name=args.run_name, package=package,
                        service_account=args.service_account)
        print(json.dumps({"run_id": run_id}))
        return 0
    from pipelines.local_run import check_local_raw_data, publish_local_weights, run_pipeline_locally
    from pipelines.ocr_train_pipeline import check_arguments
    from pipelines.retrain_pipeline import run_retrain_local

    run_locally = run_retrain_local if args.pipeline == "retrain" else run_pipeline_locally
    params.setdefault("raw_data_uri", args.raw_data)
    check_arguments(params)  # e.g. det_recipe=cml without det_teacher_init_uri: exit 2 before anything starts
    check_local_raw_data(params)
    if args.external_s3:
        run_locally(publish_local_weights(params, params.get("store_root", "s3://ocrflow")), args.pipeline_root)
        return 0
    from ocr_core.storage.embedded import EmbeddedS3

    with EmbeddedS3() as s3:
        params.setdefault("store_root", f"s3://{s3.bucket}")
        os.environ.update(s3.env)  # local weights are published into this store before the run
        run_locally(publish_local_weights(params, params["store_root"]), args.pipeline_root, s3.env)
    return 0
