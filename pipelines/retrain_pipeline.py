"""Scheduled retraining: the training DAG, run only when new labelled data has landed.

    check new data --is_new--> [if] ocr-train-pipeline (nested, unchanged) -> record trained data

``check_new_data`` compares the raw dataset's manifest digest with the digest recorded in the
production pointer (``models/<name>/production``, field ``data``). When they are equal every
training task is skipped and the run succeeds. After training, ``record_trained_data`` writes
the digest into the pointer if this run published (the gate may keep the champion). A recurring
run of this pipeline (``ocrflow pipeline schedule``, ``max_concurrency=1``) is the nightly job.

Parameters are exactly ``ocr_train_pipeline``'s (a test keeps them in sync).
"""

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kfp import dsl

from components.check_new_data import check_new_data, record_trained_data
from pipelines.ocr_train_pipeline import _platform, ocr_train_pipeline

PIPELINE_NAME = "ocr-retrain-pipeline"


@dsl.pipeline(name=PIPELINE_NAME, description="Retrain (the ocr-train-pipeline DAG) only when the labelled "
              "dataset differs from the one the production model was trained on.")
def ocr_retrain_pipeline(
    raw_data_uri: str,
    store_root: str = "s3://ocrflow",
    model_name: str = "ppocrv3",
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
    epochs: int = 0,
    workers: int = 1,
    gpus: int = 0,
    launcher: str = "local",
    max_error_ratio: float = 0.0,
    parity_atol: float = 1e-3,
    gate_margin: float = 0.0,
):
    check = _platform(check_new_data(raw_uri=raw_data_uri, registry_uri=store_root, model_name=model_name),
                      "check new data")
    check.set_caching_options(False)  # its answer depends on the registry, not only on its inputs
    is_new = check.outputs["Output"]  # see components/check_new_data.py: kfp.local resolves only "Output"
    with dsl.If(is_new == True, name="new-data"):  # noqa: E712 - a KFP condition
        training = ocr_train_pipeline(
            raw_data_uri=raw_data_uri, store_root=store_root, model_name=model_name,
            det_teacher_config=det_teacher_config, det_student_config=det_student_config, rec_config=rec_config,
            det_overrides=det_overrides, teacher_overrides=teacher_overrides, student_overrides=student_overrides,
            rec_overrides=rec_overrides, det_eval_overrides=det_eval_overrides,
            rec_eval_overrides=rec_eval_overrides, det_pretrained_uri=det_pretrained_uri,
            rec_pretrained_uri=rec_pretrained_uri, epochs=epochs, workers=workers, gpus=gpus, launcher=launcher,
            max_error_ratio=max_error_ratio, parity_atol=parity_atol, gate_margin=gate_margin)
        training.set_display_name("train (ocr-train-pipeline)")
        record = _platform(record_trained_data(registry_uri=store_root, model_name=model_name,
                                               data_uri=raw_data_uri, data_digest=check.outputs["incoming_digest"],
                                               seen_fingerprint=check.outputs["pointer_fingerprint"]),
                           "record trained data").after(training)
        record.set_caching_options(False)


def run_retrain_local(params: Mapping[str, Any], pipeline_root: str | os.PathLike[str],
                      env: Mapping[str, str] | None = None, enable_caching: bool = False) -> Any:
    """:func:`pipelines.local_run.run_local`, for the retrain pipeline (kfp.local, SubprocessRunner)."""
    from kfp import local

    os.environ.update(env or {})
    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root),
               enable_caching=enable_caching)
    return ocr_retrain_pipeline(**dict(params))
