"""Component ``build_shards``: the dataset's det and rec label files -> shard sets, published next to it."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components.launcher.pytorchjob import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def build_shards(dataset: Input[Dataset], data_format: str, shards: Output[Dataset], shard_size: str = "256MB"):
    """``data_format=shards``: publish ``<dataset uri>-shards/{det,rec}/{train,test}`` (what the training
    steps stream); ``files``: build nothing (``shards`` names no URI and the training steps stage ``dataset``)."""
    from components._kfp_io import read_info, write_info, write_json
    from components.steps.data import build_dataset_shards, check_data_format

    check_data_format(data_format)
    if data_format == "files":
        write_json(shards, {"uri": "", "digest": "", "kind": "none", "counts": {}, "extra": {"data_format": "files"}})
        shards.metadata.update({"uri": "", "data_format": "files"})
        print("data_format=files: no shards; the training steps stage the dataset")
        return
    src = read_info(dataset)
    info = write_info(shards, build_dataset_shards(src["uri"], src["uri"].rstrip("/") + "-shards", shard_size))
    print(f"shards -> {info['uri']}: {info['counts']}")
