"""One base metric per distillation role (PaddleOCR ``DistillationMetric``).

``post_result`` is ``{role: result}`` (from a ``Distillation*PostProcess``). Naming follows
PaddleOCR's ``get_metric``: the ``key`` role's metrics are reported un-prefixed (so the main
indicator, e.g. ``hmean``, is the key role's), every other role as ``{role}_{name}``
(``Student2_hmean``). Counters are flattened as ``{role}/{counter}`` so ranks can sum them.
"""

from __future__ import annotations

from typing import Any

from ocr_core.metrics import METRICS


@METRICS.register()
class DistillationMetric:
    """Wrap ``base_metric_name`` (default ``RecMetric``, as in PaddleOCR) once per role.

    Args:
        key: Role whose metrics are reported without a prefix (e.g. ``Student``).
        base_metric_name: Registered metric to instantiate per role.
        main_indicator: Passed to each base metric; None keeps the base metric's default.
        ignore_space: Passed to the base metric when set (PaddleOCR forwards extra keys; the
            rec distillation configs set ``ignore_space``).
    """

    def __init__(
        self,
        key: str | None = None,
        base_metric_name: str | None = None,
        main_indicator: str | None = None,
        ignore_space: bool | None = None,
    ) -> None:
        self.key = key
        self.base_metric_name = base_metric_name or "RecMetric"
        self._base_cls = METRICS.get(self.base_metric_name, "Metric.base_metric_name")
        self._base_kwargs: dict[str, Any] = {}
        if main_indicator is not None:
            self._base_kwargs["main_indicator"] = main_indicator
        if ignore_space is not None:
            self._base_kwargs["ignore_space"] = ignore_space
        probe = self._new_base()
        self.main_indicator: str = probe.main_indicator
        self.metrics: dict[str, Any] = {}

    def _new_base(self) -> Any:
        return self._base_cls(**self._base_kwargs)

    def _metric_for(self, role: str) -> Any:
        if role not in self.metrics:
            self.metrics[role] = self._new_base()
        return self.metrics[role]

    def __call__(self, post_result: dict[str, Any], batch: list[Any]) -> None:
        if not isinstance(post_result, dict):
            raise TypeError("DistillationMetric expects {role: post_result}")
        for role, result in post_result.items():
            self._metric_for(role)(result, batch)

    def counters(self) -> dict[str, float]:
        """``{role}/{counter}`` for every role seen so far."""
        return {f"{role}/{k}": v for role, m in self.metrics.items() for k, v in m.counters().items()}

    def set_counters(self, counters: dict[str, float]) -> None:
        per_role: dict[str, dict[str, float]] = {}
        for flat, value in counters.items():
            role, _, name = flat.partition("/")
            per_role.setdefault(role, {})[name] = value
        for role, values in per_role.items():
            self._metric_for(role).set_counters(values)

    def get_metric(self) -> dict[str, float]:
        """Key role un-prefixed, other roles as ``{role}_{name}``; resets every base metric."""
        output: dict[str, float] = {}
        for role, metric in self.metrics.items():
            values = metric.get_metric()
            if role == self.key:
                output.update(values)
            else:
                output.update({f"{role}_{k}": v for k, v in values.items()})
        return output

    def reset(self) -> None:
        for metric in self.metrics.values():
            metric.reset()


__all__ = ["DistillationMetric"]
