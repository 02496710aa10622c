"""Evaluation speed-ups change nothing but speed: folded BatchNorm, overlapped post-processing."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ocr_core.build import build_metric, build_post_process, create_model
from ocr_core.config import load_config, resolve_config
from ocr_core.engine.eval_speedups import OrderedBackground, fuse_conv_bn
from ocr_core.engine.loop import evaluate, forward_model

ROOT = Path(__file__).resolve().parents[2]


def _randomize_bn(model: nn.Module, seed: int = 0) -> None:
    """Running statistics as a trained model has them: measured on random images (train mode,
    cumulative average), then a random affine on top, so folding has something to fold."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(2, 3, 64, 96, generator=g))
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    model.eval()


@pytest.mark.parametrize("config", ["configs/det/ch_PP-OCRv3/ch_PP-OCRv3_det_student.yml",
                                    "configs/det/det_mv3_db.yml"])
def test_folding_removes_batchnorm_and_keeps_outputs(config: str) -> None:
    torch.manual_seed(0)
    cfg = resolve_config(load_config(ROOT / config, ["Global.use_gpu=false", "Global.pretrained_model=null"]))
    model = create_model(cfg).eval()
    _randomize_bn(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(1, 3, 96, 128)
    fused = fuse_conv_bn(model, x, lambda m, t: forward_model(m, [t], "det", training=False))
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    left = sum(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert fused is not model and n_bn > 30 and left < n_bn // 4  # nearly all folded
    other = torch.rand(1, 3, 160, 192)  # not the image the fusion was checked on
    with torch.inference_mode():
        want, got = model(other)["maps"], fused(other)["maps"]
        exact = copy.deepcopy(model).double()(other.double())["maps"]
    # folding only reorders float32 rounding: its error is of the order of float32's own error
    # (this random-weight net amplifies rounding; trained models are far tamer)
    noise = float((want.double() - exact).abs().max())
    assert float((got - want).abs().max()) <= 10 * noise + 1e-6
    assert float((got.double() - exact).abs().max()) <= 10 * noise + 1e-6
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # model untouched


class SharedConv(nn.Module):
    """conv output feeds the BatchNorm AND a residual add: folding would change the add."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


def test_folding_falls_back_when_the_conv_output_is_used_elsewhere() -> None:
    model = SharedConv().eval()
    _randomize_bn(model)
    with torch.no_grad():
        model.bn.weight.fill_(3.0)
    out = fuse_conv_bn(model, torch.rand(1, 3, 8, 8), lambda m, t: m(t))
    assert out is model


def _det_eval_setup():
    torch.manual_seed(0)
    cfg = resolve_config(load_config(ROOT / "configs/det/ch_PP-OCRv3/ch_PP-OCRv3_det_student.yml",
                                     ["Global.use_gpu=false", "Global.pretrained_model=null",
                                      "PostProcess.box_thresh=0.3", "PostProcess.thresh=0.2"]))
    model = create_model(cfg).eval()
    _randomize_bn(model, 1)
    g = torch.Generator().manual_seed(5)
    batches = []
    for _ in range(4):
        img = torch.rand(1, 3, 64, 96, generator=g)
        poly = np.array([[[10, 10], [60, 10], [60, 30], [10, 30]]], np.float32)
        batches.append([img, torch.tensor([[64.0, 96.0, 1.0, 1.0]]), [poly], [np.array([False])]])
    return cfg, model, batches


def test_fused_and_overlapped_evaluation_equals_the_plain_one() -> None:
    cfg, model, batches = _det_eval_setup()
    seen: dict[str, list] = {}
    results = {}
    for fuse in (False, True):
        for overlap in (False, True):
            key = f"fuse={fuse} overlap={overlap}"
            seen[key] = []
            post = build_post_process(cfg)
            results[key] = evaluate(model, batches, post, build_metric(cfg), device=torch.device("cpu"),
                                    show_progress=False, fuse_bn=fuse, overlap=overlap,
                                    on_batch=lambda hb, p, k=key: seen[k].append(len(p[0]["points"])))
    plain = results["fuse=False overlap=False"]
    assert sum(seen["fuse=False overlap=False"]) > 0  # the random model does produce boxes
    for key, res in results.items():
        assert {k: res[k] for k in ("precision", "recall", "hmean")} == \
            {k: plain[k] for k in ("precision", "recall", "hmean")}, key
        assert seen[key] == seen["fuse=False overlap=False"], key  # same boxes, same order
        assert res["img_s"] > 0 and res["fps"] > 0
    assert model.training is False and all(isinstance(m, nn.Module) for m in model.modules())


def test_background_errors_reach_the_caller() -> None:
    cfg, model, batches = _det_eval_setup()

    def broken(preds, shapes):  # noqa: ANN001
        raise ValueError("post-process broke")

    with pytest.raises(ValueError, match="post-process broke"):
        evaluate(model, batches, broken, build_metric(cfg), device=torch.device("cpu"), show_progress=False)
    order: list[int] = []
    bg = OrderedBackground(max_pending=2)
    for i in range(6):
        bg.submit(order.append, i)
    bg.drain()
    assert order == list(range(6))


def test_batchnorm_without_running_statistics_is_left_alone() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False), nn.Conv2d(4, 4, 1),
                          nn.BatchNorm2d(4)).eval()
    _randomize_bn(model)
    fused = fuse_conv_bn(model, torch.rand(1, 3, 8, 8), lambda m, t: m(t))
    assert isinstance(fused[1], nn.BatchNorm2d) and isinstance(fused[3], nn.Identity)
