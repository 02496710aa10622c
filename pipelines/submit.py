"""Compile the DAG to YAML and submit it to a KFP v2 API server (``kfp.Client``)."""

import json
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


def submit(host: str, experiment: str, params: Mapping[str, Any], run_name: str | None = None,
           package: str | Path | None = None) -> str:
    """Create a run of the compiled package (compiled now when not given); returns the run id."""
    import tempfile

    from kfp import Client

    check_arguments(params)
    if package is None:
        package = compile_pipeline(Path(tempfile.mkdtemp(prefix="ocrflow-kfp-")) / "ocr_train_pipeline.yaml")
    client = Client(host=host)
    run = client.create_run_from_pipeline_package(str(package), arguments=dict(params), run_name=run_name,
                                                  experiment_name=experiment)
    return run.run_id
