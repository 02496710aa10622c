"""Component ``build_lmdb``: the dataset's rec labels -> train/test LMDBs, published next to it."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components.launcher.pytorchjob import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def build_lmdb(dataset: Input[Dataset], lmdb: Output[Dataset]):
    """Publish ``<dataset uri>-lmdb/{train,test}``."""
    from components._kfp_io import read_info, write_info
    from components.steps.data import build_rec_lmdb

    src = read_info(dataset)
    info = write_info(lmdb, build_rec_lmdb(src["uri"], src["uri"].rstrip("/") + "-lmdb"))
    print(f"lmdb -> {info['uri']}: {info['counts']}")
