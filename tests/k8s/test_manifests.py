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


# --- the admission policy: jobs the launcher creates run as ocrflow-replica (#15) ------------------
# The policy's CEL is evaluated with cel-python (a CEL implementation independent of ours) the way the
# API server applies a ValidatingAdmissionPolicy: resource rules, then matchConditions (all true, else
# the request is not matched), then variables in order, then every validation (a false one denies with
# its message). cel-python works on the JSON, where the API server works on CRD-typed objects: its type
# checker and cost limits are not exercised here, and nothing here ran on a real API server.
POLICY_FILE = MANIFESTS / "base" / "admission-policy.yaml"
TRAINER = "system:serviceaccount:ocrflow:ocrflow-trainer"


def _rule_matches(rule: dict, request: dict) -> bool:
    res = request["resource"]
    return all(want in rule[key] or "*" in rule[key] for key, want in
               (("apiGroups", res["group"]), ("apiVersions", res["version"]), ("resources", res["resource"]),
                ("operations", request["operation"])))


def _admit(policy: dict, request: dict) -> list[str] | None:
    """None when the policy does not match ``request``; else the messages of the failed validations."""
    import celpy

    env = celpy.Environment()

    def cel(expr: str, activation: dict):
        return env.program(env.compile(expr)).evaluate(activation)

    spec = policy["spec"]
    if not any(_rule_matches(r, request) for r in spec["matchConstraints"]["resourceRules"]):
        return None
    activation = {"request": celpy.json_to_cel(request), "object": celpy.json_to_cel(request["object"]),
                  "oldObject": celpy.json_to_cel(request.get("oldObject"))}
    if not all(cel(c["expression"], activation) for c in spec.get("matchConditions", [])):
        return None
    variables: dict = {}
    for var in spec.get("variables", []):
        activation["variables"] = celpy.celtypes.MapType(variables)
        variables[celpy.celtypes.StringType(var["name"])] = cel(var["expression"], activation)
    activation["variables"] = celpy.celtypes.MapType(variables)
    return [v["message"] for v in spec["validations"] if not cel(v["expression"], activation)]


def _dry_run_job() -> dict:
    """The PyTorchJob ``ocrflow launch --dry-run`` prints (Master + 2 Workers)."""
    import io
    from contextlib import redirect_stdout

    from components.launcher import cli

    out = io.StringIO()
    with redirect_stdout(out):
        assert cli.main(["--dry-run", "-c", "configs/det/ch_PP-OCRv3_det_student.yml", "--name", "vap-check",
                         "--namespace", "ocrflow", "--workers", "2"]) == 0
    return yaml.safe_load(out.getvalue())


def _request(job: dict, username: str = TRAINER, operation: str = "CREATE") -> dict:
    return {"operation": operation, "namespace": job["metadata"]["namespace"], "userInfo": {"username": username},
            "resource": {"group": "kubeflow.org", "version": "v1", "resource": "pytorchjobs"},
            "kind": {"group": "kubeflow.org", "version": "v1", "kind": "PyTorchJob"},
            "object": job, "oldObject": job if operation == "UPDATE" else None}


def _pod(job: dict, rtype: str) -> dict:
    return job["spec"]["pytorchReplicaSpecs"][rtype]["template"]["spec"]


def _message(policy: dict, needle: str) -> str:
    (msg,) = [v["message"] for v in policy["spec"]["validations"] if needle in v["message"]]
    return msg


def test_admission_policy_names_what_the_code_and_the_crd_use():
    from components.launcher.pytorchjob import DEFAULT_SERVICE_ACCOUNT

    policy, binding = _docs(POLICY_FILE)
    assert (policy["kind"], binding["kind"]) == ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
    assert binding["spec"] == {"policyName": policy["metadata"]["name"], "validationActions": ["Deny"]}
    assert policy["spec"]["failurePolicy"] == "Fail"
    crd = _docs(MANIFESTS / "crds" / "kubeflow.org_pytorchjobs.yaml")[0]["spec"]
    (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rule == {"apiGroups": [crd["group"]], "apiVersions": [v["name"] for v in crd["versions"]],
                    "operations": ["CREATE", "UPDATE"], "resources": [crd["names"]["plural"]]}
    launcher = _docs(MANIFESTS / "base" / "serviceaccount.yaml")[0]["metadata"]["name"]
    assert f":{launcher}$'" in policy["spec"]["matchConditions"][0]["expression"]
    assert f"== '{DEFAULT_SERVICE_ACCOUNT}'" in yaml.safe_dump(policy["spec"]["validations"], width=10**6)


def test_admission_policy_admits_the_launchers_job():
    pytest.importorskip("celpy")
    from components.launcher.validate import validate_pytorchjob

    policy = _docs(POLICY_FILE)[0]
    job = _dry_run_job()
    assert set(job["spec"]["pytorchReplicaSpecs"]) == {"Master", "Worker"} and validate_pytorchjob(job) == []
    assert _admit(policy, _request(job)) == []
    assert _admit(policy, _request(job, operation="UPDATE")) == []
    # the launcher's account of any namespace is held to it (the pattern names no namespace)
    assert _admit(policy, _request(job, username="system:serviceaccount:team-a:ocrflow-trainer")) == []


def _set(rtype: str, **fields):
    return lambda job: _pod(job, rtype).update(fields)


def _add_volume(rtype: str, volume: dict):
    def mutate(job):
        _pod(job, rtype).setdefault("volumes", []).append(volume)
    return mutate


def _container_security(rtype: str, key: str, init: bool = False):
    def mutate(job):
        pod = _pod(job, rtype)
        if init:
            pod["initContainers"] = [{"name": "setup", "image": "busybox", "securityContext": {"privileged": True}}]
        else:
            pod["containers"][0].setdefault("securityContext", {})[key] = True
    return mutate


def _drop(rtype: str, key: str):
    return lambda job: _pod(job, rtype).pop(key)


_DENIED = [  # (how the job is changed, a word of the one message it is denied with)
    (_set("Master", serviceAccountName="default-editor"), "serviceAccountName"),
    (_set("Worker", serviceAccountName="default-editor"), "serviceAccountName"),  # the Worker replica only
    (_drop("Worker", "serviceAccountName"), "serviceAccountName"),  # would run as the namespace's `default`
    (_set("Master", automountServiceAccountToken=True), "automountServiceAccountToken"),
    (_set("Worker", automountServiceAccountToken=True), "automountServiceAccountToken"),
    (_drop("Worker", "automountServiceAccountToken"), "automountServiceAccountToken"),
    (_add_volume("Worker", {"name": "host", "hostPath": {"path": "/"}}), "hostPath"),
    (_container_security("Worker", "privileged"), "privileged"),
    (_container_security("Master", "privileged", init=True), "privileged"),
    (lambda job: job["spec"]["pytorchReplicaSpecs"]["Worker"].pop("template"), "pod template"),
]


@pytest.mark.parametrize("mutate, needle", _DENIED, ids=[
    "sa-master", "sa-worker-only", "sa-missing", "token-master", "token-worker-only", "token-missing",
    "hostpath", "privileged", "privileged-init", "no-template"])
def test_admission_policy_denies_jobs_that_leave_the_replica_account(mutate, needle):
    pytest.importorskip("celpy")
    from components.launcher.validate import validate_pytorchjob

    policy = _docs(POLICY_FILE)[0]
    job = _dry_run_job()
    mutate(job)
    if needle != "pod template":
        assert validate_pytorchjob(job) == []  # a job the CRD accepts: only the policy stops it
    assert _admit(policy, _request(job)) == [_message(policy, needle)]
    assert _admit(policy, _request(job, operation="UPDATE")) == [_message(policy, needle)]
    # anyone else is not matched: the same job goes through (RBAC decides whether they may create it)
    for other in ("system:serviceaccount:ocrflow:default-editor", "system:serviceaccount:ocrflow:ocrflow-trainer2",
                  "system:serviceaccount:ocrflow-trainer:pipeline-runner", "alice@example.com"):
        assert _admit(policy, _request(job, username=other)) is None, other


def test_admission_policy_matches_only_pytorchjob_writes():
    pytest.importorskip("celpy")
    policy = _docs(POLICY_FILE)[0]
    job = _dry_run_job()
    _pod(job, "Worker")["serviceAccountName"] = "default-editor"
    assert _admit(policy, {**_request(job), "operation": "DELETE"}) is None
    other = _request(job)
    other["resource"] = {"group": "kubeflow.org", "version": "v1", "resource": "tfjobs"}
    assert _admit(policy, other) is None
    assert _admit(policy, _request(job)) == [_message(policy, "serviceAccountName")]  # the control


# Kubernetes 1.30+ (GA) objects, validated strictly like every manifest; this checks the schema has them.
def test_vendored_schema_knows_admission_policies():
    policy = _docs(POLICY_FILE)[0]
    kubernetes_validate.validate(policy, K8S_VERSION, strict=True)
    policy["spec"]["validations"][0]["messsage"] = "typo"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(policy, K8S_VERSION, strict=True)


# KFP's runtime in a step pod (driver, launcher, Argo's wait container) when runs use ocrflow-trainer:
# each rule with where it is called (kubeflow/pipelines 2.17.0, argo-workflows docs/workflow-rbac.md).
_KFP_STEP_NEEDS = {("", "configmaps", "get", ("kfp-launcher",)),  # backend/src/v2/config/env.go FromConfigMap
                   ("", "secrets", "get", ("mlpipeline-minio-artifact",)),  # v2/objectstore/object_store.go
                   ("", "pods", "get", ()),  # v2/component/launcher_v2.go, v2/driver/k8s.go: their own pod
                   ("argoproj.io", "workflowtaskresults", "create", ()),  # Argo executor minimum
                   ("argoproj.io", "workflowtaskresults", "patch", ())}


def test_kfp_step_role_is_what_kfps_runtime_calls_and_bound_to_the_launcher():
    role, binding = _docs(MANIFESTS / "base" / "kfp-step-role.yaml")
    granted = {(g, r, v, tuple(rule.get("resourceNames", ()))) for rule in role["rules"] for g in rule["apiGroups"]
               for r in rule["resources"] for v in rule["verbs"]}
    assert granted == _KFP_STEP_NEEDS
    launcher = _docs(MANIFESTS / "base" / "serviceaccount.yaml")[0]["metadata"]["name"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": launcher, "namespace": "ocrflow"}]
    # together with the launcher's Role: still no Secret but the artifact store's, no pod creation or exec,
    # no token requests, and no way to change a job once created
    launcher_role = _docs(MANIFESTS / "base" / "role.yaml")[0]
    every = granted | {(g, r, v, ()) for rule in launcher_role["rules"] for g in rule["apiGroups"]
                       for r in rule["resources"] for v in rule["verbs"]}
    assert {(r, names) for _, r, _, names in every if r == "secrets"} == {("secrets", ("mlpipeline-minio-artifact",))}
    assert not {(r, v) for _, r, v, _ in every} & {("pods", "create"), ("pods/exec", "create"),
                                                   ("serviceaccounts/token", "create"), ("pytorchjobs", "update"),
                                                   ("pytorchjobs", "patch")}


def test_kustomize_namespace_change_keeps_bindings_and_policy_working(tmp_path):
    """`kustomize edit set namespace team-a`: bindings follow, the policy needs no change and matches there."""
    import shutil
    import subprocess

    pytest.importorskip("celpy")
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    base = tmp_path / "base"
    shutil.copytree(MANIFESTS / "base", base)
    kust = base / "kustomization.yaml"
    kust.write_text(kust.read_text().replace("\nnamespace: ocrflow\n", "\nnamespace: team-a\n"))
    docs = [d for d in yaml.safe_load_all(subprocess.run([kubectl, "kustomize", str(base)], check=True,
                                                         capture_output=True, text=True).stdout) if d]
    for d in docs:
        if d["kind"] == "RoleBinding":
            assert [s["namespace"] for s in d["subjects"]] == ["team-a"], d["metadata"]["name"]
    rendered = {d["kind"]: d for d in docs}
    for src in _docs(POLICY_FILE):
        assert rendered[src["kind"]]["spec"] == src["spec"]
    job = _dry_run_job()
    job["metadata"]["namespace"] = "team-a"
    _pod(job, "Master")["serviceAccountName"] = "default-editor"
    policy = rendered["ValidatingAdmissionPolicy"]
    assert _admit(policy, _request(job, username="system:serviceaccount:team-a:ocrflow-trainer")) == [
        _message(policy, "serviceAccountName")]
