"""#18 item 7 (images): one onnxruntime per image, read from the requirement sets the Dockerfiles install."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("image_requirements", ROOT / "images/image_requirements.py")
assert _spec and _spec.loader
image_requirements = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(image_requirements)


def _names(kind: str) -> set[str]:
    return {image_requirements.dist_name(r) for r in image_requirements.requirements(kind)}


def test_each_image_has_exactly_one_onnxruntime() -> None:
    ort = {"onnxruntime", "onnxruntime-gpu"}
    assert _names("cpu") & ort == {"onnxruntime"}
    assert _names("gpu") & ort == {"onnxruntime-gpu"}
    assert _names("gpu-trt") & ort == {"onnxruntime-gpu"}
    assert "tensorrt" in _names("gpu-trt") and "tensorrt" not in _names("gpu")
    # Global.use_visualdl's writer is in every image (a DAG or PyTorchJob pod may run such a config)
    assert all("tensorboard" in _names(kind) for kind in ("cpu", "gpu", "gpu-trt"))
    # everything else the CPU image needs is in the GPU images too
    assert _names("cpu") - {"onnxruntime"} <= _names("gpu")
    out = subprocess.run([sys.executable, str(ROOT / "images/image_requirements.py"), "gpu"], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert out == image_requirements.requirements("gpu")


def _pip_commands(dockerfile: Path) -> list[str]:
    text = dockerfile.read_text(encoding="utf-8").replace("\\\n", " ")
    return [m.group(0) for m in re.finditer(r"pip install[^&;\n]*", text)]


def test_dockerfiles_install_those_sets() -> None:
    gpu = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert 'image_requirements.py "$KIND"' in gpu and 'KIND="gpu-trt"' in gpu and "--check-installed" in gpu
    for cmd in _pip_commands(ROOT / "Dockerfile"):
        assert "onnxruntime" not in cmd, cmd  # only through the requirement set
        if "ocrflow-" in cmd:
            assert "--no-deps" in cmd, cmd  # the wheel's own onnxruntime dependency stays out
    cpu_cmds = _pip_commands(ROOT / "images/cpu.Dockerfile")
    assert any("ocrflow-*.whl)[pipeline,tensorboard]" in c for c in cpu_cmds)  # = requirements("cpu")
    assert not any("onnxruntime-gpu" in c or "[pipeline,gpu]" in c for c in cpu_cmds)


def test_check_installed_in_this_environment() -> None:
    rc = subprocess.run([sys.executable, str(ROOT / "images/image_requirements.py"), "--check-installed"]).returncode
    assert rc == 0  # the dev venv has onnxruntime only
