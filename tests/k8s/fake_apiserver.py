"""A loopback Kubernetes API server + PyTorchJob operator simulator, for launcher tests.

No kube-apiserver can run here (see SPEC-PLATFORM §2), so this implements only what
``components/launcher/client.py`` uses, over real HTTP so the real ``kubernetes`` client talks to
it: PyTorchJobs create/get/list/watch/delete, pods list, pod log (``follow``, ``tailLines``,
``previous``). Watches and followed logs are chunked HTTP/1.1 streams of lines.

The simulator follows kubeflow/trainer@v1.9.4 for each created job:

* admission: the CRD schema (422 Invalid, like the API server), then the webhook rules (403, like a
  controller-runtime validating webhook denial), both via ``components.launcher.validate``;
* defaulting (``pytorch_defaults.go``): port ``pytorchjob-port``=23456, ``nprocPerNode=auto``;
* env (``envvar.go``/``master.go``): ``PYTHONUNBUFFERED``, ``MASTER_*``/``PET_MASTER_*``,
  ``WORLD_SIZE``, ``RANK``, ``PET_NODE_RANK``, ``PET_NPROC_PER_NODE``, ``PET_NNODES``.
  Substitutions (no cluster DNS, one host): ``MASTER_ADDR`` is ``127.0.0.1`` instead of
  ``<job>-master-0`` and the master port is mapped to a free local port;
* each replica's container command runs as a local process (``python`` is this interpreter);
* conditions: Created, Running (master running), Restarting, Succeeded (master exit 0), Failed
  (``Never``: any non-zero exit; ``OnFailure``: restarts past ``backoffLimit``, with the
  operator's messages). A failed job's other processes are killed; pod objects stay for logs.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from components.launcher.local import expand_k8s_vars, free_port, kill_group, local_argv
from components.launcher.validate import schema_errors, webhook_errors

_JOBS = re.compile(r"^/apis/kubeflow\.org/v1/namespaces/([^/]+)/pytorchjobs(?:/([^/]+))?$")
_PODS = re.compile(r"^/api/v1/namespaces/([^/]+)/pods(?:/([^/]+)(/log)?)?$")


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

    Fault injection: ``kill_once`` holds pod names whose first container is SIGKILLed right after
    it starts (a lost node), to exercise ``restartPolicy: OnFailure``.

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
        self.stopping = False
        self._threads: list[threading.Thread] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
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
                kill_group(pod.current.proc, grace_s=1)
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
            return 422, _status(422, "Invalid", f"PyTorchJob.kubeflow.org \"{body['metadata'].get('name')}\" is "
                                "invalid: " + "; ".join(map(str, errs)), errs)
        errs = webhook_errors(body)
        if errs:
            return 403, _status(403, "Forbidden", "admission webhook \"validator.pytorchjob.training-operator."
                                "kubeflow.org\" denied the request: " + "; ".join(map(str, errs)), errs)
        name = body["metadata"]["name"]
        with self.cond:
            if (ns, name) in self.jobs:
                return 409, _status(409, "AlreadyExists", f"pytorchjobs.kubeflow.org \"{name}\" already exists")
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
                return 404, _status(404, "NotFound", f"pytorchjobs.kubeflow.org \"{name}\" not found")
            pods = [p for k, p in list(self.pods.items()) if p.job == name and k[0] == ns]
            for pod in pods:
                del self.pods[(ns, pod.name)]
            self._emit("DELETED", job)
        for pod in pods:
            if pod.current is not None:
                kill_group(pod.current.proc, grace_s=1)
        return 200, _status(200, "", "", status="Success")

    # operator ----------------------------------------------------------------------------------
    def _operate(self, ns: str, name: str) -> None:
        with self.cond:
            job = self.jobs[(ns, name)]
            spec = job["spec"]
            rspecs = spec["pytorchReplicaSpecs"]
            nproc = spec.get("nprocPerNode") or (None if (spec.get("elasticPolicy") or {}).get("nProcPerNode")
                                                 else "auto")  # setDefaultNprocPerNode
            total = sum(int(r.get("replicas", 1)) for r in rspecs.values())
            per_node = int(nproc) if nproc and nproc.isdigit() else 1
            master_port = free_port()  # stands for the pytorchjob-port of <job>-master-0
            backoff = (spec.get("runPolicy") or {}).get("backoffLimit")
            pods = []
            for rtype in ("Master", "Worker"):
                for index in range(int(rspecs.get(rtype, {}).get("replicas", 0))):
                    container = next(c for c in rspecs[rtype]["template"]["spec"]["containers"]
                                     if c["name"] == "pytorch")
                    rank = index + 1 if rtype == "Worker" else index
                    op_env = {"PYTHONUNBUFFERED": "1", "MASTER_PORT": str(master_port),
                              "PET_MASTER_PORT": str(master_port), "MASTER_ADDR": "127.0.0.1",
                              "PET_MASTER_ADDR": "127.0.0.1", "WORLD_SIZE": str(total * per_node),
                              "RANK": str(rank), "PET_NODE_RANK": str(rank)}
                    if nproc is not None:
                        op_env["PET_NPROC_PER_NODE"] = nproc
                    op_env["PET_NNODES"] = str(total)
                    pod = _Pod(job, rtype, index, container["image"])
                    self.pods[(ns, pod.name)] = pod
                    self.envs[pod.name] = op_env
                    pods.append((pod, container, op_env, rspecs[rtype].get("restartPolicy", "OnFailure")))
        for pod, container, op_env, _ in pods:
            self._start(pod, container, op_env)
        restarts_total = 0
        while True:
            time.sleep(0.05)
            with self.cond:
                if self.stopping or (ns, name) not in self.jobs:
                    return
                for pod, container, op_env, policy in pods:
                    c = pod.current
                    if c is None or c.exit_code is not None or c.proc.poll() is None:
                        continue
                    code = c.proc.returncode
                    c.exit_code = 128 - code if code < 0 else code  # SIGKILL -> 137, like the kubelet
                    c.finished = _now()
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
                master = pods[0][0]
                if master.phase == "Succeeded":
                    self._finish(job, pods, "Succeeded", "PyTorchJobSucceeded",
                                 f"PyTorchJob {name} is successfully completed.")
                    return
                running = master.current is not None and master.current.exit_code is None
                state = next((c for c in reversed(job["status"]["conditions"]) if c["status"] == "True"), {})
                if running and state.get("type") != "Running":
                    job["status"].setdefault("startTime", _now())
                    self._condition(job, "Running", "PyTorchJobRunning", f"PyTorchJob {name} is running.")

    def _finish(self, job: dict[str, Any], pods: list[Any], ctype: str, reason: str, msg: str) -> None:
        job["status"]["completionTime"] = _now()
        self._condition(job, ctype, reason, msg)
        for pod, *_ in pods:  # SIGKILL without waiting (we hold the lock); reader threads reap them
            if pod.current is not None and pod.current.proc.poll() is None:
                try:
                    os.killpg(pod.current.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def _start(self, pod: _Pod, container: dict[str, Any], op_env: dict[str, str], locked: bool = False) -> None:
        env = {k: os.environ[k] for k in ("PATH", "HOME", "PYTHONPATH", "OMP_NUM_THREADS", "LANG")
               if k in os.environ}
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
            os.killpg(proc.pid, signal.SIGKILL)  # a lost node: exit 137
        if not locked:
            self.cond.acquire()
        try:
            pod.current, pod.phase = run, "Running"
        finally:
            if not locked:
                self.cond.release()
        threading.Thread(target=self._read, args=(run,), daemon=True).start()

    def _read(self, run: _Container) -> None:
        assert run.proc.stdout is not None
        for line in run.proc.stdout:
            with self.cond:
                run.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        run.proc.stdout.close()
        run.proc.wait()
        with self.cond:
            run.ended = True
            self.cond.notify_all()


def _status(code: int, reason: str, message: str, errs: list[Any] = (), status: str = "Failure") -> dict[str, Any]:
    out: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": status,
                           "message": message, "reason": reason, "code": code}
    if errs:
        out["details"] = {"causes": [{"field": e.path, "message": e.message} for e in errs]}
    return out


def _selected(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, (selector or "").split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


def _make_handler(cluster: FakeCluster) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # keep test output clean
            pass

        def _send(self, code: int, body: Any, ctype: str = "application/json") -> None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _stream(self, ctype: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def _route(self, method: str) -> None:
            url = urlparse(self.path)
            q = {k: v[-1] for k, v in parse_qs(url.query).items()}
            for key in ("watch", "follow", "previous"):  # Go's ParseBool: the client sends "True"
                if key in q:
                    q[key] = "true" if q[key].lower() in ("1", "t", "true") else "false"

            cluster.requests.append((method, url.path))
            m = _JOBS.match(url.path)
            try:
                if m and method == "POST" and not m.group(2):
                    body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                    return self._send(*cluster.create_job(m.group(1), body))
                if m and method == "DELETE" and m.group(2):
                    self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
                    return self._send(*cluster.delete_job(m.group(1), m.group(2)))
                if m and method == "GET" and m.group(2):
                    with cluster.cond:
                        job = copy.deepcopy(cluster.jobs.get((m.group(1), m.group(2))))
                    if job is None:
                        return self._send(404, _status(404, "NotFound", f"pytorchjobs \"{m.group(2)}\" not found"))
                    return self._send(200, job)
                if m and method == "GET":
                    return self._jobs(m.group(1), q)
                p = _PODS.match(url.path)
                if p and method == "GET" and p.group(3):
                    return self._log(p.group(1), p.group(2), q)
                if p and method == "GET" and not p.group(2):
                    with cluster.cond:
                        items = [pod.to_json() for (ns, _), pod in cluster.pods.items()
                                 if ns == p.group(1) and _selected(pod.labels, q.get("labelSelector", ""))]
                        rv = str(cluster.rv)
                    return self._send(200, {"apiVersion": "v1", "kind": "PodList",
                                            "metadata": {"resourceVersion": rv}, "items": items})
                self._send(404, _status(404, "NotFound", f"{method} {url.path} is not served by the fake"))
            except (BrokenPipeError, ConnectionResetError):
                pass

        def _jobs(self, ns: str, q: dict[str, str]) -> None:
            field_name = q.get("fieldSelector", "").removeprefix("metadata.name=") or None

            def match(job: dict[str, Any]) -> bool:
                return job["metadata"]["namespace"] == ns and field_name in (None, job["metadata"]["name"])

            if q.get("watch") != "true":
                with cluster.cond:
                    items = [copy.deepcopy(j) for j in cluster.jobs.values() if match(j)]
                    rv = str(cluster.rv)
                return self._send(200, {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJobList",
                                        "metadata": {"resourceVersion": rv}, "items": items})
            deadline = time.monotonic() + float(q.get("timeoutSeconds", 1800))
            self._stream("application/json")
            with cluster.cond:
                if q.get("resourceVersion"):
                    since = int(q["resourceVersion"])
                    pending = [(k, o) for rv, k, o in cluster.events if rv > since and match(o)]
                else:  # no version: current objects as ADDED, then changes
                    since = cluster.rv
                    pending = [("ADDED", copy.deepcopy(j)) for j in cluster.jobs.values() if match(j)]
            while True:
                for kind, obj in pending:
                    self._chunk(json.dumps({"type": kind, "object": obj}).encode() + b"\n")
                with cluster.cond:
                    while cluster.rv == since and not cluster.stopping and time.monotonic() < deadline:
                        cluster.cond.wait(min(0.2, max(0.01, deadline - time.monotonic())))
                    if cluster.stopping or time.monotonic() >= deadline:
                        break
                    pending = [(k, o) for rv, k, o in cluster.events if rv > since and match(o)]
                    since = cluster.rv
            self._chunk(b"")

        def _log(self, ns: str, name: str, q: dict[str, str]) -> None:
            with cluster.cond:
                pod = cluster.pods.get((ns, name))
                run = None if pod is None else (pod.previous if q.get("previous") == "true" else pod.current)
            if pod is None:
                return self._send(404, _status(404, "NotFound", f"pods \"{name}\" not found"))
            if run is None:
                return self._send(400, _status(400, "BadRequest", f"container \"pytorch\" in pod \"{name}\" "
                                               "is waiting to start: ContainerCreating"))
            if q.get("follow") != "true":
                with cluster.cond:
                    lines = list(run.lines)
                if q.get("tailLines"):
                    lines = lines[-int(q["tailLines"]):] if int(q["tailLines"]) else []
                return self._send(200, "".join(f"{line}\n" for line in lines), "text/plain")
            self._stream("text/plain")
            sent = 0
            while True:
                with cluster.cond:
                    while (sent == len(run.lines) and not run.ended and not cluster.stopping
                           and cluster.pods.get((ns, name)) is pod):
                        cluster.cond.wait(0.2)
                    new = run.lines[sent:]
                    sent += len(new)
                    done = (run.ended or cluster.stopping
                            or cluster.pods.get((ns, name)) is not pod)
                if new:
                    self._chunk("".join(f"{line}\n" for line in new).encode())
                if done and not new:
                    break
            self._chunk(b"")

        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            self._route("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._route("POST")

        def do_DELETE(self) -> None:  # noqa: N802
            self._route("DELETE")

    return Handler


if __name__ == "__main__":  # manual poking: python tests/k8s/fake_apiserver.py
    with FakeCluster() as c:
        print(c.url, file=sys.stderr)
        threading.Event().wait()
