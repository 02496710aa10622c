"""Post-processing (framework-free: numpy in, python/numpy out), registered by name."""

from ocr_core.registry import Registry

POSTPROCESS = Registry(
    "postprocess",
    [
        "ocr_core.postprocess.db_postprocess",
        "ocr_core.postprocess.rec_postprocess",
        "ocr_core.postprocess.east_postprocess",
    ],
)

__all__ = ["POSTPROCESS"]
