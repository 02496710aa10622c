"""Component ``train``: one training step (det fine-tune, DML teacher, CML student, rec) through a launcher.

``launcher``: ``local`` (worker processes on loopback with the PyTorchJob env contract),
``kubernetes`` (a PyTorchJob: Master + ``workers - 1`` Workers; elastic, between ``min_workers`` and
``workers`` nodes, when 0 < ``min_workers`` < ``workers``), ``inprocess`` (tests).
Settings apply in order: the staged paths (data, init, teacher), ``recipe_overrides`` (the DAG's own
settings for a recipe), ``overrides``, ``extra_overrides`` (the user's; the last one wins).
``shards`` (the ``build_shards`` output): with a shard set, Train and Eval stream it and ``data`` is not staged.
"""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from components.launcher.pytorchjob import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def train(model_type: str, config: str, overrides: list, extra_overrides: list, data: Input[Dataset], step: str,
          store_root: str, launcher: str, workers: int, gpus: int, epochs: int, model: Output[Model],
          metrics: Output[Metrics], report: Output[HTML], teacher: Input[Model] = None,
          shards: Input[Dataset] = None, init_uri: str = "",
          init_keys: list = [], recipe_overrides: list = [],  # noqa: B006 - KFP defaults are literals
          teacher_key: str = "", s3_secret: str = "", namespace: str = "", min_workers: int = 0) -> str:
    """Train ``config`` on the dataset (staged, or streamed from ``shards``); the output is the final
    checkpoint's manifest, the report the run's ``report.html``.

    Returns the model prefix URI (``dsl.OneOf`` joins the detection recipes' models by it).
    ``namespace`` "" launches PyTorchJobs where this step's own pod runs. ``min_workers`` 0: a fixed-size
    job; 0 < ``min_workers`` < ``workers``: an elastic one, with step checkpoints (``Global.save_step_interval``,
    default ``ELASTIC_SAVE_STEP_INTERVAL`` unless the overrides set it); other values fail naming the parameter.
    """
    from components._kfp_io import fit_html, log_metrics, read_info, training_report, write_info
    from components.steps.train import launch_training_step, stage_plan

    plan = stage_plan(model_type, read_info(data)["uri"], init_uri, init_keys,
                      read_info(teacher)["uri"] if teacher is not None else "", teacher_key,
                      read_info(shards)["uri"] if shards is not None else "")
    result = launch_training_step(config, [*recipe_overrides, *overrides, *extra_overrides], plan, store_root, step,
                                  launcher=launcher, workers=workers, gpus=gpus, epochs=epochs, namespace=namespace,
                                  secret=s3_secret, min_workers=min_workers)
    info = write_info(model, result)
    log_metrics(metrics, info["extra"].get("best_metric") or {})
    log_metrics(metrics, {"global_step": info["extra"].get("global_step") or 0})
    with open(report.path, "w", encoding="utf-8") as fh:
        fh.write(fit_html(training_report(result), f"{info['uri']}/report.html"))
    print(f"{step}: {info['uri']} best {info['extra'].get('best_metric')}")
    return info["uri"]
