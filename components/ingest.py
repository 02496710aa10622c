"""Component ``ingest``: a raw labelled data URI -> the raw dataset's manifest artifact.

The training DAG's first step, so it also rejects a detection recipe the DAG cannot run
(``det_recipe=cml`` without ``det_teacher_init_uri``) before anything is moved or trained.
"""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components.launcher.pytorchjob import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def ingest(raw_uri: str, store_root: str, raw: Output[Dataset], det_recipe: str = "finetune",
           det_teacher_init_uri: str = ""):
    """Check the recipe parameters, then that ``raw_uri`` is a published prefix (a local directory is published first)."""
    from components._kfp_io import write_info
    from components.steps.data import ingest as ingest_raw
    from components.steps.train import check_det_recipe

    check_det_recipe(det_recipe, det_teacher_init_uri)
    info = write_info(raw, ingest_raw(raw_uri, store_root))
    print(f"ingested {info['uri']}: {info['counts']} (digest {info['digest'][:12]})")
