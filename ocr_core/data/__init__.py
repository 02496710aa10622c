"""Data: label formats, datasets, transforms (dict -> dict ops), LMDB, synthetic data."""

from ocr_core.registry import Registry

DATASETS = Registry(
    "dataset",
    [
        "ocr_core.data.simple_dataset",
        "ocr_core.data.lmdb_dataset",
        "ocr_core.data.shards",
    ],
)

# A transform is a class built from its config kwargs whose ``__call__(data: dict)`` returns the
# updated dict, or None to reject the sample (the dataset then counts and skips it).
TRANSFORMS = Registry(
    "transform",
    [
        "ocr_core.data.transforms.common",
        "ocr_core.data.transforms.det_label",
        "ocr_core.data.transforms.det_augment",
        "ocr_core.data.transforms.det_crop",
        "ocr_core.data.transforms.copy_paste",
        "ocr_core.data.transforms.det_targets",
        "ocr_core.data.transforms.det_resize",
        "ocr_core.data.transforms.rec_label",
        "ocr_core.data.transforms.rec_resize",
        "ocr_core.data.transforms.rec_augment",
        "ocr_core.data.transforms.east_process",
    ],
)

__all__ = ["DATASETS", "TRANSFORMS"]
