"""The pip requirement set of each OCRFlow image, from pyproject.toml (stdlib only).

``onnxruntime`` and ``onnxruntime-gpu`` install the same ``onnxruntime`` package: with both, the one
installed last wins file by file and the CUDA provider can vanish. So every image gets exactly one:
the CPU image the base dependency ``onnxruntime``, the GPU images ``onnxruntime-gpu`` in its place.

    python images/image_requirements.py gpu > /tmp/requirements.txt   # cpu | gpu | gpu-trt

The Dockerfiles install these requirements, then the project wheel with ``--no-deps``;
tests/unit/test_image_requirements.py checks the sets and that the Dockerfiles use them.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import tomllib

_HERE = Path(__file__).resolve().parent
# the repository's, or (in the image build) the copy placed beside this script
PYPROJECT = _HERE / "pyproject.toml" if (_HERE / "pyproject.toml").is_file() else _HERE.parent / "pyproject.toml"
ORT_CPU, ORT_GPU = "onnxruntime", "onnxruntime-gpu"
# extras per image kind; "gpu" without TensorRT takes only the extra's onnxruntime-gpu. Every image
# has tensorboard, so a config's Global.use_visualdl works in a DAG or PyTorchJob pod too.
KINDS = {"cpu": ("pipeline", "tensorboard"), "gpu": ("pipeline", "tensorboard"),
         "gpu-trt": ("pipeline", "tensorboard", "gpu")}


def dist_name(req: str) -> str:
    """``"onnxruntime-gpu>=1.18"`` -> ``"onnxruntime-gpu"`` (normalised, lower case)."""
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
    return re.sub(r"[-_.]+", "-", m.group(1)).lower() if m else ""


def requirements(kind: str, pyproject: Path = PYPROJECT) -> list[str]:
    """The requirement lines of image ``kind`` (``cpu``, ``gpu`` or ``gpu-trt``)."""
    if kind not in KINDS:
        raise SystemExit(f"unknown image kind {kind!r}; choose {', '.join(KINDS)}")
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    extras = project.get("optional-dependencies", {})
    reqs = list(project.get("dependencies", []))
    for extra in KINDS[kind]:
        reqs += extras[extra]
    gpu_ort = next(r for r in extras["gpu"] if dist_name(r) == ORT_GPU)
    if kind != "cpu":
        reqs = [r for r in reqs if dist_name(r) != ORT_CPU]
        if not any(dist_name(r) == ORT_GPU for r in reqs):
            reqs.append(gpu_ort)
    else:
        reqs = [r for r in reqs if dist_name(r) != ORT_GPU]
    seen, out = set(), []
    for r in reqs:
        if r not in seen:
            seen.add(r)
            out.append(r)
    return out


def check_installed() -> str:
    """An error message when this environment holds both onnxruntime distributions, else ``""``."""
    import importlib.metadata as metadata

    names = {dist_name(d.metadata["Name"] or "") for d in metadata.distributions()}
    return f"{ORT_CPU} and {ORT_GPU} are both installed" if {ORT_CPU, ORT_GPU} <= names else ""


if __name__ == "__main__":
    arg = sys.argv[1] if len(sys.argv) > 1 else "cpu"
    if arg == "--check-installed":
        sys.exit(check_installed() or 0)
    print("\n".join(requirements(arg)))
