"""Component ``adopt_model``: a published model prefix (URI) as this run's ``Model`` artifact.

The training DAG's detection recipes (``det_recipe``) are two ``dsl.If``/``dsl.Else`` branches;
``dsl.OneOf`` joins the model URI each branch returns (a string parameter) and this step turns it
back into the artifact that eval/export/publish consume. Why a parameter and not the artifact
itself: kfp.local 2.17 resolves a parameter ``OneOf`` (``valueFromOneof``) but rejects an
artifact ``OneOf`` ("Expected 1 artifact in ArtifactSelectorSpec. Got: 2"), although it
compiles; this way the same DAG runs on a cluster and under ``ocrflow pipeline run --local``.
"""

from kfp import dsl
from kfp.dsl import Model, Output

from components.launcher.pytorchjob import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def adopt_model(uri: str, model: Output[Model]):
    """Write the manifest artifact of the model published at ``uri`` (its manifest is the source of truth)."""
    from components._kfp_io import write_info
    from components.steps.models import adopt_model as adopt

    info = write_info(model, adopt(uri))
    print(f"model {info['uri']} (digest {info['digest'][:12]}, best {info['extra'].get('best_metric')})")
