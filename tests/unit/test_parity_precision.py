"""The export parity gate compares the float32 ONNX graph with a float32 eager evaluation.

Found on ICDAR2015: a rec model trained with ``Global.use_amp=true`` carries that setting in its
checkpoint config; evaluated under bf16 autocast it scored 0.6670 against the ONNX graph's 0.6518
and the gate failed a correct export.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from ocr_core.export import parity
from ocr_core.export.onnx_export import ExportedModel


def test_eager_metric_runs_in_float32_whatever_the_training_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_evaluate(cfg: dict[str, Any]) -> dict[str, float]:
        seen.update(cfg["Global"])
        return {"hmean": 1.0}

    monkeypatch.setattr("ocr_core.engine.run.evaluate_config", fake_evaluate)
    arch = {"model_type": "det", "algorithm": "DB", "Backbone": {"name": "MobileNetV3", "scale": 0.5,
            "model_name": "large"}, "Neck": {"name": "DBFPN", "out_channels": 96}, "Head": {"name": "DBHead", "k": 50}}
    cfg = {"Global": {"use_amp": True, "amp_dtype": "bfloat16", "use_gpu": True}, "Architecture": arch,
           "Eval": {"dataset": {}, "loader": {"num_workers": 4}}, "Metric": {"name": "DetMetric"}}
    model = torch.nn.Linear(1, 1)
    exported = ExportedModel(model=model, model_type="det", algorithm="DB", arch=arch, role=None, charset=None,
                             checkpoint="x.pt", checkpoint_sha256="")
    assert parity.eager_metric(cfg, exported) == {"hmean": 1.0}
    assert seen["use_amp"] is False and seen["use_gpu"] is False
    assert cfg["Global"]["use_amp"] is True  # the caller's config is not modified
