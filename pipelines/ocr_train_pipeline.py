"""The OCRFlow training DAG (docs/pipeline.md; shape from ARCHITECTURE.md "The DAG").

    ingest -> convert_labels -> validate_data -+-> build_lmdb -> train rec -> eval rec -> export rec ---+
                                               +-> build_shards (data_format=shards; files: a no-op)     |
                                               |     (its shard sets feed every train step below)       |
                                               +-> export start det / start rec (the run's start models)|
                                               +-> [det_recipe == finetune] fine-tune det               |
                                                   [else: cml] train teacher (DML) -> extract teacher   |
                                                               -> train student (CML) -> extract student|
                                                   -> det model (dsl.OneOf of the two) -> eval det -> export det
                                                                                                        v
                        system_eval (det+rec end to end: candidate, start, production) -> gate -> [if] publish

``data_format``: ``files`` (default) stages the dataset (det label files + images, rec LMDBs) into each
training node before step 1; ``shards`` has ``build_shards`` write ``<dataset>-shards/{det,rec}/{train,test}``
once and the training steps stream them (``ShardDataSet``, bounded local cache, nothing staged). Eval,
export and the system eval read the staged dataset either way.

Each "export" is two branches on ``export_format``: ``onnx`` on the default image, ``tensorrt``/``both``
on the TensorRT image with one GPU (ONNX + engine, each behind its gate); ``dsl.OneOf`` joins the
published URI and an ``adopt_model`` task hands it on, as for the det recipes.

Steps exchange manifest artifacts (URI + sha256 digest); data and checkpoints stay in object
storage under ``store_root``. Each producing step writes to a content-derived prefix (raw digest,
config hash + overrides + input digests), so a re-run with the same inputs reuses finished work.
The gate's champion is the production model, else the start model (``det_pretrained_uri`` +
``rec_pretrained_uri``, exported and system-evaluated like the candidate): a run never publishes
a model worse than the one it started from.
Credentials: env only (kfp-kubernetes secret/config map on a cluster, the runner's env locally).
"""


import difflib
import inspect
from collections.abc import Mapping
from typing import Any

from kfp import dsl, kubernetes

from components.adopt_model import adopt_model
from components.build_lmdb import build_lmdb
from components.build_shards import build_shards
from components.convert_labels import convert_labels
from components.evaluate import evaluate
from components.export import GPU_RESOURCE, TENSORRT_IMAGE, export
from components.export_start import export_start
from components.extract import extract
from components.gate import gate
from components.ingest import ingest
from components.publish import publish
from components.system_eval import system_eval
from components.train import train
from components.validate_data import validate_data
from ocr_core.errors import ConfigError

PIPELINE_NAME = "ocr-train-pipeline"
OBJECT_STORE_SECRET = "ocrflow-objectstore"  # manifests/base/objectstore-secret.yaml
OBJECT_STORE_CONFIG = "ocrflow-objectstore-config"  # optional: key ``endpoint`` -> OCRFLOW_S3_ENDPOINT
SECRET_ENV = {"accesskey": "AWS_ACCESS_KEY_ID", "secretkey": "AWS_SECRET_ACCESS_KEY"}
DET_STUDENT_INIT_KEYS = ["Architecture.Models.Student.pretrained", "Architecture.Models.Student2.pretrained"]
# the DML config's two models are its roles Student and Student2 (both become teachers); both start from
# det_teacher_init_uri, as PaddleOCR starts both from the ImageNet ResNet50_vd weights
DET_TEACHER_INIT_KEYS = ["Architecture.Models.Student.pretrained", "Architecture.Models.Student2.pretrained"]
# PaddleOCR's DML/CML configs (kept unchanged) give lr 1e-3 for 8 GPUs x 8 images: scale it with the global batch
DISTILL_RECIPE_OVERRIDES = ["Optimizer.lr.reference_batch_size=64"]
DATA_RETRIES = 2


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", list: "a JSON list"}


def _check_names_and_types(params: Mapping[str, Any], parameters: Mapping[str, inspect.Parameter]) -> None:
    """Every name in ``params`` is a parameter of the pipeline function, its value of the annotated type."""
    for name, v in params.items():
        if name not in parameters:
            near = difflib.get_close_matches(name, list(parameters), n=1)
            hint = f"did you mean {near[0]}?" if near else f"the parameters are: {', '.join(parameters)}"
            raise ConfigError(f"unknown pipeline parameter; {hint}", name)
        kind = parameters[name].annotation
        ok = (isinstance(v, (int, float)) if kind is float else isinstance(v, kind)) and not isinstance(v, bool)
        if kind in _TYPE_NAMES and not ok:
            raise ConfigError(f"expected {_TYPE_NAMES[kind]}, got {type(v).__name__} {v!r}", name)


def check_arguments(params: Mapping[str, Any]) -> None:
    """Reject run arguments the DAG cannot run, before anything starts (``ConfigError`` naming the
    parameter): an unknown name (with the nearest known one), a value of the wrong type, a negative
    ``epochs``/``gpus``, ``workers`` below 1, a bad enum or combination. On a cluster the first step (``ingest``) checks the same, ``build shards`` its ``data_format``,
    each ``train`` step ``workers``/``min_workers``."""
    from components.steps.data import check_data_format
    from components.steps.train import check_det_recipe, check_elastic
    from ocr_core.export.checked import check_format

    defaults = inspect.signature(ocr_train_pipeline.pipeline_func).parameters
    _check_names_and_types(params, defaults)

    def value(name: str) -> Any:
        return params.get(name, defaults[name].default)

    for name in ("epochs", "gpus"):
        if value(name) < 0:
            raise ConfigError(f"must be >= 0, got {value(name)}", name)
    check_det_recipe(value("det_recipe"), value("det_teacher_init_uri"))
    check_format(value("export_format"), "export_format")
    check_data_format(value("data_format"))
    check_elastic(value("workers"), value("min_workers"))


def _platform(task: dsl.PipelineTask, display: str) -> dsl.PipelineTask:
    """Object-store credentials from the Secret (never parameters); a display name per task."""
    kubernetes.use_secret_as_env(task, secret_name=OBJECT_STORE_SECRET, secret_key_to_env=SECRET_ENV)
    kubernetes.use_config_map_as_env(task, config_map_name=OBJECT_STORE_CONFIG,
                                     config_map_key_to_env={"endpoint": "OCRFLOW_S3_ENDPOINT"}, optional=True)
    task.set_display_name(display)
    return task


def _export(model_type: str, model: Any, data: Any, overrides: Any, atol: Any, export_format: Any,
            after: dsl.PipelineTask) -> Any:
    """The export of one model: ``onnx`` on the default image (no GPU), ``tensorrt``/``both`` on the
    TensorRT image with one GPU; the published URI joined by ``dsl.OneOf`` and adopted as the ``Model``
    artifact the system eval and publish read (a parameter ``OneOf``: components/adopt_model.py says why)."""
    display = f"export {model_type}"
    args = dict(model_type=model_type, model=model, data=data, overrides=overrides, atol=atol, format=export_format)
    with dsl.If(export_format == "onnx", name=f"{display} (onnx)"):
        cpu = _platform(export(**args), display).after(after)
    with dsl.Else(name=f"{display} (tensorrt, GPU)"):
        gpu = _platform(export(**args), f"{display} (TensorRT, GPU)").after(after)
        gpu.set_container_image(TENSORRT_IMAGE).set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(1)
    return _platform(adopt_model(uri=dsl.OneOf(cpu.outputs["Output"], gpu.outputs["Output"])),
                     f"exported {model_type} (onnx | tensorrt)").outputs["model"]


@dsl.pipeline(name=PIPELINE_NAME, description="PP-OCRv3 det (fine-tune, or DML teacher -> CML student) + rec "
              "training, evaluation, ONNX (or ONNX + TensorRT) export behind parity gates, champion/challenger "
              "publish (the champion: production, else the start model).")
def ocr_train_pipeline(
    raw_data_uri: str,
    store_root: str = "s3://ocrflow",
    model_name: str = "ppocrv3",
    det_recipe: str = "finetune",
    det_config: str = "configs/det/ch_PP-OCRv3/ch_PP-OCRv3_det_finetune.yml",
    det_teacher_config: str = "configs/det/ch_PP-OCRv3/ch_PP-OCRv3_det_dml.yml",
    det_student_config: str = "configs/det/ch_PP-OCRv3/ch_PP-OCRv3_det_cml.yml",
    rec_config: str = "pipelines/configs/ch_PP-OCRv3_rec_ctc_lmdb.yml",
    det_overrides: list = [],  # noqa: B006 - KFP parameter defaults are literals
    teacher_overrides: list = [],  # noqa: B006
    student_overrides: list = [],  # noqa: B006
    rec_overrides: list = [],  # noqa: B006
    det_eval_overrides: list = [],  # noqa: B006
    rec_eval_overrides: list = [],  # noqa: B006
    det_pretrained_uri: str = "",
    rec_pretrained_uri: str = "",
    det_teacher_init_uri: str = "",
    epochs: int = 0,
    workers: int = 1,
    min_workers: int = 0,
    gpus: int = 0,
    launcher: str = "local",
    max_error_ratio: float = 0.0,
    parity_atol: float = 1e-3,
    export_format: str = "onnx",
    data_format: str = "files",
    gate_margin: float = 0.0,
    namespace: str = "",
):
    ing = _platform(ingest(raw_uri=raw_data_uri, store_root=store_root, det_recipe=det_recipe,
                           det_teacher_init_uri=det_teacher_init_uri), "ingest")
    conv = _platform(convert_labels(raw=ing.outputs["raw"], store_root=store_root), "convert labels")
    val = _platform(validate_data(dataset=conv.outputs["dataset"], max_error_ratio=max_error_ratio),
                    "validate data")
    for t in (ing, conv):
        t.set_retry(num_retries=DATA_RETRIES, backoff_duration="10s", backoff_factor=2.0)
    dataset = conv.outputs["dataset"]
    # data_format=shards: shard sets the training steps stream instead of staging the dataset (files: a no-op)
    shards = _platform(build_shards(dataset=dataset, data_format=data_format), "build shards").after(val)
    shards.set_retry(num_retries=DATA_RETRIES, backoff_duration="10s", backoff_factor=2.0)
    common = dict(store_root=store_root, launcher=launcher, workers=workers, min_workers=min_workers, gpus=gpus,
                  epochs=epochs, s3_secret=OBJECT_STORE_SECRET, namespace=namespace, shards=shards.outputs["shards"])

    # --- recognition branch
    lmdb = _platform(build_lmdb(dataset=dataset), "build LMDB (rec)").after(val)
    lmdb.set_retry(num_retries=DATA_RETRIES, backoff_duration="10s", backoff_factor=2.0)
    rec_train = _platform(train(model_type="rec", config=rec_config, overrides=rec_overrides, extra_overrides=[],
                                data=lmdb.outputs["lmdb"], step="rec_train", init_uri=rec_pretrained_uri,
                                init_keys=["Global.pretrained_model"], **common), "train rec")
    rec_eval = _platform(evaluate(model_type="rec", model=rec_train.outputs["model"], data=lmdb.outputs["lmdb"],
                                  overrides=rec_eval_overrides, baseline_uri=rec_pretrained_uri,
                                  registry_uri=store_root, model_name=model_name), "eval rec")

    # --- the start models (the gate's champion when nothing is in production), exported like the candidates
    start_det = _platform(export_start(model_type="det", start_uri=det_pretrained_uri, data=dataset,
                                       overrides=det_eval_overrides, atol=parity_atol, store_root=store_root),
                          "export start det").after(val)
    start_rec = _platform(export_start(model_type="rec", start_uri=rec_pretrained_uri, data=lmdb.outputs["lmdb"],
                                       overrides=rec_eval_overrides, atol=parity_atol, store_root=store_root),
                          "export start rec")

    # --- detection: the recipe picks the steps; dsl.OneOf joins the model URI either branch returns
    with dsl.If(det_recipe == "finetune", name="det-finetune"):
        finetune = _platform(train(model_type="det", config=det_config, overrides=det_overrides, extra_overrides=[],
                                   data=dataset, step="det_finetune", init_uri=det_pretrained_uri,
                                   init_keys=["Global.pretrained_model"], **common),
                             "fine-tune det").after(val)
    with dsl.Else(name="det-cml"):
        teacher = _platform(train(model_type="det", config=det_teacher_config, overrides=det_overrides,
                                  extra_overrides=teacher_overrides, data=dataset, step="det_teacher",
                                  init_uri=det_teacher_init_uri, init_keys=DET_TEACHER_INIT_KEYS,
                                  recipe_overrides=DISTILL_RECIPE_OVERRIDES, **common),
                            "train det teacher (DML)").after(val)
        teacher_x = _platform(extract(model=teacher.outputs["model"], role="Student"), "extract teacher")
        student = _platform(train(model_type="det", config=det_student_config, overrides=det_overrides,
                                  extra_overrides=student_overrides, data=dataset, step="det_student",
                                  teacher=teacher_x.outputs["plain"], init_uri=det_pretrained_uri,
                                  init_keys=DET_STUDENT_INIT_KEYS, recipe_overrides=DISTILL_RECIPE_OVERRIDES,
                                  **common), "train det student (CML)")
        student_x = _platform(extract(model=student.outputs["model"], role="Student"), "extract student")
    for t in (rec_train, finetune, teacher, student):  # namespace "" launches jobs where the step runs
        kubernetes.use_field_path_as_env(t, env_name="POD_NAMESPACE", field_path="metadata.namespace")
    # a parameter OneOf: kfp.local 2.17 cannot join artifacts (components/adopt_model.py says why)
    det_model = _platform(adopt_model(uri=dsl.OneOf(finetune.outputs["Output"], student_x.outputs["Output"])),
                          "det model (fine-tuned | CML student)").outputs["model"]
    det_eval = _platform(evaluate(model_type="det", model=det_model, data=dataset,
                                  overrides=det_eval_overrides, baseline_uri=det_pretrained_uri,
                                  registry_uri=store_root, model_name=model_name), "eval det")
    # the exports come after the det recipe branches so those keep their task names (condition-2/3)
    rec_export = _export("rec", rec_train.outputs["model"], lmdb.outputs["lmdb"], rec_eval_overrides, parity_atol,
                         export_format, rec_eval)
    det_export = _export("det", det_model, dataset, det_eval_overrides, parity_atol, export_format, det_eval)

    # --- system eval, gate, publish
    sys_eval = _platform(system_eval(det=det_export, rec=rec_export,
                                     start_det=start_det.outputs["onnx_model"],
                                     start_rec=start_rec.outputs["onnx_model"],
                                     data=dataset, registry_uri=store_root, model_name=model_name),
                         "system eval (det+rec)")
    decision = _platform(gate(result=sys_eval.outputs["result"], margin=gate_margin), "gate")
    with dsl.If(decision.outputs["Output"] == True, name="challenger-wins"):  # noqa: E712 - a KFP condition
        _platform(publish(det=det_export, rec=rec_export,
                          result=sys_eval.outputs["result"], raw=ing.outputs["raw"], raw_data_uri=raw_data_uri,
                          registry_uri=store_root, model_name=model_name),
                  "publish")
