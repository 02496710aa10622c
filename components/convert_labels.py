"""Component ``convert_labels``: ICDAR ground truth -> PaddleOCR label files, published as a dataset."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components.launcher.pytorchjob import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def convert_labels(raw: Input[Dataset], store_root: str, dataset: Output[Dataset]):
    """Publish images + label files under ``<store_root>/datasets/<raw digest>``."""
    from components._kfp_io import read_info, write_info
    from components.steps.data import convert_labels as convert
    from ocr_core.storage.uri import join_uri

    src = read_info(raw)
    out_uri = join_uri(store_root, "datasets", src["digest"][:16])
    info = write_info(dataset, convert(src["uri"], out_uri))
    print(f"converted -> {info['uri']}: {info['counts']}")
