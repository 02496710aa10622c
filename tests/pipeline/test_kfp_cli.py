"""The KFP CLI commands users copy, run as subprocesses exactly as README.md and examples/ci print them.

The scripts come out of ``examples/ci/kfp-run.yml`` (each step's ``run:``, under the step's ``shell``
as GitHub runs it) and out of README.md's pipeline section; README must show the workflow's scripts
verbatim, so neither can change without this test. They run with the real ``kfp`` and ``ocrflow``
console scripts against ``tests/pipeline/fake_kfp.py`` (answers checked against kfp-server-api's
models; runtime parameters checked as the API server does).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.pipeline.fake_kfp import FakeKFP

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "examples" / "ci" / "kfp-run.yml"
README = ROOT / "README.md"
BIN = Path(sys.executable).parent  # .venv/bin: kfp, ocrflow, python
TOKEN = "kfp-t0ken-4f9a1c7e"  # noqa: S105 - a made-up bearer token the output must never show
RAW = "s3://ocrflow/incoming/2026-01"
SHA = "0123456789abcdef0123456789abcdef01234567"
GITHUB_SHELLS = {"bash": ["bash", "--noprofile", "--norc", "-eo", "pipefail"], None: ["bash", "-e"]}


def workflow_steps() -> dict[str, dict]:
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["submit"]["steps"]
    return {s["name"]: s for s in steps if "name" in s and "run" in s}


def readme_block() -> str:
    """The ```bash block of README.md's "Pipeline (KFP v2)" section that holds the kfp commands."""
    section = README.read_text().split("## Pipeline (KFP v2)", 1)[1].split("\n## ", 1)[0]
    blocks = [b for b in re.findall(r"```bash\n(.*?)```", section, re.S) if "kfp --endpoint" in b]
    assert len(blocks) == 1, "README's pipeline section must have one bash block with the kfp commands"
    return blocks[0]


def run_script(script: str, cwd: Path, fake_url: str, shell: str | None = "bash") -> subprocess.CompletedProcess:
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(cwd / "home"), "KFP_HOST": fake_url, "KFP_TOKEN": TOKEN,
           "RAW_DATA": RAW, "GITHUB_SHA": SHA, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run([*GITHUB_SHELLS[shell], "-c", script], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkout-like directory after the workflow's Compile step (run as written)."""
    if shutil.which("bash") is None:
        pytest.skip("bash is needed to run the workflow's scripts")
    cwd = tmp_path_factory.mktemp("ci")
    (cwd / "home").mkdir()
    step = workflow_steps()["Compile"]
    done = run_script(step["run"], cwd, "http://127.0.0.1:9", step.get("shell"))
    assert done.returncode == 0, done.stderr
    return cwd


def documents(path: Path) -> list[dict]:
    return list(yaml.safe_load_all(path.read_text()))


def assert_token_sent_never_shown(fake: FakeKFP, done: subprocess.CompletedProcess) -> None:
    assert fake.requests and all(r["headers"].get("authorization") == f"Bearer {TOKEN}" for r in fake.requests)
    assert TOKEN not in done.stdout + done.stderr


def first_command(script: str) -> str:
    """The script's first command (backslash continuations joined): the kfp call without what follows."""
    lines = script.splitlines()
    end = next(i for i, line in enumerate(lines) if not line.rstrip().endswith("\\"))
    return "\n".join(lines[: end + 1])


# ------------------------------------------------------------------------------------------- the CI workflow
def test_readme_shows_the_workflow_scripts_verbatim() -> None:
    block = readme_block()
    for name, step in workflow_steps().items():
        if name == "Install":
            continue
        assert textwrap.dedent(step["run"]).strip() in block, f"README.md's pipeline block differs from step {name!r}"


def test_docs_kfp_commands_are_the_tested_ones() -> None:
    """docs/pipeline.md repeats the kfp command blocks (CI run, nightly recurring run): each command in
    them (continuation lines joined) must be, verbatim, in README's block, which the tests below run."""
    docs = (ROOT / "docs" / "pipeline.md").read_text()
    blocks = [b for b in re.findall(r"```bash\n(.*?)```", docs, re.S) if "kfp --endpoint" in b]
    assert len(blocks) >= 2, "docs/pipeline.md shows the CI and the nightly kfp commands"
    readme = readme_block()
    commands = [c.strip() for b in blocks for c in re.split(r"(?<!\\)\n", b) if c.strip()]
    assert sum("kfp --endpoint" in c for c in commands) >= 3  # run create, run get, recurring-run create
    for command in commands:
        assert command in readme, f"docs/pipeline.md's command is not README's (tested) one:\n{command}"


def _run_step() -> dict:
    return workflow_steps()["Run the training pipeline (and wait for it)"]


def _polls(fake: FakeKFP) -> list[dict]:
    return [r for r in fake.requests if r["method"] == "GET" and r["path"].startswith("/apis/v2beta1/runs/")]


def test_ci_run_create_waits_and_passes_on_success(workdir: Path) -> None:
    step = _run_step()
    # kfp run create reads the run back once (RUNNING), the loop polls: RUNNING, 15 s, SUCCEEDED
    with FakeKFP(run_state=["RUNNING", "RUNNING", "SUCCEEDED"]) as fake:
        done = run_script(step["run"], workdir, fake.url, step.get("shell"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.fullmatch(r"run [0-9a-f-]{36} SUCCEEDED\n", done.stdout)
    assert [e["display_name"] for e in fake.posts("experiments")] == ["ocr-ci"]
    (run,) = fake.posts("runs")
    assert run["display_name"] == "ci-01234567" and run["experiment_id"] == next(iter(fake.experiments))
    spec, platform = documents(workdir / "dist" / "ocr_train_pipeline.yaml")
    assert run["pipeline_spec"] == {"pipeline_spec": spec, "platform_spec": platform}  # the whole compiled file
    # key=value parsed as JSON where it parses: the API server accepts these types (the fake checks them too)
    assert run["runtime_config"]["parameters"] == {"raw_data_uri": RAW, "launcher": "kubernetes", "workers": 2,
                                                   "gpus": 1}
    polls = _polls(fake)
    assert len(polls) == 3 and {p["path"].rsplit("/", 1)[1] for p in polls} == {run_id_of(done)}
    assert_token_sent_never_shown(fake, done)


def run_id_of(done: subprocess.CompletedProcess) -> str:
    return done.stdout.split()[1]


@pytest.mark.parametrize("end", ["FAILED", "CANCELED"])
def test_ci_step_fails_when_the_run_does_not_succeed(workdir: Path, end: str) -> None:
    step = _run_step()
    with FakeKFP(run_state=end) as fake:
        done = run_script(step["run"], workdir, fake.url, step.get("shell"))
    assert done.returncode == 1 and re.fullmatch(rf"run [0-9a-f-]{{36}} {end}\n", done.stdout)
    assert len(_polls(fake)) == 2  # create's own read-back, then one poll: an end state ends the wait at once
    assert_token_sent_never_shown(fake, done)


def test_kfp_own_wait_is_why_the_step_polls(workdir: Path) -> None:
    """The controls: ``run create -w`` exits 0 on a FAILED run, and on a CANCELED one it waits out ``-t``."""
    create = first_command(_run_step()["run"]).replace(" -f dist/", " -w -t 1 -f dist/")
    with FakeKFP(run_state="FAILED") as fake:
        failed = run_script(create, workdir, fake.url)
    with FakeKFP(run_state="CANCELED") as fake:
        canceled = run_script(create, workdir, fake.url)
    assert failed.returncode == 0, "kfp run create -w now fails by itself on FAILED: the poll loop may go"
    assert canceled.returncode != 0 and "Run timeout" in canceled.stderr, \
        "kfp's wait now ends on CANCELED: the poll loop may go"


def test_ci_recurring_run(workdir: Path) -> None:
    step = workflow_steps()["Create the nightly retraining recurring run"]
    with FakeKFP() as fake:
        done = run_script(step["run"], workdir, fake.url, step.get("shell"))
    assert done.returncode == 0, done.stdout + done.stderr
    (job,) = fake.posts("recurringruns")
    assert job["display_name"] == "ocr-nightly-retrain"
    assert fake.experiments[job["experiment_id"]]["display_name"] == "ocr"
    assert job["trigger"] == {"cron_schedule": {"cron": "0 0 2 * * *"}}
    assert int(job["max_concurrency"]) == 1 and job["no_catchup"] is True and job["mode"] == "ENABLE"
    spec, platform = documents(workdir / "dist" / "ocr_retrain_pipeline.yaml")
    assert job["pipeline_spec"] == {"pipeline_spec": spec, "platform_spec": platform}
    assert job["runtime_config"]["parameters"] == {"raw_data_uri": RAW, "launcher": "kubernetes"}
    # the numbers the nightly job trains with: compiled into the YAML by the Compile step's -p
    defaults = spec["root"]["inputDefinitions"]["parameters"]
    assert defaults["workers"]["defaultValue"] == 2 and defaults["gpus"]["defaultValue"] == 1
    assert_token_sent_never_shown(fake, done)


def test_recurring_run_pitfalls_the_example_avoids(workdir: Path) -> None:
    """Why the example passes no numbers and says --enabled: without them the job is refused or never runs."""
    step = workflow_steps()["Create the nightly retraining recurring run"]
    script = step["run"].rstrip()
    with FakeKFP() as fake:
        numbers = run_script(script + " workers=2", workdir, fake.url, step.get("shell"))
        disabled = run_script(script.replace(" --enabled", ""), workdir, fake.url, step.get("shell"))
    assert numbers.returncode != 0 and "input parameter workers requires type NUMBER_INTEGER" in numbers.stderr
    assert disabled.returncode == 0
    refused, job = fake.posts("recurringruns")
    assert refused["runtime_config"]["parameters"]["workers"] == "2"  # the CLI sent the number as a string
    assert job["mode"] == "DISABLE" and fake.recurring_runs[next(iter(fake.recurring_runs))]["status"] == "DISABLED"


# ------------------------------------------------------------------------------------------------ README.md
def test_readme_block_runs_as_printed(workdir: Path) -> None:
    """The whole block, top to bottom in one shell (compile, CI run, recurring run, the run submit alias)."""
    with FakeKFP(run_state="SUCCEEDED") as fake:
        done = run_script(readme_block(), workdir, fake.url)
    assert done.returncode == 0, done.stdout + done.stderr
    runs = fake.posts("runs")
    assert len(runs) == 2 and len(fake.posts("recurringruns")) == 1
    alias = runs[1]  # kfp run submit: the deprecated alias sends the same request as run create
    assert alias["display_name"] == "ocr" and alias["runtime_config"]["parameters"] == {"raw_data_uri": RAW}
    assert alias["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "ocr-train-pipeline"
    assert os.path.exists(workdir / "run.out")
    assert_token_sent_never_shown(fake, done)
