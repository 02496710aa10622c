"""Compile the DAG to YAML and submit it to a KFP v2 API server (``kfp.Client``)."""

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kfp import compiler

from pipelines.ocr_train_pipeline import check_arguments, ocr_train_pipeline


def compile_pipeline(out: str | Path) -> Path:
    """Write ``out`` (IR YAML + the kubernetes platform document); returns its path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(ocr_train_pipeline, str(out))
    return out


def parse_params(items: Sequence[str]) -> dict[str, Any]:
    """``key=value`` pairs; a value that parses as JSON (numbers, lists, bools) is used as such."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"parameter {item!r} must look like key=value")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def check_service_account(name: str) -> str:
    """``name`` if it can name a ServiceAccount (a DNS-1123 subdomain, at most 253 characters); else ValueError."""
    if len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
        raise ValueError(f"service account {name!r} is not a Kubernetes ServiceAccount name (lower-case "
                         "letters, digits, '-' and '.', starting and ending alphanumeric), e.g. ocrflow-trainer")
    return name


def submit(host: str, experiment: str, params: Mapping[str, Any], run_name: str | None = None,
           package: str | Path | None = None, service_account: str | None = None) -> str:
    """Create a run of the compiled package (compiled now when not given); returns the run id.

    ``service_account``: the Kubernetes ServiceAccount every pod of the run runs as (KFP's default when None).
    """
    import tempfile

    from kfp import Client

    check_arguments(params)
    if service_account is not None:
        check_service_account(service_account)
    if package is None:
        package = compile_pipeline(Path(tempfile.mkdtemp(prefix="ocrflow-kfp-")) / "ocr_train_pipeline.yaml")
    client = Client(host=host)
    run = client.create_run_from_pipeline_package(str(package), arguments=dict(params), run_name=run_name,
                                                  experiment_name=experiment, service_account=service_account)
    return run.run_id
