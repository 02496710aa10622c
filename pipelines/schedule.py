"""Compile either pipeline by name and create a KFP recurring run (``kfp.Client.create_recurring_run``).

The nightly retraining job is a recurring run of ``ocr-retrain-pipeline``: it starts on a
6-field cron schedule (seconds first, KFP/robfig format: ``'0 0 2 * * *'`` = 02:00:00 daily),
``max_concurrency=1`` so two runs never train (or move the production pointer) at once, and
``no_catchup`` so a paused job does not backfill missed nights.
"""

import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kfp import compiler

CRON_FIELDS = ("second", "minute", "hour", "day of month", "month", "day of week")


def pipelines() -> dict[str, Callable[..., Any]]:
    """Pipeline name (``--pipeline``) -> pipeline function."""
    from pipelines.ocr_train_pipeline import ocr_train_pipeline
    from pipelines.retrain_pipeline import ocr_retrain_pipeline

    return {"train": ocr_train_pipeline, "retrain": ocr_retrain_pipeline}


def default_package(pipeline: str) -> str:
    return {"train": "dist/ocr_train_pipeline.yaml", "retrain": "dist/ocr_retrain_pipeline.yaml"}[pipeline]


def compile_named(pipeline: str, out: str | Path) -> Path:
    """Write the compiled YAML (IR + kubernetes platform document) of ``pipeline`` to ``out``."""
    funcs = pipelines()
    if pipeline not in funcs:
        raise ValueError(f"unknown pipeline {pipeline!r}: choose one of {sorted(funcs)}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(funcs[pipeline], str(out))
    return out


def validate_cron(expr: str) -> str:
    """A KFP cron expression has 6 space-separated fields, seconds first; returns it normalised."""
    fields = expr.split()
    if len(fields) != len(CRON_FIELDS):
        hint = f" (did you mean '0 {' '.join(fields)}'?)" if len(fields) == 5 else ""
        raise ValueError(f"cron expression {expr!r} has {len(fields)} field(s); KFP needs 6: "
                         f"{' '.join(CRON_FIELDS)}, e.g. '0 0 2 * * *' for 02:00 daily{hint}")
    return " ".join(fields)


def validate_schedule(cron: str, max_concurrency: int) -> str:
    """:func:`validate_cron` plus ``max_concurrency >= 1``; raises ``ValueError`` naming the problem."""
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
    return validate_cron(cron)


def create_schedule(host: str, experiment: str, job_name: str, cron: str, params: Mapping[str, Any], *,
                    pipeline: str = "retrain", package: str | Path | None = None, max_concurrency: int = 1,
                    no_catchup: bool = False, description: str | None = None) -> str:
    """Create a recurring run of the compiled package (compiled now when not given); returns its id."""
    from kfp import Client

    from pipelines.ocr_train_pipeline import check_arguments

    cron = validate_schedule(cron, max_concurrency)
    check_arguments(params)
    if package is None:
        package = compile_named(pipeline, Path(tempfile.mkdtemp(prefix="ocrflow-kfp-")) / f"ocr_{pipeline}.yaml")
    client = Client(host=host)
    exp = client.create_experiment(experiment)  # returns the existing experiment of that name
    job = client.create_recurring_run(experiment_id=exp.experiment_id, job_name=job_name, description=description,
                                      cron_expression=cron, max_concurrency=max_concurrency,
                                      no_catchup=no_catchup, params=dict(params),
                                      pipeline_package_path=str(package))
    return job.recurring_run_id
