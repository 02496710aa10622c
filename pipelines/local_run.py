"""Run the DAG on this machine with ``kfp.local`` (``SubprocessRunner(use_venv=False)``).

Each task is a subprocess of this interpreter; they reach object storage through the
environment (``OCRFLOW_S3_ENDPOINT`` + keys), which :func:`run_pipeline_locally` sets from ``env`` (e.g.
``EmbeddedS3.env``). ``pipeline_root`` must be a local directory (kfp.local limitation).
"""

import contextlib
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from kfp import local
from kfp.dsl.graph_component import GraphComponent

from ocr_core.errors import OCRFlowError
from pipelines.ocr_train_pipeline import check_arguments, ocr_train_pipeline

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# kfp.local logs "Executing task 'x'" / "Task 'x' finished with status SUCCESS"
_START = re.compile(r"Executing task '([^']+)'")
_END = re.compile(r"Task '([^']+)' finished with status (\w+)")
_SKIP = re.compile(r"Skipping conditional task (\S+)")  # a dsl.If/Else branch whose condition is false


class PipelineFailed(OCRFlowError, RuntimeError):
    """A task of a local run failed (its log is printed above): one line at the CLI, exit 2.

    Still a ``RuntimeError``, what kfp.local raises, for callers that catch that.
    """


@contextlib.contextmanager
def _plain_kfp_colours() -> Iterator[None]:
    """kfp.local colours task names and statuses whether or not it writes to a terminal; off a
    terminal (a CI log, a file) and under ``NO_COLOR`` the escape codes are only noise."""
    from kfp.local import logging_utils

    colour = logging_utils.Color
    if not os.environ.get("NO_COLOR") and sys.stdout.isatty() and sys.stderr.isatty():
        yield
        return
    names = ("CYAN", "GREEN", "RED", "MAGENTA", "RESET")
    saved = {n: getattr(colour, n) for n in names if hasattr(colour, n)}
    for n in saved:
        setattr(colour, n, "")
    try:
        yield
    finally:
        for n, value in saved.items():
            setattr(colour, n, value)


class StepTimer:
    """Collects per-task status and wall time from kfp.local's log lines (a ``logging`` handler).

    A condition branch that did not run is recorded as ``SKIPPED`` under its task name
    (``condition-3``; :func:`display_names` maps it to the branch's name, e.g. ``det-cml``).
    """

    def __init__(self) -> None:
        self.started: dict[str, float] = {}
        self.steps: dict[str, dict[str, Any]] = {}

    def feed(self, line: str) -> None:
        now = time.monotonic()
        line = _ANSI.sub("", line)
        if m := _START.search(line):
            self.started[m.group(1)] = now
            self.steps[m.group(1)] = {"status": "RUNNING", "seconds": None}
        elif m := _END.search(line):
            t0 = self.started.get(m.group(1), now)
            self.steps[m.group(1)] = {"status": m.group(2), "seconds": round(now - t0, 1)}
        elif m := _SKIP.search(line):
            self.steps[m.group(1)] = {"status": "SKIPPED", "seconds": None}


def run_pipeline_locally(params: Mapping[str, Any], pipeline_root: str | os.PathLike[str],
                         env: Mapping[str, str] | None = None, enable_caching: bool = False,
                         timer: StepTimer | None = None, pipeline: GraphComponent = ocr_train_pipeline) -> Any:
    """Run ``pipeline`` (default: the training DAG) with ``params``; returns kfp.local's result
    (raises when a task fails; ``ConfigError`` before starting on arguments the DAG cannot run)."""
    import logging

    check_arguments(params)
    os.environ.update(env or {})
    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root),
               enable_caching=enable_caching)
    # kfp.local replaces the root logger's handlers during a run; a filter on the root logger stays
    flt = None
    root_logger = logging.getLogger()
    level = root_logger.level
    if timer is not None:
        feed = timer.feed

        class _Feed(logging.Filter):
            def filter(self, record: logging.LogRecord) -> bool:
                feed(record.getMessage())
                return True

        flt = _Feed()
        root_logger.addFilter(flt)
        # kfp.local logs a skipped condition branch at INFO outside its own logging context
        root_logger.setLevel(min(level or logging.WARNING, logging.INFO))
    try:
        with _plain_kfp_colours():
            return pipeline(**dict(params))
    except RuntimeError as exc:
        if isinstance(exc, PipelineFailed) or "finished with status" not in str(exc):
            raise
        raise PipelineFailed(f"{_ANSI.sub('', str(exc))} (its log is above)") from None
    finally:
        if flt is not None:
            root_logger.removeFilter(flt)
            root_logger.setLevel(level)


def check_local_raw_data(params: Mapping[str, Any]) -> None:
    """``raw_data_uri`` given as a local path must be a directory: checked before the object store
    or kfp.local start, so a typo is one line (exit 2), not a failed ingest task's log.

    Raises:
        DataError: naming the path.
    """
    from ocr_core.errors import DataError

    raw = str(params.get("raw_data_uri") or "")
    if not raw or "://" in raw:
        return  # a published URI: the ingest step checks its manifest
    if not Path(raw).is_dir():
        what = "is not a directory" if Path(raw).exists() else "does not exist"
        raise DataError(f"{raw}: raw data directory {what} (--raw-data takes a local directory or a "
                        "published s3:// URI)")
    from components.steps.data import SPLITS

    root = Path(raw)
    if not any((root / "det" / s / "gt").is_dir() or (root / "rec" / s / "gt.txt").is_file() for s in SPLITS):
        # the convert-labels task would find this after the object store, kfp.local and ingest
        raise DataError(f"{raw}: no det/<split>/gt/ or rec/<split>/gt.txt ground truth (splits: "
                        f"{', '.join(SPLITS)}; `ocrflow split-icdar` writes this layout)")


def display_names(pipeline: GraphComponent = ocr_train_pipeline) -> dict[str, str]:
    """Task name (``train-2``) -> display name (``fine-tune det``), from the compiled spec (sub-DAGs too)."""
    out: dict[str, str] = {}

    def walk(dag: Any) -> None:
        for name, task in dag.tasks.items():
            out[name] = task.task_info.name or name
        for comp in spec.components.values():
            if comp.HasField("dag"):
                for name, task in comp.dag.tasks.items():
                    out.setdefault(name, task.task_info.name or name)

    spec = pipeline.pipeline_spec
    walk(spec.root.dag)
    return out


WEIGHT_PARAMS = ("det_pretrained_uri", "rec_pretrained_uri", "det_teacher_init_uri")


def publish_local_weights(params: dict[str, Any], store_root: str) -> dict[str, Any]:
    """Local weights given to a weight parameter (a ``.pt``/``.pdparams`` file, or a folder holding
    ``model.pt``) are published under ``<store_root>/weights/<sha256>`` first, as the DAG takes URIs of
    published model prefixes; published URIs pass through. Returns ``params`` with URIs in place.
    """
    import shutil
    import tempfile

    from components.steps.common import content_key
    from ocr_core.errors import DataError
    from ocr_core.storage.manifest import is_published, sync_up
    from ocr_core.storage.uri import join_uri, parse_uri
    from ocr_core.weights.checkpoint import file_sha256

    out = dict(params)
    for key in WEIGHT_PARAMS:
        value = str(out.get(key) or "")
        if not value or not parse_uri(value).is_local or is_published(value):
            continue
        path = Path(value)
        ckpt = path / "model.pt" if path.is_dir() else path
        if not ckpt.is_file():
            raise DataError(f"{key}={value}: not a published model prefix, a checkpoint file, or a folder "
                            "holding model.pt")
        tmp = Path(tempfile.mkdtemp(prefix="ocrflow-weights-"))
        try:
            shutil.copy2(ckpt, tmp / "model.pt")
            digest = content_key(file_sha256(ckpt))[:16]
            m = sync_up(tmp, join_uri(store_root, "weights", digest), kind="model", quiet=True,
                        extra={"checkpoint": "model.pt", "source": str(ckpt.resolve())})
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"{key}: published {ckpt} as {m.prefix}")
        out[key] = m.prefix
    return out
