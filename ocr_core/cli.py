"""The ``ocrflow`` command line.

Each library verb lives in ``ocr_core/commands/<verb>.py``; other packages add verbs through the
``ocrflow.verbs`` entry point group (``pyproject.toml``: ``pipeline``, ``launch`` and ``demo`` live
with the DAG and the launcher they drive, which ``ocr_core`` never imports). A verb module defines:

* ``HELP``: one-line summary,
* ``add_arguments(parser)``: its flags,
* ``run(args) -> int``: the work; returns the exit code.

Verbs are imported only when used, so ``ocrflow --help`` stays fast (an entry-point verb's
``HELP`` is read from its source without importing it).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

from ocr_core.errors import OCRFlowError
from ocr_core.observability.logging import close_log_files

ENTRY_POINT_GROUP = "ocrflow.verbs"

# verb -> module under ocr_core.commands (kept explicit so `--help` lists verbs without imports)
VERBS: dict[str, tuple[str, str]] = {
    "synth": ("synth", "Render a synthetic det or rec dataset (deterministic by seed)."),
    "convert-labels": ("convert_labels", "Convert ICDAR2015 ground truth to PaddleOCR label files and back."),
    "validate-data": ("validate_data", "Check det/rec label files and images; print statistics."),
    "build-lmdb": ("build_lmdb", "Build a recognition LMDB (deep-text-recognition-benchmark layout)."),
    "build-shards": ("build_shards", "Write det/rec samples as tar shards plus an index (for ShardDataSet)."),
    "crop-words": ("crop_words", "Crop the words of ICDAR detection gt into word images + an ICDAR rec gt.txt."),
    "split-icdar": ("split_icdar", "Split ICDAR images + gt into the pipeline's raw layout (seeded, reproducible)."),
    "train": ("train", "Train a model from a PaddleOCR-style config (-c file -o Section.key=value)."),
    "eval": ("evaluate", "Evaluate a checkpoint on the Eval dataset of a config."),
    "infer": ("infer", "Run a checkpoint on images; write JSON results and visualizations."),
    "extract": ("extract", "Extract one role (Student/Student2/Teacher) from a distillation checkpoint."),
    "export": ("export", "Export a checkpoint to ONNX (or TensorRT) with embedded pre/post-processing."),
    "predict": ("predict", "Run an exported ONNX model (no torch needed)."),
    "weights": ("weights", "Import pretrained weights (official PP-OCRv3, PaddleOCR .pdparams, OpenOCR .pth)."),
    "storage": ("storage", "Object storage helpers: serve an embedded S3 server, upload, download."),
}


# verbs that decode images take --max-image-pixels (ocr_core/data/image_io.py: the header is read first)
IMAGE_VERBS = frozenset({"validate-data", "build-lmdb", "crop-words", "split-icdar", "train", "eval", "infer",
                         "export", "predict"})
MAX_PIXELS_ENV = "OCRFLOW_MAX_IMAGE_PIXELS"  # ocr_core.data.image_io.ENV (not imported: --help stays fast)


def _pixel_count(text: str) -> int:
    try:
        value = int(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number of pixels, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _source_help(module: str) -> str | None:
    """The module-level ``HELP = "..."`` of ``module``, read from its source (None when absent).

    Finding the module imports its parent packages, not the module itself.
    """
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):  # a parent package is missing or broken
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    try:
        with open(spec.origin, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), spec.origin)
    except (OSError, SyntaxError):
        return None
    for node in tree.body:
        if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "HELP" for t in node.targets)
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            return node.value.value
    return ""


def _available() -> dict[str, tuple[str, str]]:
    """verb -> (module, one-line help): the library's verbs, then installed ``ocrflow.verbs`` entry points
    whose module is present (a library verb's name is never taken over)."""
    out = {verb: (f"ocr_core.commands.{mod}", helptext) for verb, (mod, helptext) in VERBS.items()}
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.name in out:
            continue
        helptext = _source_help(ep.module)
        if helptext is not None:
            out[ep.name] = (ep.module, helptext)
    return out


def build_parser(load_verb: str | None = None,
                 available: dict[str, tuple[str, str]] | None = None) -> argparse.ArgumentParser:
    """The top-level parser; only ``load_verb``'s module is imported to add its flags."""
    parser = argparse.ArgumentParser(
        prog="ocrflow",
        description="Train, evaluate and export PP-OCR-style text detection and recognition models.",
    )
    from ocr_core import __version__

    parser.add_argument("--version", action="version", version=f"ocrflow {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb, (mod, helptext) in (available if available is not None else _available()).items():
        p = sub.add_parser(verb, help=helptext, description=helptext)
        if verb == load_verb:
            module = importlib.import_module(mod)
            module.add_arguments(p)
            p.set_defaults(_module=module)
            if verb in IMAGE_VERBS:
                p.add_argument("--max-image-pixels", type=_pixel_count, default=None, metavar="N",
                               help=f"refuse images whose header declares more than N pixels (default: "
                                    f"${MAX_PIXELS_ENV} or 40000000; 0 = no limit)")
    return parser


_WORKER_PREFIX = re.compile(r"^Caught \w+ in DataLoader worker process \d+\.")


def user_message(exc: BaseException) -> str:
    """The one-line message of a user error.

    An error raised inside a DataLoader worker reaches the main process re-created by torch with
    the worker's whole traceback as its message; the user gets the original last line (plus which
    worker), not the traceback.
    """
    text = str(exc)
    m = _WORKER_PREFIX.match(text)
    if m is None:
        return text
    lines = [ln for ln in text.splitlines() if ln.strip()]
    last = lines[-1].strip() if lines else text
    name = type(exc).__module__ + "." + type(exc).__name__
    for prefix in (name + ": ", type(exc).__name__ + ": "):
        if last.startswith(prefix):
            last = last[len(prefix):]
            break
    return f"{last} (in a DataLoader worker)"


def os_error_message(exc: OSError) -> str:
    """``path: reason`` for an OSError (both paths of a rename/link clash)."""
    reason = exc.strerror or user_message(exc)
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    return f"{' -> '.join(paths)}: {reason}" if paths else reason


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ocrflow`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verb = next((a for a in argv if not a.startswith("-")), None)
    available = _available()
    parser = build_parser(verb if verb in available else None, available)
    args = parser.parse_args(argv)
    if getattr(args, "_module", None) is None:
        parser.print_help()
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    limit = getattr(args, "max_image_pixels", None)
    saved_limit = os.environ.get(MAX_PIXELS_ENV)
    if limit is not None:  # through the environment: DataLoader workers and subprocesses see it too
        os.environ[MAX_PIXELS_ENV] = str(limit)
    try:
        return int(args._module.run(args) or 0)
    except OCRFlowError as exc:
        print(f"ocrflow {args.verb}: error: {user_message(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # an unwritable/clashing output path, a download target, a full disk
        print(f"ocrflow {args.verb}: error: {os_error_message(exc)}", file=sys.stderr)
        return 2
    except ValueError as exc:
        if "null byte" not in str(exc):  # a bug: keep its traceback
            raise
        # a path (a config value, a file list entry) with a NUL byte: open()/stat() refuse it
        print(f"ocrflow {args.verb}: error: a path contains a NUL byte ({user_message(exc)})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ocrflow {args.verb}: interrupted", file=sys.stderr)
        return 130
    finally:
        close_log_files()  # this verb's train.log/eval.log: main() may run again in this process
        if limit is not None:  # main() may run in process (tests, the worker entry point)
            if saved_limit is None:
                os.environ.pop(MAX_PIXELS_ENV, None)
            else:
                os.environ[MAX_PIXELS_ENV] = saved_limit


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
