"""Models: backbones, necks and heads registered by name and wired by ``build_model``."""

from ocr_core.registry import Registry

BACKBONES = Registry(
    "backbone",
    [
        "ocr_core.modeling.backbones.det_mobilenet_v3",
        "ocr_core.modeling.backbones.det_resnet_vd",
        "ocr_core.modeling.backbones.rec_mobilenet_v1_enhance",
        "ocr_core.modeling.backbones.rec_mobilenet_v3",
        "ocr_core.modeling.backbones.det_repvit",
    ],
)
NECKS = Registry(
    "neck",
    [
        "ocr_core.modeling.necks.db_fpn",
        "ocr_core.modeling.necks.rec_sequence_encoder",
        "ocr_core.modeling.heads.det_east_head",  # EASTFPN lives with its head
    ],
)
HEADS = Registry(
    "head",
    [
        "ocr_core.modeling.heads.det_db_head",
        "ocr_core.modeling.heads.rec_ctc_head",
        "ocr_core.modeling.heads.rec_sar_head",
        "ocr_core.modeling.heads.rec_multi_head",
        "ocr_core.modeling.heads.det_east_head",
    ],
)


def build_model(arch_cfg: dict):  # noqa: ANN201 - returns nn.Module; torch imported lazily
    """Build a model (plain or DistillationModel) from an ``Architecture`` mapping."""
    from ocr_core.modeling.architectures import build_model as _build

    return _build(arch_cfg)


__all__ = ["BACKBONES", "HEADS", "NECKS", "build_model"]
