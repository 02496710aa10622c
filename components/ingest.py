"""Component ``ingest``: a raw labelled data URI -> the raw dataset's manifest artifact."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components.launcher.pytorchjob import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def ingest(raw_uri: str, store_root: str, raw: Output[Dataset]):
    """Check that ``raw_uri`` is a published prefix (a local directory is published first)."""
    from components import _steps
    from components._kfp_io import write_info

    info = write_info(raw, _steps.ingest(raw_uri, store_root))
    print(f"ingested {info['uri']}: {info['counts']} (digest {info['digest'][:12]})")
