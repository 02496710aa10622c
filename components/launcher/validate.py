"""Offline validation of a PyTorchJob: the CRD's ``openAPIV3Schema`` plus the admission webhook.

Both halves are needed: the CRD schema (kubeflow/trainer@v1.9.4
``manifests/base/crds/kubeflow.org_pytorchjobs.yaml``, vendored in ``manifests/crds/``) has no
enums and does not require an image, and the validating webhook
(``pkg/webhooks/pytorch/pytorchjob_webhook.go``) adds the rules re-implemented in
:func:`webhook_errors`. Unknown fields are errors here (like ``kubectl --validate=strict``);
the API server would silently prune them, which hides typos such as ``nprocPerNodes``.

Errors carry Kubernetes field paths (``spec.pytorchReplicaSpecs[Master].replicas``), the form the
API server and the webhook use in their messages.
"""

from __future__ import annotations

import copy
import functools
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CRD_ENV = "OCRFLOW_PYTORCHJOB_CRD"
_CRD_REL = Path("manifests") / "crds" / "kubeflow.org_pytorchjobs.yaml"
_CRD_CANDIDATES = (
    Path(__file__).resolve().parents[2] / _CRD_REL,  # source checkout
    Path("/opt/ocrflow") / _CRD_REL,  # the runtime image (see Dockerfile)
)
VALID_REPLICA_TYPES = ("Master", "Worker")
MANAGED_BY = ("kubeflow.org/training-operator", "kueue.x-k8s.io/multikueue")
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS1123_SUB = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@dataclass(frozen=True)
class FieldError:
    """One problem at a Kubernetes field path."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class InvalidPyTorchJob(ValueError):
    """Raised by :func:`check_pytorchjob`; ``errors`` lists every problem."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("invalid PyTorchJob:\n  " + "\n  ".join(str(e) for e in errors))


def crd_path() -> Path:
    """Where the vendored CRD lies (``$OCRFLOW_PYTORCHJOB_CRD`` wins)."""
    if os.environ.get(CRD_ENV):
        return Path(os.environ[CRD_ENV])
    for cand in _CRD_CANDIDATES:
        if cand.is_file():
            return cand
    raise FileNotFoundError(f"PyTorchJob CRD not found; set {CRD_ENV} (looked in {_CRD_CANDIDATES})")


def _strict(schema: Any) -> Any:
    """Make objects with declared properties reject unknown fields (unless preserve-unknown)."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@functools.lru_cache(maxsize=4)
def _validator(path: str, version: str = "v1") -> Any:
    import jsonschema

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(path, encoding="utf-8") as fh:
        crd = yaml.load(fh, Loader=loader)
    for ver in crd["spec"]["versions"]:
        if ver["name"] == version:
            schema = _strict(copy.deepcopy(ver["schema"]["openAPIV3Schema"]))
            return jsonschema.Draft7Validator(schema)
    raise ValueError(f"{path}: no version {version}")


def _field_path(parts: Iterable[Any]) -> str:
    out = ""
    parent = None
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif parent == "pytorchReplicaSpecs":
            out += f"[{part}]"  # map keys, like field.NewPath(...).Key(...)
        else:
            out += ("." if out else "") + str(part)
        parent = part
    return out or "<root>"


def schema_errors(job: Mapping[str, Any], crd: str | os.PathLike[str] | None = None) -> list[FieldError]:
    """Errors of ``job`` against the CRD's ``openAPIV3Schema`` (strict about unknown fields)."""
    validator = _validator(str(crd or crd_path()))
    errors = []
    for err in validator.iter_errors(dict(job)):
        parts = list(err.absolute_path)
        message = err.message
        if err.validator == "required":
            missing = re.match(r"'([^']+)' is a required property", err.message)
            if missing:
                parts.append(missing.group(1))
                message = "Required value"
        elif err.validator == "additionalProperties":
            extra = re.findall(r"'([^']+)'", err.message.split("(")[-1])
            for name in extra or ["?"]:
                errors.append(FieldError(_field_path([*parts, name]), "field not declared in schema"))
            continue
        errors.append(FieldError(_field_path(parts), message))
    return sorted(set(errors), key=lambda e: (e.path, e.message))


def _metadata_errors(meta: Any) -> list[FieldError]:
    errs: list[FieldError] = []
    if not isinstance(meta, Mapping):
        return [FieldError("metadata", "Required value")]
    name = meta.get("name", "")
    if not isinstance(name, str) or not _DNS1035.match(name) or len(name) > 63:
        errs.append(FieldError("metadata.name", f"Invalid value {name!r}: should match a DNS-1035 label "
                                               "(lowercase alphanumerics and '-', starting with a letter, <= 63)"))
    for key, value in (meta.get("labels") or {}).items():
        prefix, _, lname = str(key).rpartition("/")
        if (not _LABEL_NAME.match(lname) or len(lname) > 63
                or (prefix and (not _DNS1123_SUB.match(prefix) or len(prefix) > 253))):
            errs.append(FieldError(f"metadata.labels[{key}]", "Invalid label key"))
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            errs.append(FieldError(f"metadata.labels[{key}]", f"Invalid label value {value!r}"))
    return errs


def webhook_errors(job: Mapping[str, Any]) -> list[FieldError]:
    """The rules of the v1.9.4 validating webhook (``validatePyTorchJob``), for create."""
    errs = _metadata_errors(job.get("metadata"))
    spec = job.get("spec") or {}
    run_policy = spec.get("runPolicy") or {}
    if run_policy.get("managedBy") is not None and run_policy["managedBy"] not in MANAGED_BY:
        errs.append(FieldError("spec.runPolicy.managedBy", f"Unsupported value {run_policy['managedBy']!r}"))
    rspecs = spec.get("pytorchReplicaSpecs")
    if spec.get("elasticPolicy") is not None:
        if not isinstance(rspecs, Mapping) or "Worker" not in rspecs:
            errs.append(FieldError("spec.pytorchReplicaSpecs[Worker]",
                                   "Required value: must be configured if elastic policy is used"))
        if spec["elasticPolicy"].get("nProcPerNode") is not None and spec.get("nprocPerNode") is not None:
            errs.append(FieldError("spec.elasticPolicy.nProcPerNode",
                                   "Forbidden: must not be used with spec.nprocPerNode"))
    if not rspecs:
        errs.append(FieldError("spec.pytorchReplicaSpecs", "Required value: must be required"))
        return errs
    for rtype, rspec in rspecs.items():
        role = f"spec.pytorchReplicaSpecs[{rtype}]"
        cpath = f"{role}.template.spec.containers"
        if rtype not in VALID_REPLICA_TYPES:
            errs.append(FieldError(role, f"Unsupported value {rtype!r}: supported values: Master, Worker"))
        containers = (((rspec or {}).get("template") or {}).get("spec") or {}).get("containers") or []
        if not containers:
            errs.append(FieldError(cpath, "Required value: must be specified"))
        if not any(c.get("name") == "pytorch" for c in containers):
            errs.append(FieldError(cpath, "Required value: must have at least one container with name pytorch"))
        for idx, cont in enumerate(containers):
            if not cont.get("image"):
                errs.append(FieldError(f"{cpath}[{idx}].image", "Required value: must be required"))
        replicas = (rspec or {}).get("replicas")
        if rtype == "Master" and replicas != 1:
            errs.append(FieldError(f"{role}.replicas", "Forbidden: must be 1"))
        elif rtype != "Master" and isinstance(replicas, int) and replicas < 1:
            errs.append(FieldError(f"{role}.replicas", "Forbidden: must be at least 1"))
    return errs


def validate_pytorchjob(job: Mapping[str, Any], crd: str | os.PathLike[str] | None = None) -> list[FieldError]:
    """All schema and webhook errors of ``job`` (empty when it would be admitted)."""
    errs = []
    if job.get("apiVersion") != "kubeflow.org/v1":
        errs.append(FieldError("apiVersion", f"must be kubeflow.org/v1, got {job.get('apiVersion')!r}"))
    if job.get("kind") != "PyTorchJob":
        errs.append(FieldError("kind", f"must be PyTorchJob, got {job.get('kind')!r}"))
    errs += schema_errors(job, crd)
    errs += webhook_errors(job)
    return errs


def check_pytorchjob(job: Mapping[str, Any], crd: str | os.PathLike[str] | None = None) -> None:
    """Raise :class:`InvalidPyTorchJob` listing every error, or return None."""
    errs = validate_pytorchjob(job, crd)
    if errs:
        raise InvalidPyTorchJob(errs)
