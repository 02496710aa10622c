"""Scheduled retraining: the training DAG, run only when new labelled data has landed.

    check new data --is_new--> [if] ocr-train-pipeline (nested, unchanged) -> record trained data

``check_new_data`` compares the raw dataset's manifest digest with the digest recorded in the
production pointer (``models/<name>/production``, field ``data``). When they are equal every
training task is skipped and the run succeeds. After training, ``record_trained_data`` writes
the digest into the pointer if this run published (the gate may keep the champion). A recurring
run of this pipeline (``ocrflow pipeline schedule``, ``max_concurrency=1``) is the nightly job.

Parameters are exactly ``ocr_train_pipeline``'s: the signature is taken from it (``_parameters_of``).
"""

import functools
import inspect
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from kfp import dsl
from kfp.dsl.graph_component import GraphComponent

from components.check_new_data import check_new_data, record_trained_data
from pipelines.ocr_train_pipeline import _platform, ocr_train_pipeline

if TYPE_CHECKING:
    from pipelines.local_run import StepTimer

PIPELINE_NAME = "ocr-retrain-pipeline"


def _parameters_of(pipeline: GraphComponent) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a pipeline body ``pipeline``'s parameters: names, types and defaults, in order.

    KFP builds a pipeline's inputs from its function's signature and calls the function with one
    channel per parameter, positionally; the body receives them all as keywords.
    """
    signature = inspect.signature(pipeline.pipeline_func)

    def decorate(body: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(body)
        def with_parameters(*args: Any, **kwargs: Any) -> None:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            body(**bound.arguments)

        with_parameters.__signature__ = signature  # type: ignore[attr-defined]
        return with_parameters

    return decorate


@dsl.pipeline(name=PIPELINE_NAME, description="Retrain (the ocr-train-pipeline DAG) only when the labelled "
              "dataset differs from the one the production model was trained on.")
@_parameters_of(ocr_train_pipeline)
def ocr_retrain_pipeline(**params: Any) -> None:
    raw_data_uri, store_root, model_name = params["raw_data_uri"], params["store_root"], params["model_name"]
    check = _platform(check_new_data(raw_uri=raw_data_uri, registry_uri=store_root, model_name=model_name),
                      "check new data")
    check.set_caching_options(False)  # its answer depends on the registry, not only on its inputs
    is_new = check.outputs["Output"]  # see components/check_new_data.py: kfp.local resolves only "Output"
    with dsl.If(is_new == True, name="new-data"):  # noqa: E712 - a KFP condition
        training = ocr_train_pipeline(**params)
        training.set_display_name("train (ocr-train-pipeline)")
        record = _platform(record_trained_data(registry_uri=store_root, model_name=model_name,
                                               data_uri=raw_data_uri, data_digest=check.outputs["incoming_digest"],
                                               seen_fingerprint=check.outputs["pointer_fingerprint"]),
                           "record trained data").after(training)
        record.set_caching_options(False)


def run_retrain_local(params: Mapping[str, Any], pipeline_root: str | os.PathLike[str],
                      env: Mapping[str, str] | None = None, enable_caching: bool = False,
                      timer: "StepTimer | None" = None) -> Any:
    """:func:`pipelines.local_run.run_pipeline_locally`, for the retrain pipeline (kfp.local, SubprocessRunner)."""
    from pipelines.local_run import run_pipeline_locally

    return run_pipeline_locally(params, pipeline_root, env, enable_caching, timer, pipeline=ocr_retrain_pipeline)
