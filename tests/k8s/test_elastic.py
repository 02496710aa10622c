"""Elastic PyTorchJobs (#16 item 3): three nodes lose one mid-epoch and the job finishes on two.

The job is what ``ocrflow launch --elastic 2:3`` builds (Master + 2 Workers, every replica running
``torchrun -m ocr_core.train --resume`` with the operator's ``PET_*`` env and c10d rendezvous on
``<job>-worker-0``), run by ``fake_apiserver.FakeCluster`` and watched by the real launcher client.
It trains a tiny det model with gloo on CPU, saving a step checkpoint every ``INTERVAL`` steps into
one ``save_model_dir`` that all "nodes" share (on a cluster: a ReadWriteMany volume). When rank 0
logs step ``LOSE_AT``, worker-1's node is lost (``FakeCluster.lose_node``: its whole process tree
SIGKILLed, the pod never replaced). The survivors' collectives fail, their torchrun agents drop
the dead node from the rendezvous (``keep_alive_interval`` x ``keep_alive_max_attempt`` seconds),
re-rendezvous at world size 2 and restart their workers, which resume ``latest.pt`` under the new
world size (``ocr_core/engine/resume.py``). The operator never sees a failed container.
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path
from typing import Any

import pytest

from components.launcher.pytorchjob import build_pytorchjob
from tests.integration.det_fixtures import make_det_split

CONFIG = "configs/det/det_mv3_db.yml"
IMAGES, EPOCHS, INTERVAL = 12, 2, 2  # batch 1 per rank: 4 steps/epoch at world 3, 6 at world 2
LOSE_AT = 7  # epoch 2's third step at world 3; the last step checkpoint before it is step 6
# Fast failure detection for a CI-sized run: a silent node is dropped after 1 s x 2 heartbeats; a
# round closes 3 s after the minimum (2) joined (all three start together, so none is left out).
RDZV = ["join_timeout=60", "last_call_timeout=3", "keep_alive_interval=1", "keep_alive_max_attempt=2"]
STEP = re.compile(r"global_step: (\d+),")


def _steps_per_epoch(world: int) -> int:
    return -(-IMAGES // world)  # DistributedSampler pads every rank to ceil(N / world); batch 1


@pytest.fixture(scope="module")
def det_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("elastic-data")
    make_det_split(root / "train", IMAGES, 1, size=(64, 64))
    make_det_split(root / "eval", 1, 2, size=(64, 64))
    return root


def _launch_argv(name: str, data: Path, out: Path) -> list[str]:
    """``ocrflow launch`` flags for the job (training overrides after ``-o``)."""
    return ["-c", CONFIG, "--name", name, "--namespace", "default", "--elastic", "2:3", "--rdzv-conf", *RDZV,
            "--env", "OMP_NUM_THREADS=1", "LOGLEVEL=INFO", "-o",
            f"Global.save_model_dir={out}", f"Global.epoch_num={EPOCHS}", f"Global.save_step_interval={INTERVAL}",
            "Global.use_gpu=false", "Global.print_batch_step=1", "Global.eval_batch_step=[0, 100000]",
            "Global.eval_at_end=false", "Global.save_epoch_step=1000", "Global.seed=7", "Global.num_threads=1",
            f"Train.dataset.data_dir={data / 'train'}", f"Train.dataset.label_file_list=[{data / 'train' / 'label.txt'}]",
            "Train.dataset.transforms.EastRandomCropData.size=[64, 64]", "Train.loader.batch_size_per_card=1",
            "Train.loader.num_workers=0", f"Eval.dataset.data_dir={data / 'eval'}",
            f"Eval.dataset.label_file_list=[{data / 'eval' / 'label.txt'}]",
            "Eval.dataset.transforms.DetResizeForTest={limit_side_len: 64, limit_type: max}", "Eval.loader.num_workers=0"]


def _pods(cluster, name: str) -> dict[str, Any]:
    from kubernetes import client

    items = client.CoreV1Api(cluster.api_client()).list_namespaced_pod(
        "default", label_selector=f"training.kubeflow.org/job-name={name}").items
    return {p.metadata.name: p for p in items}


def test_three_nodes_lose_one_and_finish_on_two(cluster, det_data, tmp_path):
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    from components.launcher import cli
    from components.launcher.client import launch_and_wait
    from ocr_core.weights.checkpoint import load_checkpoint

    name, out = "el", tmp_path / "run"
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    job = build_pytorchjob(cli.spec_from_args(parser.parse_args(_launch_argv(name, det_data, out))))
    events: list[tuple[float, str, str]] = []  # (time, pod, line) of every container line
    lose = [f"{name}-worker-1"]

    def on_line(pod: str, line: str) -> None:
        events.append((time.monotonic(), pod, line))
        if f"global_step: {LOSE_AT}," in line and lose:
            cluster.lose_node(lose.pop())  # within milliseconds: step LOSE_AT + 1 cannot finish

    cluster.on_line = on_line
    t0 = time.monotonic()
    try:
        result = launch_and_wait(job, cluster.api_client(), log_sink=None, poll_s=0.2, timeout_s=150,
                                 watch_timeout_s=5)
    finally:
        cluster.on_line = None
    wall = time.monotonic() - t0
    lines = [line for _, _, line in events]
    lost_at = cluster.lost[f"{name}-worker-1"]
    before = [line for t, _, line in events if t <= lost_at]
    after = [(t, line) for t, _, line in events if t > lost_at]

    # the operator: Created -> Running -> Succeeded, never Restarting (torchrun recovered inside the pods)
    assert result.state == "Succeeded"
    assert [c["type"] for c in result.conditions] == ["Created", "Running", "Succeeded"], result.conditions
    # what the operator gave each replica (elastic.go), and the launcher's elastic settings
    envs = {pod: cluster.envs[f"{name}-{pod}"] for pod in ("master-0", "worker-0", "worker-1")}
    for pod, env in envs.items():
        assert (env["PET_NNODES"], env["PET_RDZV_BACKEND"], env["PET_MAX_RESTARTS"], env["PET_NPROC_PER_NODE"]) == \
            ("2:3", "c10d", "3", "1")
        assert env["PET_RDZV_ENDPOINT"] == envs["master-0"]["PET_RDZV_ENDPOINT"]
        assert env["PET_RDZV_CONF"] == ",".join([*RDZV, f"is_host={'true' if pod == 'worker-0' else 'false'}"])
        assert "PET_RDZV_ID" not in env  # the policy sets no rdzvId
    container = job["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]
    assert container["command"][:3] == ["torchrun", "-m", "ocr_core.train"]
    assert {"name": "TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "value": "1"} in container["env"]

    # world 3 first; rank 0 logged step LOSE_AT, then the survivors re-rendezvoused at world size 2
    assert any("world 3, global batch 3" in line for line in before), before[-20:]
    survivors = {pod for _, pod, line in events if "group_world_size=2" in line}
    assert survivors == {f"{name}-master-0", f"{name}-worker-0"}, survivors
    last_before = max(int(m.group(1)) for line in before if (m := STEP.search(line)))
    assert last_before == LOSE_AT
    # the resume under the new world size (engine's log lines), from the last step checkpoint
    resumed = [line for line in lines if "resumed from" in line]
    assert len(resumed) == 1, resumed
    m = re.search(r"resumed from (\S+): epoch (\d+) after its first (\d+) batches, global_step (\d+)", resumed[0])
    assert m and m.group(1) == str(out / "latest.pt"), resumed
    epoch, skip, step = int(m.group(2)), int(m.group(3)), int(m.group(4))
    assert step == LOSE_AT // INTERVAL * INTERVAL and LOSE_AT - step <= INTERVAL  # at most INTERVAL steps lost
    old_batches = step - (epoch - 1) * _steps_per_epoch(3)
    assert any(f"saved mid-epoch by 3 rank(s), this run has 2: skipping {old_batches * 3 // 2} batches" in line
               for line in lines), lines
    assert skip == old_batches * 3 // 2  # the samples already trained on: batches x old world / new world
    assert any(f"resuming with global batch 2 (was 3) and {_steps_per_epoch(2)} steps/epoch (was "
               f"{_steps_per_epoch(3)})" in line for line in lines)
    assert any(f"{EPOCHS} epochs x {_steps_per_epoch(2)} steps, batch 1/rank, world 2" in line for line in lines)
    # the rule: the epoch in progress finishes at the new length, later epochs run at the new length
    final = step + (_steps_per_epoch(2) - skip) + (EPOCHS - epoch) * _steps_per_epoch(2)
    assert any(f"done: global_step {final}" in line for line in lines), lines[-20:]
    ck = load_checkpoint(out / "latest.pt")
    assert (ck["global_step"], ck["epoch"], ck["run_shape"]["world_size"]) == (final, EPOCHS, 2)

    # the pods: the lost one keeps its stale Running status and its log is unreachable; no restarts
    pods = _pods(cluster, name)
    lost = pods[f"{name}-worker-1"]
    assert lost.status.phase == "Running" and lost.status.container_statuses[0].restart_count == 0
    with pytest.raises(ApiException) as info:
        client.CoreV1Api(cluster.api_client()).read_namespaced_pod_log(f"{name}-worker-1", "default")
    assert info.value.status == 500
    deadline = time.monotonic() + 15  # cleanPodPolicy None: worker-0 ends on its own, after the Master
    while time.monotonic() < deadline and _pods(cluster, name)[f"{name}-worker-0"].status.phase == "Running":
        time.sleep(0.1)
    pods = _pods(cluster, name)
    for pod in (f"{name}-master-0", f"{name}-worker-0"):
        status = pods[pod].status.container_statuses[0]
        assert (status.state.terminated.exit_code, status.restart_count) == (0, 0), (pod, status)

    first_step = next(t for t, line in after if STEP.search(line))
    regroup = next(t for t, line in after if "group_world_size=2" in line)
    print(f"\nelastic: node lost at step {LOSE_AT}, {wall:.1f} s in all; re-rendezvous at world 2 after "
          f"{regroup - lost_at:.1f} s, first step after the loss at {first_step - lost_at:.1f} s")
    assert first_step - lost_at < 60


def test_without_a_master_any_worker_ends_an_elastic_job(cluster):
    """The operator's rule for a job without a Master: Succeeded once every Worker exited 0, or, with an
    elasticPolicy, once any one did; its env then has no MASTER_*/RANK/WORLD_SIZE, and an elastic
    policy without min/max defaults both to the Worker replicas."""
    from kubernetes import client

    from components.launcher.client import job_state
    from components.launcher.pytorchjob import GROUP, PLURAL, VERSION, PyTorchJobSpec

    code = "import os, time; time.sleep(0 if os.environ['HOSTNAME'].endswith('-worker-1') else 60)"
    custom = client.CustomObjectsApi(cluster.api_client())
    states = {}
    for name, elastic in (("workers-elastic", {"rdzv_backend": "c10d"}), ("workers-static", None)):
        job = build_pytorchjob(PyTorchJobSpec(name, ["-c", code], workers=2, namespace="default", elastic=elastic))
        rspecs = job["spec"]["pytorchReplicaSpecs"]
        rspecs["Worker"]["replicas"] = 3
        del rspecs["Master"]
        rspecs["Worker"]["template"]["spec"]["containers"][0]["command"] = ["python", "-c", code]
        custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, job)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            obj = custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name)
            state, cond = job_state(obj)
            phases = {p.metadata.name: p.status.phase for p in _pods(cluster, name).values()}
            if state == "Succeeded" or phases.get(f"{name}-worker-1") == "Succeeded":
                break
            time.sleep(0.1)
        time.sleep(0.5)  # a few operator rounds after worker-1's exit
        states[name] = job_state(custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name))
        custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name)
    state, cond = states["workers-elastic"]
    assert (state, cond["message"]) == ("Succeeded", "PyTorchJob default/workers-elastic successfully completed.")
    state, cond = states["workers-static"]
    assert (state, cond["message"]) == ("Running", "PyTorchJob default/workers-static is running.")
    env = cluster.envs["workers-elastic-worker-2"]
    assert not {"MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "PET_NODE_RANK"} & set(env)
    assert (env["PET_NNODES"], env["PET_NPROC_PER_NODE"], env["PET_RDZV_CONF"]) == ("3:3", "1", "is_host=false")
    assert cluster.envs["workers-elastic-worker-0"]["PET_RDZV_CONF"] == "is_host=true"
    assert cluster.envs["workers-static-worker-2"]["PET_NNODES"] == "3"
