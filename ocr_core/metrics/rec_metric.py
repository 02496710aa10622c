"""Recognition accuracy and normalised edit distance (PaddleOCR ``RecMetric`` semantics).

Per pair: with ``ignore_space`` remove spaces from both strings; then with ``is_filter`` keep
only ``[0-9A-Za-z]`` and lowercase. ``acc = correct / (N + 1e-5)`` and
``norm_edit_dis = 1 - sum(Levenshtein.normalized_distance) / (N + 1e-5)``, where the normalised
distance is the edit distance divided by the longer length.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from typing import Any

from rapidfuzz.distance import Levenshtein

from ocr_core.metrics import METRICS

_ALNUM = frozenset(string.digits + string.ascii_letters)
EPS = 1e-5


@METRICS.register()
class RecMetric:
    """Accumulating recognition metric.

    Args:
        main_indicator: Key of :meth:`get_metric` used to pick the best model.
        is_filter: Compare only alphanumerics, case-insensitively.
        ignore_space: Remove spaces before comparing (PP-OCRv3 configs set False).

    Besides the counters, the metric keeps ``(pred, gt, correct)`` for every sample seen since
    the last reset (raw texts; ``correct`` after normalisation), for error visualisation; read
    them with :meth:`samples` before :meth:`get_metric`, which resets.
    """

    max_samples = 200_000  # bound on kept per-sample results
    correct_num: float
    all_num: float
    norm_edit_dis: float

    def __init__(
        self, main_indicator: str = "acc", is_filter: bool = False, ignore_space: bool = True
    ) -> None:
        self.main_indicator = main_indicator
        self.is_filter = is_filter
        self.ignore_space = ignore_space
        self.reset()

    def _normalize(self, text: str) -> str:
        if self.ignore_space:
            text = text.replace(" ", "")
        if self.is_filter:
            text = "".join(c for c in text if c in _ALNUM).lower()
        return text

    def __call__(
        self,
        pred_label: tuple[Sequence[tuple[str, Any]], Sequence[tuple[str, Any]]],
        batch: Any = None,
    ) -> dict[str, float]:
        """Accumulate one batch of ``(preds, labels)``, each a list of ``(text, conf)``.

        Returns:
            This batch's ``{"acc", "norm_edit_dis"}``.
        """
        preds, labels = pred_label
        correct = 0
        total = 0
        dist = 0.0
        for (pred_raw, _), (gt_raw, _) in zip(preds, labels):
            pred, gt = self._normalize(pred_raw), self._normalize(gt_raw)
            dist += Levenshtein.normalized_distance(pred, gt)
            ok = pred == gt
            correct += ok
            total += 1
            if len(self._samples) < self.max_samples:
                self._samples.append((pred_raw, gt_raw, ok))
        self.correct_num += correct
        self.all_num += total
        self.norm_edit_dis += dist
        return {"acc": correct / (total + EPS), "norm_edit_dis": 1 - dist / (total + EPS)}

    def counters(self) -> dict[str, float]:
        """Summable state (all-reduce across ranks, then :meth:`set_counters`)."""
        return {
            "correct": float(self.correct_num),
            "all": float(self.all_num),
            "norm_edit_dis_sum": float(self.norm_edit_dis),
        }

    def set_counters(self, counters: dict[str, float]) -> None:
        self.correct_num = counters["correct"]
        self.all_num = counters["all"]
        self.norm_edit_dis = counters["norm_edit_dis_sum"]

    def samples(self) -> list[tuple[str, str, bool]]:
        """``(pred, gt, correct)`` for the samples seen since the last reset (this rank only)."""
        return list(self._samples)

    def get_metric(self) -> dict[str, float]:
        """``{"acc", "norm_edit_dis"}`` over everything accumulated; then reset."""
        acc = 1.0 * self.correct_num / (self.all_num + EPS)
        norm_edit_dis = 1 - self.norm_edit_dis / (self.all_num + EPS)
        self.reset()
        return {"acc": float(acc), "norm_edit_dis": float(norm_edit_dis)}

    def reset(self) -> None:
        self.correct_num = 0
        self.all_num = 0
        self.norm_edit_dis = 0.0
        self._samples: list[tuple[str, str, bool]] = []


__all__ = ["RecMetric"]
