"""IaaAugment: PaddleOCR's imgaug-style geometric augmentation, built on albumentations 2.

PaddleOCR replaced imgaug with albumentations in Nov 2024 and kept the imgaug-style config:
a list of ``{"type": <imgaug name>, "args": {...}}``. The mapping is

- ``Fliplr`` / ``Flipud`` -> ``HorizontalFlip`` / ``VerticalFlip`` with the given ``p``;
- ``Affine`` -> albumentations ``Affine`` with ``p=1`` (``fit_output`` stays False, so the image
  keeps its size and rotated corners are cut off);
- ``Resize`` with ``size: [a, b]`` -> a uniform random scale ``s ~ U(a, b)`` applied to the image
  (linear interpolation, ``int(h*s) x int(w*s)``) and to the keypoints (``x*s, y*s``);
- any other type is looked up by name in albumentations with its args as given.

Polygon points travel as keypoints with ``remove_invisible=False`` so every polygon keeps its
point count even when points leave the image.

Randomness: albumentations 2 keeps its own random state per ``Compose``. We reseed it on every
call from ``self.rng`` (a ``numpy.random.Generator``) when set, else from numpy's global RNG, so
``np.random.seed(...)`` makes the op reproducible and dataloader workers that seed numpy
differently get different augmentations.
"""

from __future__ import annotations

import os
from typing import Any

# albumentations checks PyPI for updates on import unless told not to; training pods are offline.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
from albumentations.core.transforms_interface import DualTransform  # noqa: E402

from ocr_core.data import TRANSFORMS  # noqa: E402
from ocr_core.errors import ConfigError  # noqa: E402

DEFAULT_AUGMENTER_ARGS: list[dict[str, Any]] = [
    {"type": "Fliplr", "args": {"p": 0.5}},
    {"type": "Affine", "args": {"rotate": [-10, 10]}},
    {"type": "Resize", "args": {"size": [0.5, 3]}},
]

_IMGAUG_TO_ALBU = {"Fliplr": "HorizontalFlip", "Flipud": "VerticalFlip", "Affine": "Affine"}


class ImgaugLikeResize(DualTransform):
    """Scale image and keypoints by one random factor ``s ~ U(lo, hi)`` (imgaug ``Resize``)."""

    def __init__(
        self, scale_range: tuple[float, float] = (0.5, 3.0), interpolation: int = cv2.INTER_LINEAR
    ) -> None:
        super().__init__(p=1.0)
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.interpolation = interpolation

    def get_params(self) -> dict[str, Any]:
        lo, hi = self.scale_range
        return {"scale": float(self.random_generator.uniform(lo, hi)) if hi > lo else lo}

    def apply(self, img: np.ndarray, scale: float = 1.0, **params: Any) -> np.ndarray:
        h, w = img.shape[:2]
        new_w, new_h = max(1, int(w * scale)), max(1, int(h * scale))
        out = cv2.resize(img, (new_w, new_h), interpolation=self.interpolation)
        if img.ndim == 3 and out.ndim == 2:  # cv2 drops a trailing channel axis of size 1
            out = out[:, :, None]
        return out

    def apply_to_keypoints(self, keypoints: np.ndarray, scale: float = 1.0, **params: Any) -> np.ndarray:
        out = np.array(keypoints, dtype=np.float32, copy=True)
        out[:, :2] *= scale
        return out

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("scale_range", "interpolation")


def _as_tuple(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def _build_one(spec: Any, index: int) -> A.BasicTransform:
    where = f"augmenter_args[{index}]"
    if not isinstance(spec, dict) or "type" not in spec:
        raise ConfigError("each augmenter needs a 'type' key (and optional 'args')", where)
    kind = str(spec["type"])
    args = dict(spec.get("args") or {})
    if kind == "Resize":
        size = args.get("size", 1.0)
        if isinstance(size, (int, float)) and not isinstance(size, bool):
            size = [size, size]
        if not isinstance(size, (list, tuple)) or len(size) != 2:
            raise ConfigError(f"Resize 'size' must be a number or [min, max], got {size!r}", where)
        return ImgaugLikeResize(scale_range=(size[0], size[1]))
    if kind == "Affine":
        rotate = args.get("rotate", 0)
        args["rotate"] = (float(rotate), float(rotate)) if isinstance(rotate, (int, float)) else rotate
        args["p"] = 1.0  # imgaug's Affine always applies; PaddleOCR forces p=1 too
    else:
        args.setdefault("p", 1.0)
    name = _IMGAUG_TO_ALBU.get(kind, kind)
    cls = getattr(A, name, None)
    if cls is None or not isinstance(cls, type):
        raise ConfigError(f"unknown augmenter type {kind!r}", f"{where}.type")
    try:
        return cls(**{k: _as_tuple(v) for k, v in args.items()})
    except (TypeError, ValueError) as e:
        raise ConfigError(f"bad args for {kind} ({name}): {e}", f"{where}.args") from e


def build_augmenter(augmenter_args: list[dict[str, Any]] | None) -> A.Compose | None:
    """Build the albumentations pipeline for an imgaug-style arg list (None/[] -> no-op)."""
    if not augmenter_args:
        return None
    transforms = [_build_one(spec, i) for i, spec in enumerate(augmenter_args)]
    return A.Compose(
        transforms, keypoint_params=A.KeypointParams(format="xy", remove_invisible=False)
    )


@TRANSFORMS.register()
class IaaAugment:
    """Random flip / rotate / rescale of ``image`` with the ``polys`` moved to match.

    Args:
        augmenter_args: imgaug-style list of ``{"type", "args"}``; default: PP-OCRv3's
            Fliplr(p=0.5), Affine(rotate=[-10, 10]), Resize(size=[0.5, 3]).
    """

    def __init__(self, augmenter_args: list[dict] | None = None) -> None:
        if augmenter_args is None:
            augmenter_args = DEFAULT_AUGMENTER_ARGS
        self.augmenter = build_augmenter(augmenter_args)
        # Optional explicit numpy Generator; None means numpy's global RNG.
        self.rng: np.random.Generator | None = None

    def _next_seed(self) -> int:
        if self.rng is not None:
            return int(self.rng.integers(0, 2**31 - 1))
        return int(np.random.randint(0, 2**31 - 1))

    def __call__(self, data: dict[str, Any]) -> dict[str, Any] | None:
        if self.augmenter is None:
            return data
        polys = np.asarray(data["polys"], dtype=np.float32)
        n, k = (polys.shape[0], polys.shape[1]) if polys.ndim == 3 else (0, 0)
        keypoints = polys.reshape(-1, 2) if n else np.zeros((0, 2), dtype=np.float32)
        self.augmenter.set_random_seed(self._next_seed())
        out = self.augmenter(image=data["image"], keypoints=keypoints)
        data["image"] = out["image"]
        moved = np.asarray(out["keypoints"], dtype=np.float32)
        if n:
            data["polys"] = moved[:, :2].reshape(n, k, 2)
        else:
            data["polys"] = polys.reshape(0, polys.shape[1] if polys.ndim == 3 else 4, 2)
        return data
