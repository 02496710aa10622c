"""A loopback fake of the KFP v2beta1 REST API: records requests, answers what kfp.Client and the kfp CLI need.

It cannot drift from the real API silently: every body it answers with is checked against the
``kfp-server-api`` models (the generated client the kfp SDK uses) before it is sent: deserialized
through that package's ``ApiClient``, and walked field by field against the models' attribute maps
(unknown fields, wrong JSON types and enum values outside a model's ``allowable_values`` are errors).
A bad answer is a 500 plus an entry in ``errors``; leaving the ``with`` block raises on any.

Like the API server (``backend/src/apiserver/template/v2_template.go``, ``validatePipelineJobInputs``),
creating a run or a recurring run checks the runtime parameters against the pipeline's root input
definitions: required ones present, no unknown ones, JSON types matching ``parameterType`` (so a
number sent as a string is refused with the server's message and a 400).
"""

from __future__ import annotations

import datetime
import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

API = "/apis/v2beta1"
RESPONSE_MODELS = [  # (method, path regex, kfp_server_api model of the 200 answer)
    ("GET", rf"{API}/healthz", "V2beta1GetHealthzResponse"),
    ("GET", rf"{API}/experiments", "V2beta1ListExperimentsResponse"),
    ("POST", rf"{API}/experiments", "V2beta1Experiment"),
    ("GET", rf"{API}/experiments/[^/]+", "V2beta1Experiment"),
    ("POST", rf"{API}/runs", "V2beta1Run"),
    ("GET", rf"{API}/runs/[^/]+", "V2beta1Run"),
    ("POST", rf"{API}/recurringruns", "V2beta1RecurringRun"),
    ("GET", rf"{API}/recurringruns", "V2beta1ListRecurringRunsResponse"),
    ("GET", rf"{API}/recurringruns/[^/]+", "V2beta1RecurringRun"),
]
ERROR_MODEL = "GoogleRpcStatus"
_JSON_TYPES = {"str": str, "bool": bool, "int": int, "float": (int, float), "object": object}
_PARAM_KINDS = {"NUMBER_INTEGER": (int, float), "NUMBER_DOUBLE": (int, float), "STRING": str, "BOOLEAN": bool,
                "LIST": list, "STRUCT": dict}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _walk(value: Any, type_name: str, path: str, errors: list[str]) -> None:
    """Check a JSON value against a kfp_server_api type name (``V2beta1Run``, ``list[...]``, ``dict(str, ...)``)."""
    import kfp_server_api

    if value is None:
        return
    if type_name.startswith("list["):
        if not isinstance(value, list):
            errors.append(f"{path}: expected a list, got {type(value).__name__}")
            return
        for i, v in enumerate(value):
            _walk(v, type_name[5:-1], f"{path}[{i}]", errors)
    elif type_name.startswith("dict("):
        if not isinstance(value, dict):
            errors.append(f"{path}: expected an object, got {type(value).__name__}")
            return
        inner = type_name[5:-1].split(",", 1)[1].strip()
        for k, v in value.items():
            _walk(v, inner, f"{path}.{k}", errors)
    elif type_name == "datetime":
        try:
            datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            errors.append(f"{path}: {value!r} is not an RFC 3339 time")
    elif type_name in _JSON_TYPES:
        want = _JSON_TYPES[type_name]
        if not isinstance(value, want) or (type_name in ("int", "float") and isinstance(value, bool)):
            errors.append(f"{path}: expected JSON {type_name}, got {type(value).__name__} {value!r}")
    else:
        klass = getattr(kfp_server_api.models, type_name)
        if not klass.openapi_types:  # an enum: a string out of allowable_values
            if value not in getattr(klass, "allowable_values", [value]):
                errors.append(f"{path}: {value!r} is not a {type_name} ({klass.allowable_values})")
            return
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a {type_name} object, got {type(value).__name__}")
            return
        json_to_attr = {j: a for a, j in klass.attribute_map.items()}
        for key, v in value.items():
            if key not in json_to_attr:
                errors.append(f"{path}.{key}: unknown field of {type_name} (fields: {sorted(json_to_attr)})")
            else:
                _walk(v, klass.openapi_types[json_to_attr[key]], f"{path}.{key}", errors)


def check_against_model(body: Any, model: str) -> list[str]:
    """Deserialize ``body`` into the kfp_server_api ``model`` with its ApiClient; returns what is wrong."""
    import kfp_server_api

    errors: list[str] = []
    try:
        kfp_server_api.ApiClient().deserialize(SimpleNamespace(data=json.dumps(body)), model)
    except Exception as exc:  # noqa: BLE001 - any failure to build the model is the finding
        errors.append(f"{model}: kfp_server_api.ApiClient cannot deserialize: {exc}")
    _walk(body, model, model, errors)
    return errors


def validate_runtime_parameters(spec: dict, params: dict) -> str | None:
    """The API server's check of a job's runtime parameters against the root inputs; the error message or None."""
    defs = ((spec.get("root") or {}).get("inputDefinitions") or {}).get("parameters") or {}
    for name, d in defs.items():
        if name not in params:
            if not d.get("isOptional") and "defaultValue" not in d:
                return f"parameter {name} is not optional, yet has neither default value nor user provided value"
            continue
        want = _PARAM_KINDS.get(d.get("parameterType"))
        value = params[name]
        if want is None or not isinstance(value, want) or (want is not bool and isinstance(value, bool)):
            return (f"invalid pipeline job inputs: input parameter {name} requires type {d.get('parameterType')}, "
                    f"but the parameter value {value!r} is not of that value type")
    extra = sorted(set(params) - set(defs))
    return f"parameter(s) provided are not required by pipeline: {', '.join(extra)}" if extra else None


class FakeKFP:
    """``with FakeKFP() as fake:`` serves on ``fake.url``; ``run_state`` is what GET /runs/{id} reports.

    A list of states is reported one per GET (the last one from then on): a run that is RUNNING when
    first polled and ends later.
    """

    def __init__(self, run_state: str | list[str] = "SUCCEEDED") -> None:
        self.requests: list[dict] = []
        self.errors: list[str] = []
        self.experiments: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        self.recurring_runs: dict[str, dict] = {}
        self.run_states = [run_state] if isinstance(run_state, str) else list(run_state)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def _reply(self, body: dict, code: int = 200) -> None:
                path = urlsplit(self.path).path
                model = ERROR_MODEL if code >= 400 else next(
                    (m for meth, rx, m in RESPONSE_MODELS if meth == self.command and re.fullmatch(rx, path)), None)
                problems = check_against_model(body, model) if model else [f"{self.command} {path}: no model"]
                if problems:
                    fake.errors.extend(problems)
                    body, code = {"code": 13, "message": "fake answered off-schema", "details": []}, 500
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _refuse(self, message: str, code: int = 400) -> None:
                self._reply({"code": 3, "message": message, "details": []}, code)

            def _record(self) -> tuple[str, dict, dict]:
                url = urlsplit(self.path)
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                body = json.loads(raw) if raw.startswith(b"{") else {}
                fake.requests.append({"method": self.command, "path": url.path, "query": parse_qs(url.query),
                                      "body": body, "headers": {k.lower(): v for k, v in self.headers.items()}})
                return url.path, parse_qs(url.query), body

            def do_GET(self) -> None:  # noqa: N802
                path, query, _ = self._record()
                tail = path.rsplit("/", 1)[1]
                if path == f"{API}/healthz":
                    self._reply({"multi_user": False, "pipeline_store": "database"})
                elif path == f"{API}/experiments":
                    flt = json.dumps(query.get("filter", [""])[0])
                    hits = [e for e in fake.experiments.values() if e["display_name"] in flt]
                    self._reply({"experiments": hits, "total_size": len(hits)} if hits else {})
                elif path.startswith(f"{API}/experiments/") and tail in fake.experiments:
                    self._reply(fake.experiments[tail])
                elif path.startswith(f"{API}/runs/") and tail in fake.runs:
                    state = fake.run_states.pop(0) if len(fake.run_states) > 1 else fake.run_states[0]
                    ended = {"finished_at": _now()} if state in ("SUCCEEDED", "FAILED", "CANCELED", "SKIPPED") else {}
                    self._reply({**fake.runs[tail], "state": state, **ended})
                elif path == f"{API}/recurringruns":
                    runs = list(fake.recurring_runs.values())
                    self._reply({"recurringRuns": runs, "total_size": len(runs)} if runs else {})
                elif path.startswith(f"{API}/recurringruns/") and tail in fake.recurring_runs:
                    self._reply(fake.recurring_runs[tail])
                else:
                    self._refuse(f"{path} not found", 404)

            def _job_inputs_error(self, body: dict) -> str | None:
                spec = body.get("pipeline_spec") or {}
                spec = spec.get("pipeline_spec", spec)  # {pipeline_spec, platform_spec} when a platform doc exists
                return validate_runtime_parameters(spec, (body.get("runtime_config") or {}).get("parameters") or {})

            def do_POST(self) -> None:  # noqa: N802
                path, _, body = self._record()
                if path == f"{API}/experiments":
                    exp = {**body, "experiment_id": str(uuid.uuid4()), "created_at": _now(),
                           "storage_state": "AVAILABLE"}
                    fake.experiments[exp["experiment_id"]] = exp
                    self._reply(exp)
                elif path in (f"{API}/runs", f"{API}/recurringruns") and (err := self._job_inputs_error(body)):
                    self._refuse(err)
                elif path == f"{API}/runs":
                    run = {**body, "run_id": str(uuid.uuid4()), "state": "PENDING", "created_at": _now(),
                           "storage_state": "AVAILABLE"}
                    fake.runs[run["run_id"]] = run
                    self._reply(run)
                elif path == f"{API}/recurringruns":
                    job = {**body, "recurring_run_id": str(uuid.uuid4()), "created_at": _now(), "updated_at": _now(),
                           "status": "ENABLED" if body.get("mode") == "ENABLE" else "DISABLED"}
                    if "max_concurrency" in job:  # int64: the server's JSON answers it as a string
                        job["max_concurrency"] = str(job["max_concurrency"])
                    fake.recurring_runs[job["recurring_run_id"]] = job
                    self._reply(job)
                else:
                    self._refuse(f"{path} not found", 404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def posts(self, path: str) -> list[dict]:
        """Bodies POSTed to ``/apis/v2beta1/<path>``, in order."""
        return [r["body"] for r in self.requests if r["method"] == "POST" and r["path"] == f"{API}/{path}"]

    def __enter__(self) -> FakeKFP:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self.errors and exc[0] is None:
            raise AssertionError("the fake KFP server answered off the kfp-server-api schema:\n"
                                 + "\n".join(self.errors))
