"""Launch OCRFlow training as a Kubeflow PyTorchJob, or as local processes with the same env.

``pytorchjob`` builds the manifest, ``validate`` checks it offline (CRD schema + webhook rules),
``client`` creates and watches it through the Kubernetes API (needs the ``kubernetes`` package,
imported only there), ``local`` runs the same replicas as loopback processes.
"""

from components.launcher.pytorchjob import (
    DEFAULT_IMAGE,
    PyTorchJobSpec,
    build_pytorchjob,
    to_yaml,
    train_program,
)
from components.launcher.validate import FieldError, InvalidPyTorchJob, check_pytorchjob, validate_pytorchjob

__all__ = [
    "DEFAULT_IMAGE", "FieldError", "InvalidPyTorchJob", "PyTorchJobSpec", "build_pytorchjob", "check_pytorchjob",
    "to_yaml", "train_program", "validate_pytorchjob",
]
