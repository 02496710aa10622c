"""A loopback Kubernetes API server + PyTorchJob operator simulator, for launcher tests.

No kube-apiserver can run here (see SPEC-PLATFORM §2), so this implements only what
``components/launcher/client.py`` uses, over real HTTP (``fake_http.py``) so the real
``kubernetes`` client talks to it: PyTorchJobs create/get/list/watch/delete, pods list, pod log.

The simulator follows kubeflow/trainer@v1.9.4 for each created job:

* admission: the CRD schema (422 Invalid, like the API server), then the webhook rules (403, like a
  controller-runtime validating webhook denial), both via ``components.launcher.validate``;
* defaulting (``pytorch_defaults.go``): ``nprocPerNode=auto``, the elastic policy's min/max;
* env (``envvar.go``, ``master.go``, ``elastic.go``): see ``fake_operator.replica_env``, which also
  lists the substitutions for one host without cluster DNS (master address and port, rendezvous
  endpoint and which pod hosts the c10d store); each pod also gets ``HOSTNAME`` = its name, as
  the container runtime sets it;
* each replica's container command runs as a local process (``python`` is this interpreter,
  ``torchrun`` is ``python -m torch.distributed.run``);
* conditions (``UpdateJobStatus``): Created; Running (the Master running, or without a Master any
  Worker); Restarting; Succeeded (the Master exited 0; without a Master: every Worker exited 0, or
  with an ``elasticPolicy`` any Worker exited 0); Failed (``Never``: any non-zero exit;
  ``OnFailure``: restarts past ``backoffLimit``), with the operator's messages. A Succeeded job's
  other replicas run on to their end under ``cleanPodPolicy: None`` (the operator deletes nothing)
  and are killed under ``Running``/``All``; a Failed job's are killed (simplified: the operator
  keeps them under ``None`` too). Pod objects stay for logs.
"""

from __future__ import annotations

import copy
import datetime as dt
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from typing import Any

from components.launcher.local import expand_k8s_vars, free_port, local_argv
from components.launcher.validate import schema_errors, webhook_errors
from tests.k8s.fake_http import make_handler, status_body
from tests.k8s.fake_operator import kill_tree, replica_env, status_rule, stop_tree


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Container:
    """One run of a replica's ``pytorch`` container (a local process)."""

    def __init__(self, proc: subprocess.Popen, restart: int) -> None:
        self.proc, self.restart = proc, restart
        self.lines: list[str] = []
        self.exit_code: int | None = None
        self.ended = False  # its output is fully read
        self.started, self.finished = _now(), ""


class _Pod:
    def __init__(self, job: dict[str, Any], rtype: str, index: int, image: str) -> None:
        self.ns = job["metadata"]["namespace"]
        self.job = job["metadata"]["name"]
        self.rtype, self.index, self.image = rtype, index, image
        self.name = f"{self.job}-{rtype.lower()}-{index}"
        self.uid = str(uuid.uuid4())
        self.labels = {
            **((job["spec"]["pytorchReplicaSpecs"][rtype]["template"].get("metadata") or {}).get("labels") or {}),
            "training.kubeflow.org/job-name": self.job,
            "training.kubeflow.org/operator-name": "pytorchjob-controller",
            "training.kubeflow.org/replica-type": rtype.lower(),
            "training.kubeflow.org/replica-index": str(index),
        }
        if rtype == "Master":
            self.labels["training.kubeflow.org/job-role"] = "master"
        self.current: _Container | None = None
        self.previous: _Container | None = None
        self.restarts = 0
        self.phase = "Pending"
        self.lost = False  # its node is gone: nothing reports on it any more (FakeCluster.lose_node)

    def to_json(self) -> dict[str, Any]:
        def state(c: _Container | None) -> dict[str, Any]:
            if c is None:
                return {}
            if c.exit_code is None:
                return {"running": {"startedAt": c.started}}
            return {"terminated": {"exitCode": c.exit_code, "startedAt": c.started, "finishedAt": c.finished,
                                   "reason": "Completed" if c.exit_code == 0 else "Error"}}

        status: dict[str, Any] = {"phase": self.phase}
        if self.current is not None:
            status["containerStatuses"] = [{
                "name": "pytorch", "image": self.image, "imageID": "", "restartCount": self.restarts,
                "ready": self.current.exit_code is None, "started": self.current.exit_code is None,
                "state": state(self.current), "lastState": state(self.previous),
            }]
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": self.name, "namespace": self.ns, "uid": self.uid, "labels": self.labels},
                "spec": {"containers": [{"name": "pytorch", "image": self.image}]}, "status": status}


class FakeCluster:
    """The API server and the operator; use as a context manager. ``url`` is the server address.

    Fault injection:

    * ``kill_once`` holds pod names whose first container is SIGKILLed right after it starts and
      is restarted in place (exit 137, ``restartPolicy: OnFailure``): a container killed on a node
      that stays up (OOM kill, a crashed process);
    * ``lose_node(pod)``: the pod's node disappears (see there); the pod does not come back.

    ``on_line(pod_name, line)``, when set, sees every output line of every container as it is
    read (from the reader threads, without the lock held): tests time events and inject faults
    at a given log line with it.

    Secrets: ``secrets[(namespace, name)] = {key: value}`` (what ``kubectl create secret`` would
    store) resolves ``env[].valueFrom.secretKeyRef`` and ``envFrom[].secretRef`` like the kubelet.
    A missing (non-optional) Secret or key makes the container fail at once with the kubelet's
    message (a real kubelet keeps it waiting in ``CreateContainerConfigError`` instead).
    """

    def __init__(self, workdir: str | None = None) -> None:
        self.workdir = workdir or os.getcwd()
        self.cond = threading.Condition()
        self.rv = 0
        self.jobs: dict[tuple[str, str], dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], _Pod] = {}
        self.events: list[tuple[int, str, dict[str, Any]]] = []
        self.requests: list[tuple[str, str]] = []
        self.kill_once: set[str] = set()
        self.secrets: dict[tuple[str, str], dict[str, str]] = {}
        self.envs: dict[str, dict[str, str]] = {}  # pod name -> operator env given to its process
        self.on_line: Callable[[str, str], None] | None = None
        self.lost: dict[str, float] = {}  # pod name -> time.monotonic() of its node's loss
        self.stopping = False
        self._threads: list[threading.Thread] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(self))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    # lifecycle ---------------------------------------------------------------------------------
    def __enter__(self) -> FakeCluster:
        t = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        with self.cond:
            self.stopping = True
            pods = list(self.pods.values())
            self.cond.notify_all()
        for pod in pods:
            if pod.current is not None:
                stop_tree(pod.current.proc, grace_s=1)
        for t in self._threads:
            t.join(timeout=10)
        self.server.shutdown()
        self.server.server_close()

    def api_client(self) -> Any:
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = self.url
        return client.ApiClient(cfg)

    # store (call with self.cond held) ---------------------------------------------------------
    def _emit(self, kind: str, job: dict[str, Any]) -> None:
        self.rv += 1
        job["metadata"]["resourceVersion"] = str(self.rv)
        self.events.append((self.rv, kind, copy.deepcopy(job)))
        self.cond.notify_all()

    def _condition(self, job: dict[str, Any], ctype: str, reason: str, message: str) -> None:
        conds = job["status"].setdefault("conditions", [])
        for c in conds:
            if c["type"] == "Running" and ctype in ("Succeeded", "Failed", "Restarting"):
                c["status"] = "False"
            if c["type"] == "Restarting" and ctype == "Running":
                c["status"] = "False"
        conds[:] = [c for c in conds if c["type"] != ctype]
        conds.append({"type": ctype, "status": "True", "reason": reason, "message": message,
                      "lastUpdateTime": _now(), "lastTransitionTime": _now()})
        self._emit("MODIFIED", job)

    # API ---------------------------------------------------------------------------------------
    def create_job(self, ns: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        body.setdefault("metadata", {})["namespace"] = ns
        errs = schema_errors(body)
        if errs:
            return 422, status_body(422, "Invalid", f"PyTorchJob.kubeflow.org \"{body['metadata'].get('name')}\" is "
                                "invalid: " + "; ".join(map(str, errs)), errs)
        errs = webhook_errors(body)
        if errs:
            return 403, status_body(403, "Forbidden", "admission webhook \"validator.pytorchjob.training-operator."
                                "kubeflow.org\" denied the request: " + "; ".join(map(str, errs)), errs)
        name = body["metadata"]["name"]
        with self.cond:
            if (ns, name) in self.jobs:
                return 409, status_body(409, "AlreadyExists", f"pytorchjobs.kubeflow.org \"{name}\" already exists")
            job = copy.deepcopy(body)
            job["metadata"].update(uid=str(uuid.uuid4()), creationTimestamp=_now())
            job["status"] = {}
            self.jobs[(ns, name)] = job
            self._condition(job, "Created", "PyTorchJobCreated", f"PyTorchJob {name} is created.")
            out = copy.deepcopy(job)
        t = threading.Thread(target=self._operate, args=(ns, name), daemon=True)
        self._threads.append(t)
        t.start()
        return 201, out

    def delete_job(self, ns: str, name: str) -> tuple[int, dict[str, Any]]:
        with self.cond:
            job = self.jobs.pop((ns, name), None)
            if job is None:
                return 404, status_body(404, "NotFound", f"pytorchjobs.kubeflow.org \"{name}\" not found")
            pods = [p for k, p in list(self.pods.items()) if p.job == name and k[0] == ns]
            for pod in pods:
                del self.pods[(ns, pod.name)]
            self._emit("DELETED", job)
        for pod in pods:
            if pod.current is not None:
                stop_tree(pod.current.proc, grace_s=1)
        return 200, status_body(200, "", "", status="Success")

    def lose_node(self, pod_name: str, ns: str = "default") -> None:
        """The node running ``pod_name`` is lost (powered off, partitioned): all its processes die at
        once (SIGKILL of the whole tree, no SIGTERM) and nothing reports on the pod any more.

        Like on a cluster during the first minutes of a node loss: the API keeps the pod's last
        status (phase Running, container running) because its kubelet no longer updates it, its log
        cannot be read (the API server cannot reach the kubelet), and the operator, which only
        creates pods that are missing, starts no replacement. A real cluster marks the pod NotReady
        after ``node-monitor-grace-period`` (40 s) and evicts it after the default 300 s
        not-ready toleration; the pod then stays Terminating until the node returns or is
        force-deleted, and only then does the operator create a new one (Pending while no node has
        room). Tests end long before that, so none of it is simulated.
        """
        with self.cond:
            pod = self.pods[(ns, pod_name)]
            pod.lost = True
            self.lost[pod_name] = time.monotonic()
            run = pod.current
        if run is not None:
            kill_tree(run.proc)

    # operator ----------------------------------------------------------------------------------
    def _operate(self, ns: str, name: str) -> None:
        with self.cond:
            job = self.jobs[(ns, name)]
            spec = job["spec"]
            rspecs = spec["pytorchReplicaSpecs"]
            # free local ports stand for <job>-master-0's pytorchjob-port and the rendezvous endpoint
            master_port, rdzv_port = free_port(), free_port()
            backoff = (spec.get("runPolicy") or {}).get("backoffLimit")
            pods = []
            for rtype in ("Master", "Worker"):
                for index in range(int(rspecs.get(rtype, {}).get("replicas", 0))):
                    container = next(c for c in rspecs[rtype]["template"]["spec"]["containers"]
                                     if c["name"] == "pytorch")
                    op_env = replica_env(job, rtype, index, master_port, rdzv_port)
                    pod = _Pod(job, rtype, index, container["image"])
                    self.pods[(ns, pod.name)] = pod
                    self.envs[pod.name] = op_env
                    pods.append((pod, container, op_env, rspecs[rtype].get("restartPolicy", "OnFailure")))
        for pod, container, op_env, _ in pods:
            self._start(pod, container, op_env)
        restarts_total = 0
        succeeded = False
        while True:
            time.sleep(0.05)
            with self.cond:
                if self.stopping or (ns, name) not in self.jobs:
                    return
                for pod, container, op_env, policy in pods:
                    c = pod.current
                    if pod.lost or c is None or c.exit_code is not None or c.proc.poll() is None:
                        continue
                    code = c.proc.returncode
                    c.exit_code = 128 - code if code < 0 else code  # SIGKILL -> 137, like the kubelet
                    c.finished = _now()
                    if succeeded:  # the job is over: only record how its remaining replicas end
                        pod.phase = "Succeeded" if c.exit_code == 0 else "Failed"
                        continue
                    retry = policy in ("OnFailure", "Always") or (policy == "ExitCode" and c.exit_code >= 128)
                    if c.exit_code == 0:
                        pod.phase = "Succeeded"
                    elif retry and (backoff is None or restarts_total < backoff):
                        restarts_total += 1
                        self._condition(job, "Restarting", "PyTorchJobRestarting",
                                        f"PyTorchJob {name} is restarting because 1 {pod.rtype} replica(s) failed.")
                        pod.previous, pod.restarts = c, pod.restarts + 1
                        self._start(pod, container, op_env, locked=True)
                    else:
                        pod.phase = "Failed" if not retry else "Running"
                        msg = (f"PyTorchJob {name} is failed because 1 {pod.rtype} replica(s) failed." if not retry
                               else f"Job {name} has failed because it has reached the specified backoff limit")
                        self._finish(job, pods, "Failed", "PyTorchJobFailed", msg)
                        return
                if succeeded:
                    if all(p.lost or p.current is None or p.current.exit_code is not None for p, *_ in pods):
                        return
                    continue
                done, running, msg = status_rule(job, [(p.rtype, p.phase) for p, *_ in pods])
                if done:  # cleanPodPolicy None (the default): the operator deletes no pod of a finished job
                    keep = (spec.get("runPolicy") or {}).get("cleanPodPolicy", "None") == "None"
                    self._finish(job, [] if keep else pods, "Succeeded", "PyTorchJobSucceeded", msg)
                    if not keep:
                        return
                    succeeded = True
                    continue
                state = next((c for c in reversed(job["status"]["conditions"]) if c["status"] == "True"), {})
                if running and state.get("type") != "Running":
                    job["status"].setdefault("startTime", _now())
                    self._condition(job, "Running", "PyTorchJobRunning", msg)

    def _finish(self, job: dict[str, Any], pods: list[Any], ctype: str, reason: str, msg: str) -> None:
        job["status"]["completionTime"] = _now()
        self._condition(job, ctype, reason, msg)
        for pod, *_ in pods:  # SIGKILL without waiting (we hold the lock); reader threads reap them
            if pod.current is not None:
                kill_tree(pod.current.proc)

    def _start(self, pod: _Pod, container: dict[str, Any], op_env: dict[str, str], locked: bool = False) -> None:
        env = {k: os.environ[k] for k in ("PATH", "HOME", "PYTHONPATH", "OMP_NUM_THREADS", "LANG")
               if k in os.environ}
        env["HOSTNAME"] = pod.name  # the container runtime's: the pod's hostname
        env["PYTHONPATH"] = os.pathsep.join(p for p in (self.workdir, env.get("PYTHONPATH")) if p)
        missing: list[str] = []
        for src in container.get("envFrom") or []:  # envFrom first, then env (env wins)
            ref = src.get("secretRef") or {}
            if "name" in ref:
                data = self.secrets.get((pod.ns, ref["name"]))
                if data is None and not ref.get("optional"):
                    missing.append(f'secret "{ref["name"]}" not found')
                env.update({src.get("prefix", "") + k: v for k, v in (data or {}).items()})
        for item in container.get("env") or []:  # fieldRef/configMap values are not simulated
            ref = (item.get("valueFrom") or {}).get("secretKeyRef")
            if "value" in item:
                env[item["name"]] = expand_k8s_vars(item["value"], env)
            elif ref is not None:
                data = self.secrets.get((pod.ns, ref.get("name", "")))
                if data is not None and ref.get("key") in data:
                    env[item["name"]] = data[ref["key"]]
                elif not ref.get("optional"):
                    missing.append(f'secret "{ref.get("name")}" not found' if data is None
                                   else f"couldn't find key {ref.get('key')} in Secret {pod.ns}/{ref.get('name')}")
        env.update(op_env)  # the operator appends its vars after the user's
        argv = local_argv([*container.get("command", []), *container.get("args", [])], env)
        if missing:  # CreateContainerConfigError: the command never runs
            argv = [sys.executable, "-c", f"raise SystemExit({'Error: ' + missing[0]!r})"]
        proc = subprocess.Popen(argv, env=env, cwd=self.workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1, start_new_session=True)
        run = _Container(proc, pod.restarts)
        if pod.name in self.kill_once:
            self.kill_once.discard(pod.name)
            kill_tree(proc)  # exit 137, restarted in place
        if not locked:
            self.cond.acquire()
        try:
            pod.current, pod.phase = run, "Running"
        finally:
            if not locked:
                self.cond.release()
        threading.Thread(target=self._read, args=(run, pod.name), daemon=True).start()

    def _read(self, run: _Container, pod_name: str) -> None:
        assert run.proc.stdout is not None
        for line in run.proc.stdout:
            line = line.rstrip("\n")
            with self.cond:
                run.lines.append(line)
                self.cond.notify_all()
            if self.on_line is not None:
                self.on_line(pod_name, line)
        run.proc.stdout.close()
        run.proc.wait()
        with self.cond:
            run.ended = True
            self.cond.notify_all()


if __name__ == "__main__":  # manual poking: python tests/k8s/fake_apiserver.py
    with FakeCluster() as c:
        print(c.url, file=sys.stderr)
        threading.Event().wait()
