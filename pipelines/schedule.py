"""Compile either pipeline by name and create a KFP recurring run (``kfp.Client.create_recurring_run``).

The nightly retraining job is a recurring run of ``ocr-retrain-pipeline``: it starts on a
6-field cron schedule (seconds first, KFP/robfig format: ``'0 0 2 * * *'`` = 02:00:00 daily; a 5-field
crontab line is accepted and gets second 0),
``max_concurrency=1`` so two runs never train (or move the production pointer) at once, and
``no_catchup`` so a paused job does not backfill missed nights.
"""

import re
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


def compile_named(pipeline: str, out: str | Path, defaults: Mapping[str, Any] | None = None) -> Path:
    """Write the compiled YAML (IR + kubernetes platform document) of ``pipeline`` to ``out``.

    ``defaults`` replace parameter defaults in the YAML: what the UI's run form shows, and what a run or
    recurring run gets when it does not set them (``kfp recurring-run create`` can send strings only).
    """
    funcs = pipelines()
    if pipeline not in funcs:
        raise ValueError(f"unknown pipeline {pipeline!r}: choose one of {sorted(funcs)}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(funcs[pipeline], str(out), pipeline_parameters=dict(defaults or {}) or None)
    return out


_RANGES = {"second": (0, 59), "minute": (0, 59), "hour": (0, 23), "day of month": (1, 31), "month": (1, 12),
           "day of week": (0, 6)}
_NAMES = {"month": {m: i + 1 for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())},
          "day of week": {d: i for i, d in enumerate("SUN MON TUE WED THU FRI SAT".split())}}
DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


def _check_field(name: str, text: str) -> None:
    """One cron field (``*``, ``?``, ``a``, ``a-b``, ``*/n``, ``a-b/n``, lists of those); raises ValueError."""
    lo, hi = _RANGES[name]

    def value(tok: str) -> int:
        named = _NAMES.get(name, {}).get(tok.upper())
        if named is not None:
            return named
        if not tok.isdigit():
            raise ValueError(f"{name} field {text!r}: {tok!r} is not a number")
        if not lo <= int(tok) <= hi:
            raise ValueError(f"{name} field {text!r}: {tok} is outside {lo}-{hi}")
        return int(tok)

    for part in text.split(","):
        rng, _, step = part.partition("/")
        if step and (not step.isdigit() or int(step) < 1):
            raise ValueError(f"{name} field {text!r}: step {step!r} must be a positive number")
        if rng == "?" and name in ("day of month", "day of week") and not step:
            continue
        if rng == "*":
            continue
        a, dash, b = rng.partition("-")
        if value(a) > (value(b) if dash else hi if step else value(a)):
            raise ValueError(f"{name} field {text!r}: range {rng} runs backwards")


def validate_cron(expr: str) -> str:
    """The cron expression KFP gets: 6 fields, seconds first (a 5-field crontab line gets second 0).

    ``'0 2 * * *'`` (crontab: 02:00 daily) -> ``'0 0 2 * * *'``; 6 fields and robfig descriptors
    (``@daily``, ``@every 1h``) pass as they are. Raises ``ValueError`` with a one-line reason.
    """
    fields = expr.split()
    if fields and fields[0] in DESCRIPTORS and len(fields) == 1:
        return fields[0]
    if len(fields) == 2 and fields[0] == "@every" and re.fullmatch(r"(\d+(\.\d+)?(ns|us|ms|s|m|h))+", fields[1]):
        return " ".join(fields)
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != len(CRON_FIELDS):
        raise ValueError(f"cron expression {expr!r} has {len(fields)} field(s); give 5 (crontab: minute hour "
                         f"day-of-month month day-of-week) or 6 (KFP: second first), e.g. '0 2 * * *' for 02:00 daily")
    try:
        for name, text in zip(CRON_FIELDS, fields):
            _check_field(name, text)
    except ValueError as exc:
        raise ValueError(f"cron expression {expr!r}: {exc}") from None
    return " ".join(fields)


def validate_schedule(cron: str, max_concurrency: int) -> str:
    """:func:`validate_cron` plus ``max_concurrency >= 1``; raises ``ValueError`` naming the problem."""
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
    return validate_cron(cron)


def create_schedule(host: str, experiment: str, job_name: str, cron: str, params: Mapping[str, Any], *,
                    pipeline: str = "retrain", package: str | Path | None = None, max_concurrency: int = 1,
                    no_catchup: bool = False, description: str | None = None,
                    service_account: str | None = None) -> str:
    """Create a recurring run of the compiled package (compiled now when not given); returns its id.

    ``service_account``: the Kubernetes ServiceAccount every pod of its runs runs as (KFP's default when None).
    """
    from kfp import Client

    from pipelines.ocr_train_pipeline import check_arguments
    from pipelines.submit import check_service_account

    cron = validate_schedule(cron, max_concurrency)
    check_arguments(params)
    if service_account is not None:
        check_service_account(service_account)
    if package is None:
        package = compile_named(pipeline, Path(tempfile.mkdtemp(prefix="ocrflow-kfp-")) / f"ocr_{pipeline}.yaml")
    client = Client(host=host)
    exp = client.create_experiment(experiment)  # returns the existing experiment of that name
    job = client.create_recurring_run(experiment_id=exp.experiment_id, job_name=job_name, description=description,
                                      cron_expression=cron, max_concurrency=max_concurrency,
                                      no_catchup=no_catchup, params=dict(params),
                                      pipeline_package_path=str(package), service_account=service_account)
    return job.recurring_run_id
