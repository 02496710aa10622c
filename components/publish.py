"""Component ``publish``: copy det + rec to ``models/<name>/<version>/`` and move ``production``."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model

from components.launcher.pytorchjob import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def publish(det: Input[Model], rec: Input[Model], result: Input[Artifact], raw: Input[Dataset],
            raw_data_uri: str, registry_uri: str, model_name: str) -> str:
    """The version is content-derived (both exported models' digests); returns it.

    The pointer records the raw dataset the models were trained on (``raw_data_uri`` and the digest
    ``ingest`` published it with), so a recurring ``check_new_data`` knows this data is not new.
    """
    from components._kfp_io import read_info
    from components.steps.common import content_key
    from components.steps.registry import publish as publish_models

    d, r = read_info(det), read_info(rec)
    version = content_key(d["digest"], r["digest"])[:12]
    pointer = publish_models({"det": d["uri"], "rec": r["uri"]}, registry_uri, model_name, version,
                            read_info(result)["results"]["candidate"],
                            data={"uri": raw_data_uri, "digest": read_info(raw)["digest"]})
    print(f"published {model_name} {version}: {pointer['parts']} (dataset {pointer['data']['digest'][:12]})")
    return version
