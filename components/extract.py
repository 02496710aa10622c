"""Component ``extract``: one role of a distillation checkpoint as a plain model prefix."""

from kfp import dsl
from kfp.dsl import Input, Model, Output

from components.launcher.pytorchjob import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def extract(model: Input[Model], role: str, plain: Output[Model]) -> str:
    """Write ``<model uri>-<role>/model.pt`` (plain keys, plain config); returns that prefix's URI
    (``dsl.OneOf`` joins it with the other detection recipe's model, see ``adopt_model``)."""
    from components._kfp_io import read_info, write_info
    from components.steps.models import extract as extract_role

    src = read_info(model)
    info = write_info(plain, extract_role(src["uri"], role, src["uri"].rstrip("/") + "-" + role.lower()))
    print(f"extracted {role} -> {info['uri']}")
    return info["uri"]
