"""The export parity gate compares the float32 ONNX graph with a float32 eager evaluation.

Found on ICDAR2015: a rec model trained with ``Global.use_amp=true`` carries that setting in its
checkpoint config; evaluated under bf16 autocast it scored 0.6670 against the ONNX graph's 0.6518
and the gate failed a correct export.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ocr_core.export import parity
from ocr_core.export.onnx_export import ExportedModel


def test_eager_metric_runs_in_float32_whatever_the_training_precision(tmp_path: Path) -> None:
    arch = {"model_type": "det", "algorithm": "DB", "Backbone": {"name": "MobileNetV3", "scale": 0.5,
            "model_name": "large"}, "Neck": {"name": "DBFPN", "out_channels": 96}, "Head": {"name": "DBHead", "k": 50}}
    cfg = {"Global": {"use_amp": True, "amp_dtype": "bfloat16", "use_gpu": True, "checkpoints": "x.pt"},
           "Architecture": arch, "Eval": {"dataset": {}, "loader": {"num_workers": 4}}, "Metric": {"name": "DetMetric"}}
    exported = ExportedModel(model=torch.nn.Linear(1, 1), model_type="det", algorithm="DB", arch=arch, role=None,
                             charset=None, checkpoint="x.pt", checkpoint_sha256="")
    plain = parity.eager_config(cfg, exported, tmp_path)
    g = plain["Global"]
    assert g["use_amp"] is False and g["use_gpu"] is False and g["distributed"] is False
    # the weights are the exported model's, in memory: no checkpoint is read again
    assert g["checkpoints"] is None and g["pretrained_model"] is None and g["save_model_dir"] == str(tmp_path)
    assert plain["Eval"]["loader"]["num_workers"] == 0
    assert cfg["Global"]["use_amp"] is True and cfg["Eval"]["loader"]["num_workers"] == 4  # the caller's is untouched
