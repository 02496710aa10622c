"""``ocrflow pipeline compile|run|submit``: the KFP training DAG (``pipelines/``).

``ocr_core`` never imports kfp at module import time: ``pipelines.*`` is imported inside ``run``.
"""

from __future__ import annotations

import argparse
import json

HELP = "Compile, run locally, or submit the KFP training pipeline."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    c = sub.add_parser("compile", help="write the pipeline YAML")
    c.add_argument("--out", default="dist/ocr_train_pipeline.yaml")
    r = sub.add_parser("run", help="run the whole DAG on this machine (kfp.local + embedded S3)")
    r.add_argument("--local", action="store_true", required=True, help="(the only mode: kfp.local)")
    r.add_argument("--raw-data", required=True, help="raw labelled data: local dir or published URI")
    r.add_argument("--pipeline-root", default="output/kfp_local")
    r.add_argument("--external-s3", action="store_true",
                   help="use the S3 endpoint from the environment instead of an embedded server")
    r.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE")
    s = sub.add_parser("submit", help="submit a run to a KFP API server (kfp.Client)")
    s.add_argument("--host", required=True)
    s.add_argument("--experiment", required=True)
    s.add_argument("--run-name")
    s.add_argument("--package", help="a compiled YAML (default: compile now)")
    s.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE")


def run(args: argparse.Namespace) -> int:
    from pipelines.submit import compile_pipeline, parse_params, submit

    if args.action == "compile":
        print(compile_pipeline(args.out))
        return 0
    params = parse_params(args.param)
    if args.action == "submit":
        run_id = submit(args.host, args.experiment, params, run_name=args.run_name, package=args.package)
        print(json.dumps({"run_id": run_id}))
        return 0
    from pipelines.local_run import run_local

    params.setdefault("raw_data_uri", args.raw_data)
    if args.external_s3:
        run_local(params, args.pipeline_root)
        return 0
    from ocr_core.storage.embedded import EmbeddedS3

    with EmbeddedS3() as s3:
        params.setdefault("store_root", f"s3://{s3.bucket}")
        run_local(params, args.pipeline_root, s3.env)
    return 0
