"""One namespace, defaulting to where the KFP step's own pod runs (#15 item 3).

The chain: the DAG's ``namespace`` parameter ("" by default) reaches every train step; each train
step's pod gets ``POD_NAMESPACE`` from the downward API; ``run_workers`` turns "" into
:func:`~components.launcher.pytorchjob.current_namespace` (``OCRFLOW_NAMESPACE`` > ``POD_NAMESPACE``
> the service-account namespace file > ``default``), and the PyTorchJob, the Secret it reads and
the replicas' ServiceAccount are all looked up there. The manifests put everything in one namespace.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"


@pytest.fixture(autouse=True)
def _no_ambient_namespace(monkeypatch, tmp_path):
    from components.launcher import pytorchjob as pj

    for var in ("OCRFLOW_NAMESPACE", "POD_NAMESPACE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(pj, "SA_NAMESPACE_FILE", tmp_path / "serviceaccount-namespace")


# --- the compiled DAGs ---------------------------------------------------------------------------
def _train_tasks(spec: dict) -> list[tuple[str, dict]]:
    """(task path, {input: the root parameter it comes from, or None}) for every train task."""
    out = []

    def walk(dag: dict, env: dict, path: str) -> None:
        for name, task in dag["tasks"].items():
            bound = {k: env.get(v.get("componentInputParameter")) for k, v in
                     task.get("inputs", {}).get("parameters", {}).items()}
            comp = spec["components"][task["componentRef"]["name"]]
            if "dag" in comp:
                walk(comp["dag"], bound, f"{path}/{name}")
            elif task["componentRef"]["name"].startswith("comp-train"):
                out.append((f"{path}/{name}", {**bound, "_executor": comp["executorLabel"]}))

    walk(spec["root"]["dag"], {p: p for p in spec["root"]["inputDefinitions"]["parameters"]}, "")
    return out


@pytest.mark.parametrize("pipeline", ["train", "retrain"])
def test_dag_namespace_parameter_reaches_every_train_step(pipeline, tmp_path):
    from pipelines.schedule import compile_named

    docs = list(yaml.safe_load_all(compile_named(pipeline, tmp_path / "p.yaml").read_text()))
    spec, platform = docs[0], docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    param = spec["root"]["inputDefinitions"]["parameters"]["namespace"]
    assert param["parameterType"] == "STRING" and param.get("defaultValue", "") == ""  # "": the step's own
    tasks = _train_tasks(spec)
    assert len(tasks) == 4, [p for p, _ in tasks]  # rec, det fine-tune, DML teacher, CML student
    for path, bound in tasks:
        assert bound["namespace"] == "namespace", path  # from the run's parameter, nothing hard-coded
        env = platform[bound["_executor"]].get("fieldPathAsEnv", [])
        assert {"name": "POD_NAMESPACE", "fieldPath": "metadata.namespace"} in env, path


# --- the launcher --------------------------------------------------------------------------------
def _launched_job(monkeypatch, namespace: str) -> dict:
    """The PyTorchJob ``run_workers`` hands to the Kubernetes client (creation itself is not tested here)."""
    from components.launcher import client
    from components.steps.train import run_workers

    jobs = []
    monkeypatch.setattr(client, "launch_and_wait", lambda job, **kw: jobs.append(job))
    run_workers(["python", "-m", "components.steps.train", "worker"], launcher="kubernetes", workers=2, gpus=0,
                name="ns-check", namespace=namespace, secret="ocrflow-objectstore")
    (job,) = jobs
    return job


def test_train_step_launches_where_its_pod_runs(monkeypatch, tmp_path):
    from components.launcher import pytorchjob as pj

    assert _launched_job(monkeypatch, "")["metadata"]["namespace"] == "default"  # outside any cluster
    pj.SA_NAMESPACE_FILE.write_text("kubeflow-user-a\n")
    assert _launched_job(monkeypatch, "")["metadata"]["namespace"] == "kubeflow-user-a"
    monkeypatch.setenv("POD_NAMESPACE", "team-ocr")  # the downward API the DAG sets
    job = _launched_job(monkeypatch, "")
    assert job["metadata"]["namespace"] == "team-ocr"
    # the Secret and the replicas' account are namespace-local names, resolved in that same namespace
    for rspec in job["spec"]["pytorchReplicaSpecs"].values():
        pod = rspec["template"]["spec"]
        assert pod["serviceAccountName"] == pj.DEFAULT_SERVICE_ACCOUNT
        refs = {e["valueFrom"]["secretKeyRef"]["name"] for c in pod["containers"] for e in c.get("env", [])
                if "valueFrom" in e}
        assert refs == {"ocrflow-objectstore"}
    assert _launched_job(monkeypatch, "explicit")["metadata"]["namespace"] == "explicit"  # the parameter wins


def test_a_job_without_a_namespace_is_created_where_the_pod_runs(monkeypatch):
    """launch_and_wait given a hand-made job with no namespace: the pod's own, never ``default``."""
    from kubernetes.client.rest import ApiException

    from components.launcher import client

    created = []

    class Refusing:  # records the create call, then answers like an API server that says no
        def __init__(self, api_client):
            pass

        def create_namespaced_custom_object(self, group, version, namespace, plural, body):
            created.append(namespace)
            raise ApiException(status=403, reason="Forbidden")

    monkeypatch.setattr(client.k8s, "CustomObjectsApi", Refusing)
    monkeypatch.setenv("POD_NAMESPACE", "team-ocr")
    job = {"metadata": {"name": "no-ns"}, "spec": {}}
    with pytest.raises(client.PyTorchJobError, match="team-ocr/no-ns"):
        client.launch_and_wait(job, api_client=object(), validate=False)
    assert created == ["team-ocr"]


def test_launch_cli_resolves_the_namespace_when_it_runs(monkeypatch, capsys):
    from components.launcher.cli import main  # imported before the environment changes

    monkeypatch.setenv("POD_NAMESPACE", "team-ocr")
    assert main(["-c", "cfg.yml", "--name", "ns-cli", "--dry-run"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["metadata"]["namespace"] == "team-ocr"
    assert main(["-c", "cfg.yml", "--name", "ns-cli", "--namespace", "other", "--dry-run"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["metadata"]["namespace"] == "other"


# --- the manifests -------------------------------------------------------------------------------
def _paths_holding(node, value: str, path: str = "") -> list[str]:
    """Dotted paths of every string equal to ``value`` inside ``node``."""
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _paths_holding(v, value, f"{path}.{k}" if path else k)]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _paths_holding(v, value, f"{path}[{i}]")]
    return [path] if node == value else []


def test_manifests_use_one_namespace_and_the_names_the_code_uses():
    from components.launcher.pytorchjob import DEFAULT_SERVICE_ACCOUNT
    from pipelines.ocr_train_pipeline import OBJECT_STORE_SECRET

    kust = {p.parent.name: yaml.safe_load(p.read_text()) for p in MANIFESTS.glob("*/kustomization.yaml")}
    (ns,) = {k["namespace"] for name, k in kust.items() if name not in ("crds", "priority")}
    seen: dict[str, set] = {}
    for path in MANIFESTS.rglob("*.yaml"):
        if path.parent.name == "crds" or path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc["kind"] in ("Namespace", "PriorityClass"):
                continue
            assert doc["metadata"].get("namespace") == ns, f"{path}: {doc['kind']} outside {ns}"
            seen.setdefault(doc["kind"], set()).add(doc["metadata"]["name"])
            for subject in doc.get("subjects", []):
                assert subject.get("namespace") == ns, path
            for other in doc.get("spec", {}).get("namespaceSelector", {}).get("matchNames", []):
                assert other == ns, path
    assert OBJECT_STORE_SECRET in seen["Secret"] and DEFAULT_SERVICE_ACCOUNT in seen["ServiceAccount"]
    # the namespace is written only where `kustomize edit set namespace` rewrites it (metadata, binding
    # subjects): a copy anywhere else (a PodMonitor's namespaceSelector) would stay behind
    for path in MANIFESTS.rglob("*.yaml"):
        if path.parent.name != "crds" and path.name != "kustomization.yaml":
            for doc in yaml.safe_load_all(path.read_text()):
                where = [w for w in _paths_holding(doc, ns) if w not in ("metadata.namespace", "metadata.name")
                         and not w.startswith("metadata.labels.")  # app.kubernetes.io/part-of: ocrflow
                         and not (w.startswith("subjects[") and w.endswith("].namespace"))]
                assert not where, f"{path}: {ns!r} at {where}"
    namespaces = [d for d in yaml.safe_load_all((MANIFESTS / "base" / "namespace.yaml").read_text())]
    assert [d["metadata"]["name"] for d in namespaces] == [ns]
