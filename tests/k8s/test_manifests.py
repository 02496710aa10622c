"""Every manifest validates offline against the Kubernetes OpenAPI schemas; RBAC is least privilege."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

kubernetes_validate = pytest.importorskip("kubernetes_validate")

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
K8S_VERSION = "1.33.0"  # a version kubernetes-validate ships (strict: unknown fields are errors)
CR_KINDS = {"PodMonitor", "CustomResourceDefinition"}  # not in the core OpenAPI schemas


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _resources() -> list[tuple[str, dict]]:
    out = []
    for path in sorted(MANIFESTS.rglob("*.yaml")):
        if path.name == "kustomization.yaml" or path.parent.name == "crds":
            continue
        out += [(f"{path.relative_to(MANIFESTS)}#{i}", doc) for i, doc in enumerate(_docs(path))]
    return out


RESOURCES = _resources()


@pytest.mark.parametrize("where, doc", RESOURCES, ids=[w for w, _ in RESOURCES])
def test_manifest_validates_against_kubernetes_schema(where, doc):
    if doc["kind"] in CR_KINDS:
        pytest.skip("custom resource: see test_podmonitor_structure")
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_validator_catches_a_broken_manifest():
    role = _docs(MANIFESTS / "base" / "role.yaml")[0]
    role["rules"][0]["verb"] = role["rules"][0].pop("verbs")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(role, K8S_VERSION, strict=True)


def test_every_file_is_listed_in_its_kustomization():
    for kfile in MANIFESTS.rglob("kustomization.yaml"):
        kust = yaml.safe_load(kfile.read_text())
        assert kust["apiVersion"] == "kustomize.config.k8s.io/v1beta1" and kust["kind"] == "Kustomization"
        listed = set(kust["resources"])
        present = {p.name for p in kfile.parent.glob("*.yaml")} - {"kustomization.yaml"}
        assert listed == present, kfile


# Kubernetes client method -> the (apiGroup, resource, verb) it needs; a watch is a list call
# streamed with ``watch.Watch().stream(...)`` and needs "watch" too.
_API_NEEDS = {"create_namespaced_custom_object": ("kubeflow.org", "pytorchjobs", "create"),
              "get_namespaced_custom_object": ("kubeflow.org", "pytorchjobs", "get"),
              "list_namespaced_custom_object": ("kubeflow.org", "pytorchjobs", "list"),
              "delete_namespaced_custom_object": ("kubeflow.org", "pytorchjobs", "delete"),
              "list_namespaced_pod": ("", "pods", "list"),
              "read_namespaced_pod": ("", "pods", "get"),
              "read_namespaced_pod_log": ("", "pods/log", "get")}


def _launcher_api_calls() -> set[tuple[str, str, str]]:
    """What components/launcher/client.py needs, read from its source (every client method it calls)."""
    import re

    src = (MANIFESTS.parent / "components" / "launcher" / "client.py").read_text(encoding="utf-8")
    verbs = "create|get|list|read|delete|patch|replace|connect|watch"
    calls = set(re.findall(rf"\.((?:{verbs})_(?:namespaced_)?\w+)\b", src))
    calls = {c for c in calls if not c.startswith(("get_", "read_")) or "namespaced" in c}  # dict.get etc.
    assert calls <= set(_API_NEEDS), f"the launcher calls {calls - set(_API_NEEDS)}: map it to a verb"
    needs = {_API_NEEDS[c] for c in calls}
    for method in re.findall(r"\.stream\(\s*\w+\.(\w+)", src):
        group, resource, _ = _API_NEEDS[method]
        needs.add((group, resource, "watch"))
    return needs


def test_role_grants_exactly_what_the_launcher_calls():
    """#15 item 2: the launcher's Role holds the verbs client.py uses, not one more."""
    role = _docs(MANIFESTS / "base" / "role.yaml")[0]
    assert all("resourceNames" not in rule and "nonResourceURLs" not in rule for rule in role["rules"])
    granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
               for v in rule["verbs"]}
    needed = _launcher_api_calls()
    assert ("kubeflow.org", "pytorchjobs", "watch") in needed  # the parser sees the watch
    assert granted == needed, f"missing {needed - granted}, unused {granted - needed}"
    assert not any(r in ("secrets", "pods/exec", "pods/attach", "serviceaccounts/token") or v in ("*", "escalate", "bind",
                                                                                               "impersonate")
                   for _, r, v in granted)


def test_replicas_have_their_own_account_with_no_rbac_and_no_token():
    """#15 item 2: the launcher's account is bound to the Role; the replicas' account to nothing."""
    binding = _docs(MANIFESTS / "base" / "rolebinding.yaml")[0]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "ocrflow-launcher"}
    launcher, replica = _docs(MANIFESTS / "base" / "serviceaccount.yaml")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": launcher["metadata"]["name"],
                                    "namespace": "ocrflow"}]
    from components.launcher.pytorchjob import DEFAULT_SERVICE_ACCOUNT, PyTorchJobSpec, build_pytorchjob

    assert replica["metadata"]["name"] == DEFAULT_SERVICE_ACCOUNT != launcher["metadata"]["name"]
    assert replica["automountServiceAccountToken"] is False
    bound = [s["name"] for path in MANIFESTS.rglob("*.yaml") for d in _docs(path)
             if d.get("kind") in ("RoleBinding", "ClusterRoleBinding") for s in d.get("subjects", [])]
    assert DEFAULT_SERVICE_ACCOUNT not in bound
    # the generated job uses that account on every replica and mounts no token either way
    job = build_pytorchjob(PyTorchJobSpec("sa-check", ["-m", "ocr_core.train", "-c", "x.yml"], workers=2,
                                          namespace="ocrflow"))
    for rtype, rspec in job["spec"]["pytorchReplicaSpecs"].items():
        pod = rspec["template"]["spec"]
        assert pod["serviceAccountName"] == replica["metadata"]["name"], rtype
        assert pod["automountServiceAccountToken"] is False, rtype
    from components.launcher.validate import validate_pytorchjob

    assert validate_pytorchjob(job) == []  # the vendored CRD schema accepts the field


def test_secret_is_a_placeholder_with_kfp_keys():
    secret = _docs(MANIFESTS / "base" / "objectstore-secret.yaml")[0]
    assert set(secret["stringData"]) == {"accesskey", "secretkey"}
    assert set(secret["stringData"].values()) == {"REPLACE_ME"}


def test_objectstore_endpoint_config_is_what_the_pipeline_reads():
    """#15 item 4: steps need an explicit endpoint; the ConfigMap the DAG maps to OCRFLOW_S3_ENDPOINT ships."""
    from ocr_core.storage.s3 import S3Config
    from pipelines.ocr_train_pipeline import OBJECT_STORE_CONFIG

    cm = _docs(MANIFESTS / "base" / "objectstore-config.yaml")[0]
    assert cm["kind"] == "ConfigMap" and cm["metadata"]["name"] == OBJECT_STORE_CONFIG
    assert set(cm["data"]) == {"endpoint"}
    cfg = S3Config.from_env({"OCRFLOW_S3_ENDPOINT": cm["data"]["endpoint"]})
    assert not cfg.endpoint.endswith("amazonaws.com")  # a placeholder never points at AWS


def test_podmonitor_structure():
    from components.launcher.pytorchjob import (
        COMMON_LABELS,
        METRICS_PORT_NAME,
        PyTorchJobSpec,
        build_pytorchjob,
    )

    pm = _docs(MANIFESTS / "monitoring" / "podmonitor.yaml")[0]
    assert (pm["apiVersion"], pm["kind"]) == ("monitoring.coreos.com/v1", "PodMonitor")
    assert set(pm) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(pm["spec"]) <= {"selector", "namespaceSelector", "podMetricsEndpoints", "jobLabel"}
    endpoints = pm["spec"]["podMetricsEndpoints"]
    assert [e["port"] for e in endpoints] == [METRICS_PORT_NAME]
    # the selector matches the pods the builder makes, and they expose a port with that name
    job = build_pytorchjob(PyTorchJobSpec("x", ["-m", "ocr_core.train"], workers=2))
    tmpl = job["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]
    assert pm["spec"]["selector"]["matchLabels"].items() <= tmpl["metadata"]["labels"].items()
    assert pm["spec"]["selector"]["matchLabels"].items() <= COMMON_LABELS.items()
    assert METRICS_PORT_NAME in [p["name"] for p in tmpl["spec"]["containers"][0]["ports"]]
