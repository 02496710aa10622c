"""Architecture rule: ocr_core is usable on its own and never imports kfp or kubernetes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import importlib, pkgutil, sys
import ocr_core
names = [m.name for m in pkgutil.walk_packages(ocr_core.__path__, "ocr_core.")]
for name in names:
    importlib.import_module(name)
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("kfp", "kubernetes", "components", "pipelines"))
print(len(names), ",".join(bad))
"""


def test_importing_every_ocr_core_module_pulls_in_no_kfp_or_kubernetes() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    count, bad = out.stdout.strip().splitlines()[-1].split(" ", 1) if " " in out.stdout.strip() else (out.stdout.strip(), "")
    assert int(count) > 60  # really walked the package
    assert bad == "", f"ocr_core imported {bad}"


def test_no_source_file_imports_kfp_or_kubernetes() -> None:
    offenders = []
    for path in (ROOT / "ocr_core").rglob("*.py"):
        for line in path.read_text(encoding="utf-8").splitlines():
            s = line.strip()
            if s.startswith(("import kfp", "from kfp", "import kubernetes", "from kubernetes")):
                offenders.append(f"{path.relative_to(ROOT)}: {s}")
    assert not offenders, offenders
