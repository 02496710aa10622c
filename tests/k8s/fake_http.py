"""The HTTP surface of the fake Kubernetes API server (``fake_apiserver.FakeCluster``).

Routes what ``components/launcher/client.py`` calls: PyTorchJobs create/get/list/watch/delete,
pods list, pod log (``follow``, ``tailLines``, ``previous``). Watches and followed logs are
chunked HTTP/1.1 streams of lines; errors are ``Status`` objects like the API server's.
"""

from __future__ import annotations

import copy
import json
import re
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse

if TYPE_CHECKING:
    from tests.k8s.fake_apiserver import FakeCluster

_JOBS = re.compile(r"^/apis/kubeflow\.org/v1/namespaces/([^/]+)/pytorchjobs(?:/([^/]+))?$")
_PODS = re.compile(r"^/api/v1/namespaces/([^/]+)/pods(?:/([^/]+)(/log)?)?$")


def status_body(code: int, reason: str, message: str, errs: list[Any] = (), status: str = "Failure") -> dict[str, Any]:
    out: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": status,
                           "message": message, "reason": reason, "code": code}
    if errs:
        out["details"] = {"causes": [{"field": e.path, "message": e.message} for e in errs]}
    return out


def selected(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, (selector or "").split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


def make_handler(cluster: FakeCluster) -> type[BaseHTTPRequestHandler]:
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
                        return self._send(404, status_body(404, "NotFound", f"pytorchjobs \"{m.group(2)}\" not found"))
                    return self._send(200, job)
                if m and method == "GET":
                    return self._jobs(m.group(1), q)
                p = _PODS.match(url.path)
                if p and method == "GET" and p.group(3):
                    return self._log(p.group(1), p.group(2), q)
                if p and method == "GET" and not p.group(2):
                    with cluster.cond:
                        items = [pod.to_json() for (ns, _), pod in cluster.pods.items()
                                 if ns == p.group(1) and selected(pod.labels, q.get("labelSelector", ""))]
                        rv = str(cluster.rv)
                    return self._send(200, {"apiVersion": "v1", "kind": "PodList",
                                            "metadata": {"resourceVersion": rv}, "items": items})
                self._send(404, status_body(404, "NotFound", f"{method} {url.path} is not served by the fake"))
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
                return self._send(404, status_body(404, "NotFound", f"pods \"{name}\" not found"))
            if pod.lost:  # the API server proxies logs from the kubelet, which is gone with its node
                return self._send(500, status_body(500, "InternalError", f"Get \"https://node-of-{name}:10250/"
                                                   f"containerLogs/{ns}/{name}/pytorch\": dial tcp: i/o timeout"))
            if run is None:
                return self._send(400, status_body(400, "BadRequest", f"container \"pytorch\" in pod \"{name}\" "
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
