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


def build_post_process(cfg: dict, **extra):  # noqa: ANN201
    """Build the post-processor named in a ``PostProcess`` section."""
    return POSTPROCESS.build(cfg, "PostProcess", **extra)


__all__ = ["POSTPROCESS", "build_post_process"]
