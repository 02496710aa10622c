"""Component ``validate_data``: fail the run when too many label lines are bad; stats as Metrics."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from components.launcher.pytorchjob import DEFAULT_IMAGE


@dsl.component(base_image=DEFAULT_IMAGE, install_kfp_package=False)
def validate_data(dataset: Input[Dataset], max_error_ratio: float, stats: Output[Metrics]):
    """Validate every det/rec label file of the dataset (images decoded, geometry checked)."""
    from components._kfp_io import log_metrics, read_info
    from components.steps.data import validate_dataset

    values = validate_dataset(read_info(dataset)["uri"], max_error_ratio)
    log_metrics(stats, values)
    print(values)
