"""The fake operator's rules (``fake_apiserver.FakeCluster``): each replica's env, when a job is
Succeeded or Running (``status_rule``), and how a container's processes are stopped.

``replica_env`` is kubeflow/trainer@v1.9.4's ``setPodEnv`` (``pkg/controller.v1/pytorch/envvar.go``)
with ``master.go``'s and ``elastic.go``'s generators, after the defaulting of
``pkg/apis/kubeflow.org/v1/pytorch_defaults.go``, in the operator's order. Two substitutions make
it runnable on one host without cluster DNS; everything else is the operator's value:

* ``MASTER_ADDR``/``PET_MASTER_ADDR`` are ``127.0.0.1`` (not ``<job>-master-0``) and the master
  port is a free local port (not the ``pytorchjob-port``, 23456);
* ``PET_RDZV_ENDPOINT`` is ``127.0.0.1:<free port>`` (not ``<job>-worker-0:<pytorchjob-port>``, or
  ``rdzvHost:rdzvPort``), and ``PET_RDZV_CONF`` gains ``is_host=true`` on the pod named by the
  endpoint's host, ``is_host=false`` on the others (unless the job's ``rdzvConf`` sets ``is_host``).
  On a cluster torch's c10d backend decides that itself: only the pod whose hostname is the
  endpoint's host (``<job>-worker-0``) matches it and hosts the rendezvous TCPStore; here
  ``127.0.0.1`` would match every pod.

``stop_tree``/``kill_tree`` reach every process of a container: torchrun starts each worker in a
session of its own, so signalling the agent's process group alone would leave the workers running.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from components.launcher.local import kill_group

DEFAULT_PORT = 23456  # PyTorchJobDefaultPort: the pytorchjob-port when the container declares none


def defaulted_nproc(spec: dict[str, Any]) -> str | None:
    """``spec.nprocPerNode`` after ``setDefaultNprocPerNode``: ``auto`` unless the elastic policy sets one."""
    elastic = spec.get("elasticPolicy")
    if spec.get("nprocPerNode") is None and (elastic is None or elastic.get("nProcPerNode") is None):
        return "auto"
    return spec.get("nprocPerNode")


def elastic_bounds(spec: dict[str, Any]) -> tuple[int, int]:
    """``(minReplicas, maxReplicas)`` after ``setElasticPolicy`` (the other one, else Worker replicas)."""
    policy = spec["elasticPolicy"]
    lo, hi = policy.get("minReplicas"), policy.get("maxReplicas")
    if lo is None and hi is None:
        lo = hi = int(spec["pytorchReplicaSpecs"]["Worker"].get("replicas", 1))
    return int(lo if lo is not None else hi), int(hi if hi is not None else lo)


def rdzv_host(job: dict[str, Any]) -> str:
    """The host part of the operator's ``PET_RDZV_ENDPOINT``: ``rdzvHost``, else ``<job>-worker-0``."""
    return job["spec"]["elasticPolicy"].get("rdzvHost") or f"{job['metadata']['name']}-worker-0"


def replica_env(job: dict[str, Any], rtype: str, index: int, master_port: int,
                rdzv_port: int) -> dict[str, str]:
    """The operator's env for replica ``rtype``/``index`` (with the substitutions of the module docstring)."""
    spec = job["spec"]
    rspecs = spec["pytorchReplicaSpecs"]
    nproc = defaulted_nproc(spec)
    total = sum(int(r.get("replicas", 1)) for r in rspecs.values())
    env = {"PYTHONUNBUFFERED": "1"}
    if "Master" in rspecs:  # MASTER_* and the static ranks only when the job has a Master
        rank = index + 1 if rtype == "Worker" else index
        env.update({"MASTER_PORT": str(master_port), "PET_MASTER_PORT": str(master_port),
                    "MASTER_ADDR": "127.0.0.1", "PET_MASTER_ADDR": "127.0.0.1",
                    "WORLD_SIZE": str(total * (int(nproc) if nproc and nproc.isdigit() else 1)),
                    "RANK": str(rank), "PET_NODE_RANK": str(rank)})
    if nproc is not None:
        env["PET_NPROC_PER_NODE"] = nproc
    policy = spec.get("elasticPolicy")
    if policy is None:
        env["PET_NNODES"] = str(total)
        return env
    lo, hi = elastic_bounds(spec)
    env["PET_RDZV_ENDPOINT"] = f"127.0.0.1:{rdzv_port}"
    env["PET_RDZV_BACKEND"] = policy.get("rdzvBackend") or "c10d"
    env["PET_NNODES"] = f"{lo}:{hi}"
    if policy.get("maxRestarts") is not None:
        env["PET_MAX_RESTARTS"] = str(policy["maxRestarts"])
    if policy.get("nProcPerNode") is not None:
        env["PET_NPROC_PER_NODE"] = str(policy["nProcPerNode"])
    if policy.get("rdzvId") is not None:
        env["PET_RDZV_ID"] = policy["rdzvId"]
    conf = [f"{c['key']}={c['value']}" for c in policy.get("rdzvConf") or []]
    if not any(c.startswith("is_host=") for c in conf):
        pod = f"{job['metadata']['name']}-{rtype.lower()}-{index}"
        conf.append(f"is_host={'true' if pod == rdzv_host(job) else 'false'}")
    env["PET_RDZV_CONF"] = ",".join(conf)
    if policy.get("standalone"):
        env["PET_STANDALONE"] = ""
    return env


def status_rule(job: dict[str, Any], pods: list[tuple[str, str]]) -> tuple[bool, bool, str]:
    """(succeeded, running, message) as ``UpdateJobStatus`` (pytorchjob_controller.go) decides them.

    ``pods`` are ``(replica type, phase)``. With a Master, the Master alone decides. Without one:
    every Worker succeeded, or, with an ``elasticPolicy``, any Worker succeeded. A pod on a lost
    node keeps its last phase (Running): nothing updates it.
    """
    name, ns = job["metadata"]["name"], job["metadata"]["namespace"]
    masters = [phase for rtype, phase in pods if rtype == "Master"]
    if masters:
        if masters[0] == "Succeeded":
            return True, False, f"PyTorchJob {name} is successfully completed."
        return False, masters[0] == "Running", f"PyTorchJob {name} is running."
    workers = [phase for rtype, phase in pods if rtype == "Worker"]
    succeeded = workers.count("Succeeded")
    if succeeded == len(workers) or (job["spec"].get("elasticPolicy") is not None and succeeded > 0):
        return True, False, f"PyTorchJob {ns}/{name} successfully completed."
    return False, "Running" in workers, f"PyTorchJob {ns}/{name} is running."


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a container's processes all at once, as a lost node does (no SIGTERM, no grace).

    The root is stopped first so it cannot react to its workers' death; then the whole tree is
    stopped and killed. Returns at once (the caller's reader thread reaps the root).
    """
    if proc.poll() is not None:
        return
    _signal([proc.pid], signal.SIGSTOP)
    tree = [proc.pid, *_descendants(proc.pid)]
    _signal(tree, signal.SIGSTOP)
    _signal(tree, signal.SIGKILL)


def stop_tree(proc: subprocess.Popen, grace_s: float = 1.0) -> None:
    """SIGTERM the container's process group, SIGKILL it after ``grace_s`` (a pod deletion), and
    SIGKILL whatever of its tree is left (torchrun workers live in sessions of their own)."""
    if proc.poll() is not None:
        return
    tree = _descendants(proc.pid)
    kill_group(proc, grace_s=grace_s)
    _signal(tree, signal.SIGKILL)
