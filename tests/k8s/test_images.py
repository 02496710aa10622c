"""Lint the Dockerfiles' text and tie the image tag to components/launcher/pytorchjob.py:DEFAULT_IMAGE."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from components.launcher.pytorchjob import DEFAULT_IMAGE, PyTorchJobSpec, build_pytorchjob

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = [ROOT / "Dockerfile", ROOT / "images" / "cpu.Dockerfile"]
CREDENTIAL = re.compile(r"(ACCESS_KEY|SECRET|PASSWORD|TOKEN|accesskey|secretkey|CREDENTIAL)", re.IGNORECASE)


def _instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _args(instrs: list[tuple[str, str]]) -> dict[str, str]:
    return dict(rest.split("=", 1) for word, rest in instrs if word == "ARG" and "=" in rest)


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_lint(path):
    instrs = _instructions(path)
    args = _args(instrs)
    froms = [rest.split()[0] for word, rest in instrs if word == "FROM"]
    assert len(froms) >= 2, "multi-stage build expected"
    for image in froms:
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        name, sep, tag = image.rpartition(":")
        assert sep and name and tag and tag != "latest" and "@" not in name, f"unpinned base {image}"
        assert re.search(r"\d", tag), f"base tag without a version: {image}"
    users = [rest for word, rest in instrs if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "final USER must not be root"
    for word, rest in instrs:
        if word in ("ENV", "ARG"):
            assert not CREDENTIAL.search(rest), f"credential-like {word}: {rest}"
        assert "AWS_ACCESS_KEY_ID=" not in rest and "AWS_SECRET_ACCESS_KEY=" not in rest
    assert ("CMD", '["ocrflow", "--help"]') in instrs
    assert ("ENTRYPOINT", "[]") in instrs


def test_main_image_extras_and_cpu_torch():
    main = (ROOT / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime" in main
    # the requirement set comes from images/image_requirements.py (one onnxruntime per image,
    # tests/unit/test_image_requirements.py); TensorRT only on request
    assert 'image_requirements.py "$KIND"' in main and "WITH_TENSORRT=0" in main
    assert "--check-installed" in main
    cpu = (ROOT / "images" / "cpu.Dockerfile").read_text()
    assert "https://download.pytorch.org/whl/cpu" in cpu and "TORCH_VERSION=2.13.0" in cpu


def test_dockerignore_keeps_secrets_and_venv_out():
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".env"} <= set(ignored)


def test_default_image_is_the_one_constant():
    job = build_pytorchjob(PyTorchJobSpec("x", ["-m", "ocr_core.train"], workers=2))
    images = {c["image"] for spec in job["spec"]["pytorchReplicaSpecs"].values()
              for c in spec["template"]["spec"]["containers"]}
    assert images == {DEFAULT_IMAGE}
    name, _, tag = DEFAULT_IMAGE.rpartition(":")
    assert name and tag and tag != "latest"
    # the build script and the README tag the image from the same constant
    assert "pytorchjob import DEFAULT_IMAGE" in (ROOT / "images" / "build.sh").read_text()
    assert DEFAULT_IMAGE in (ROOT / "images" / "README.md").read_text()
    from components.launcher import cli

    parser = __import__("argparse").ArgumentParser()
    cli.add_arguments(parser)
    assert parser.parse_args(["-c", "x", "--name", "x"]).image == DEFAULT_IMAGE
