"""LR schedules (per iteration, PaddleOCR semantics) and coupled L2 in Adam."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ocr_core.config.schema import LRConfig
from ocr_core.engine.optim import build_optimizer, lr_lambda
from ocr_core.errors import ConfigError


def test_cosine_with_warmup_matches_hand_values() -> None:
    # 2 epochs x 5 steps, warm-up 1 epoch = 5 steps from 0; cosine T_max = 10 (warm-up included)
    fn = lr_lambda(LRConfig(name="Cosine", learning_rate=1e-3, warmup_epoch=1), epochs=2, steps_per_epoch=5)
    assert fn(0) == 0.0
    assert fn(2) == pytest.approx(1e-3 * 2 / 5)
    assert fn(5) == pytest.approx(1e-3)  # cosine evaluated at step - warmup = 0
    assert fn(7) == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 2 / 10)))
    # the last iteration (9) is t=4 of T_max=10: far from 0, as in PaddleOCR
    assert fn(9) == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 4 / 10)))


def test_const_piecewise_and_step() -> None:
    assert lr_lambda(LRConfig(name="Const", learning_rate=0.5), 3, 4)(11) == 0.5
    pw = lr_lambda(LRConfig(name="Piecewise", decay_epochs=[2], values=[5e-4, 5e-5]), 4, 10)
    assert pw(19) == 5e-4 and pw(20) == 5e-5
    pw_w = lr_lambda(LRConfig(name="Piecewise", decay_epochs=[2], values=[5e-4, 5e-5], warmup_epoch=1), 4, 10)
    assert pw_w(5) == pytest.approx(2.5e-4) and pw_w(10) == 5e-4 and pw_w(30) == 5e-5
    st = lr_lambda(LRConfig(name="Step", learning_rate=1.0, step_size=1, gamma=0.5), 3, 2)
    assert [st(i) for i in range(6)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    with pytest.raises(ConfigError):
        lr_lambda(LRConfig(name="Piecewise", decay_epochs=[1], values=[1.0]), 2, 2)
    with pytest.raises(ConfigError, match="Optimizer.lr.name"):
        lr_lambda(LRConfig(name="Wiggly"), 2, 2)


def test_scheduler_steps_per_iteration() -> None:
    model = nn.Linear(2, 1)
    cfg = {"name": "Adam", "lr": {"name": "Cosine", "learning_rate": 0.01, "warmup_epoch": 1}}
    opt, sched = build_optimizer(cfg, model, epochs=2, steps_per_epoch=4)
    seen = []
    for _ in range(8):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    fn = lr_lambda(LRConfig(name="Cosine", learning_rate=0.01, warmup_epoch=1), 2, 4)
    assert seen == pytest.approx([fn(i) for i in range(8)])


def test_adam_l2_is_coupled_like_paddle() -> None:
    """Adam's first step with coupled L2: g' = g + wd*w, update = lr * m_hat/(sqrt(v_hat)+eps)."""
    torch.manual_seed(0)
    model = nn.Linear(3, 1, bias=False)
    w0 = model.weight.detach().clone()
    cfg = {"name": "Adam", "lr": {"learning_rate": 0.1}, "regularizer": {"name": "L2", "factor": 0.5}}
    opt, _ = build_optimizer(cfg, model, epochs=1, steps_per_epoch=1)
    x = torch.tensor([[1.0, 2.0, 3.0]])
    model(x).sum().backward()
    g = x.clone() + 0.5 * w0
    opt.step()
    m_hat = g  # (1-b1) g / (1-b1)
    v_hat = g * g
    expected = w0 - 0.1 * m_hat / (v_hat.sqrt() + 1e-8)
    assert torch.allclose(model.weight, expected, atol=1e-6)


def test_module_weight_decay_override_and_frozen_params() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2))
    model[1].weight_decay_override = 1e-5
    for p in model[2].parameters():
        p.requires_grad = False
    opt, _ = build_optimizer({"name": "Adam", "regularizer": {"name": "L2", "factor": 3e-5}}, model, 1, 1)
    by_decay = {g["weight_decay"]: len(g["params"]) for g in opt.param_groups}
    assert by_decay == {3e-5: 2, 1e-5: 2}  # frozen params are not optimised


def test_unsupported_optimizer_names_key() -> None:
    with pytest.raises(ConfigError, match="Optimizer.name"):
        build_optimizer({"name": "Lion"}, nn.Linear(1, 1), 1, 1)


# --- learning rate that follows the global batch (Optimizer.lr.reference_batch_size)
@pytest.mark.parametrize(("per_card", "world", "accum", "expected"), [
    (8, 1, 1, 1.25e-4),     # 1 CPU/GPU x 8 images: the guide's "about 1e-4"
    (8, 8, 1, 1e-3),        # 8 GPUs x 8 = 64: the reference itself
    (4, 4 * 2, 1, 5e-4),    # 2 nodes x 4 GPUs x 4 images = 32
    (4, 1, 4, 2.5e-4),      # 1 GPU x 4 images x 4 accumulated batches = 16
    (16, 2, 2, 1e-3),       # 2 ranks x 16 x 2 accumulation = 64
])
def test_lr_scales_with_global_batch(per_card: int, world: int, accum: int, expected: float) -> None:
    from ocr_core.engine.run import global_batch_size

    cfg = {"Train": {"loader": {"batch_size_per_card": per_card}}}
    gb = global_batch_size(cfg, world, accum)
    assert gb == per_card * world * accum
    opt_cfg = {"name": "Adam", "lr": {"name": "Cosine", "learning_rate": 1e-3, "warmup_epoch": 1,
                                      "reference_batch_size": 64}}
    opt, sched = build_optimizer(opt_cfg, nn.Linear(2, 1), epochs=2, steps_per_epoch=4, global_batch=gb)
    lrs = []
    for _ in range(8):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    # warm-up from 0 to the scaled rate over 4 steps, then the scaled cosine
    fn = lr_lambda(LRConfig(name="Cosine", learning_rate=expected, warmup_epoch=1), 2, 4)
    assert lrs == pytest.approx([fn(i) for i in range(8)])
    assert lrs[4] == pytest.approx(expected)


def test_lr_scaling_piecewise_values_and_log_line() -> None:
    from ocr_core.engine.optim import scale_lr

    lr = LRConfig(name="Piecewise", decay_epochs=[700, 800], values=[1e-3, 1e-4, 1e-5], warmup_epoch=5,
                  reference_batch_size=1024)
    scaled, note = scale_lr(lr, 128)
    assert scaled.values == pytest.approx([1.25e-4, 1.25e-5, 1.25e-6])
    assert note is not None and "128/1024" in note and "[0.001, 0.0001, 1e-05]" in note
    plain, none = scale_lr(LRConfig(learning_rate=1e-3), 128)
    assert none is None and plain.learning_rate == 1e-3  # off unless set: PaddleOCR configs unchanged
    _, det_note = scale_lr(LRConfig(name="Cosine", learning_rate=1e-3, reference_batch_size=64), 8)
    assert det_note is not None and det_note.startswith("lr 0.000125 = 0.001 x 8/64")
    with pytest.raises(ConfigError, match="reference_batch_size"):
        scale_lr(LRConfig(reference_batch_size=0), 8)
    with pytest.raises(ConfigError, match="reference_batch_size"):
        scale_lr(LRConfig(reference_batch_size=64), None)
