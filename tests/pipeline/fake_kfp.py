"""A loopback fake of the KFP v2beta1 REST API: records requests, answers what kfp.Client needs."""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class FakeKFP:
    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.experiments: dict[str, dict] = {}
        self.recurring_runs: dict[str, dict] = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def _reply(self, body: dict, code: int = 200) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _record(self) -> tuple[str, dict, dict]:
                url = urlsplit(self.path)
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                body = json.loads(raw) if raw.startswith(b"{") else {}
                fake.requests.append({"method": self.command, "path": url.path, "query": parse_qs(url.query),
                                      "body": body})
                return url.path, parse_qs(url.query), body

            def do_GET(self) -> None:  # noqa: N802
                path, query, _ = self._record()
                if path.endswith("/healthz"):
                    self._reply({"multi_user": False, "pipeline_store_type": "database"})
                elif path == "/apis/v2beta1/experiments":
                    flt = json.dumps(query.get("filter", [""])[0])
                    hits = [e for e in fake.experiments.values() if e["display_name"] in flt]
                    self._reply({"experiments": hits, "total_size": len(hits)} if hits else {})
                elif path.startswith("/apis/v2beta1/experiments/"):
                    self._reply(fake.experiments[path.rsplit("/", 1)[1]])
                elif path == "/apis/v2beta1/recurringruns":
                    runs = list(fake.recurring_runs.values())
                    self._reply({"recurringRuns": runs, "total_size": len(runs)} if runs else {})
                elif path.startswith("/apis/v2beta1/recurringruns/"):
                    self._reply(fake.recurring_runs[path.rsplit("/", 1)[1]])
                else:
                    self._reply({})

            def do_POST(self) -> None:  # noqa: N802
                path, _, body = self._record()
                if path == "/apis/v2beta1/experiments":
                    exp = {**body, "experiment_id": str(uuid.uuid4())}
                    fake.experiments[exp["experiment_id"]] = exp
                    self._reply(exp)
                elif path == "/apis/v2beta1/runs":
                    self._reply({**body, "run_id": str(uuid.uuid4()), "state": "PENDING"})
                elif path == "/apis/v2beta1/recurringruns":
                    job = {**body, "recurring_run_id": str(uuid.uuid4()), "status": "ENABLED"}
                    fake.recurring_runs[job["recurring_run_id"]] = job
                    self._reply(job)
                else:
                    self._reply({}, 404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeKFP:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
