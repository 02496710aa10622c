"""DB detection losses, distillation losses and CombinedLoss against hand / numpy numbers."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from ocr_core.build import build_loss
from ocr_core.errors import ConfigError
from ocr_core.losses import LOSSES
from ocr_core.losses.combined_loss import CombinedLoss
from ocr_core.losses.det_db_loss import BalanceLoss, DBLoss, DiceLoss, MaskL1Loss
from ocr_core.losses.distillation_loss import (
    DistillationDBLoss,
    DistillationDilaDBLoss,
    DistillationDMLLoss,
    dilated_teacher_target,
)

EPS = 1e-6

# A 1x4x4 hand case: 3 positive pixels, 12 negatives, one masked-out negative.
PRED = np.array(
    [[[0.9, 0.8, 0.1, 0.0], [0.7, 0.2, 0.3, 0.1], [0.0, 0.4, 0.6, 0.0], [0.1, 0.0, 0.0, 0.5]]], np.float32
)
GT = np.array([[[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]], np.float32)
MASK = np.ones((1, 4, 4), np.float32)
MASK[0, 3, 3] = 0


def t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def np_dice(p, g, m):
    return 1 - 2 * (p * g * m).sum() / ((p * m).sum() + (g * m).sum() + EPS)


def paddle_balance_sorted(p, g, m, loss_fn, ratio=3.0):
    """Literal numpy transcription of PaddleOCR BalanceLoss.forward (sort-based)."""
    positive = g * m
    negative = (1 - g) * m
    positive_count = int(positive.sum())
    negative_count = int(min(negative.sum(), positive_count * ratio))
    loss = loss_fn(p, g, m)
    positive_loss = positive * loss
    negative_loss = (negative * loss).reshape(-1)
    if negative_count > 0:
        top = np.sort(negative_loss)[::-1][:negative_count]
        return (positive_loss.sum() + top.sum()) / (positive_count + negative_count + EPS)
    return positive_loss.sum() / (positive_count + EPS)


def test_dice_hand_value():
    # intersection = .9+.8+.7 = 2.4; sum(p*m) = 4.7 - 0.5 (masked out) = 4.2; sum(g*m) = 3
    expected = 1 - 2 * 2.4 / (4.2 + 3 + EPS)  # = 1/3
    got = DiceLoss()(t(PRED), t(GT), t(MASK)).item()
    assert got == pytest.approx(expected, rel=1e-6)
    assert got == pytest.approx(np_dice(PRED, GT, MASK), rel=1e-6)


def test_mask_l1_hand_value():
    gt = np.full((1, 4, 4), 0.3, np.float32)
    expected = (np.abs(PRED - gt) * MASK).sum() / (MASK.sum() + EPS)
    got = MaskL1Loss()(t(PRED), t(gt), t(MASK)).item()
    assert got == pytest.approx(expected, rel=1e-6)
    # by hand: |0.5 - 0.3| at (3,3) is masked out, 15 pixels remain
    assert got == pytest.approx((np.abs(PRED - 0.3).sum() - 0.2) / (15 + EPS), rel=1e-5)


@pytest.mark.parametrize(
    "gt,mask",
    [
        (GT, MASK),  # P=3, N=min(12, 9)=9: ratio-limited
        (np.pad(np.ones((1, 3, 4), np.float32), ((0, 0), (0, 1), (0, 0))), MASK),  # P=12, N=3
        (np.zeros((1, 4, 4), np.float32), MASK),  # no positive: 0
    ],
)
def test_balance_dice_closed_form_equals_sorted_ohem(gt, mask):
    got = BalanceLoss(True, "DiceLoss", 3).forward(t(PRED), t(gt), t(mask)).item()
    dice = np_dice(PRED, gt, mask)
    p = int((gt * mask).sum())
    n = int(min(((1 - gt) * mask).sum(), 3 * p))
    assert got == pytest.approx(dice * (p + n) / (p + n + EPS), rel=1e-6, abs=1e-9)
    assert got == pytest.approx(paddle_balance_sorted(PRED, gt, mask, np_dice), rel=1e-6, abs=1e-9)


def test_balance_dice_no_positive_is_zero():
    zero = np.zeros((1, 4, 4), np.float32)
    assert BalanceLoss().forward(t(PRED), t(zero), t(MASK)).item() == 0.0


def test_balance_mask_l1_matches_sorted_ohem():
    def np_l1(p, g, m):
        return (np.abs(p - g) * m).sum() / (m.sum() + EPS)

    got = BalanceLoss(True, "MaskL1Loss", 3).forward(t(PRED), t(GT), t(MASK)).item()
    assert got == pytest.approx(paddle_balance_sorted(PRED, GT, MASK, np_l1), rel=1e-6)


def test_bce_ohem_hand_case():
    pred = np.array([[[0.8, 0.1, 0.6], [0.3, 0.05, 0.2]]], np.float32)
    gt = np.array([[[1, 0, 0], [0, 0, 0]]], np.float32)
    mask = np.ones_like(gt)
    # P = 1, N = min(5, 3) = 3: hardest negatives are 0.6, 0.3, 0.2
    expected = (-math.log(0.8) - math.log(0.4) - math.log(0.7) - math.log(0.8)) / (1 + 3 + EPS)
    got = BalanceLoss(True, "BCELoss", 3).forward(t(pred), t(gt), t(mask)).item()
    assert got == pytest.approx(expected, rel=1e-5)
    # unbalanced: masked mean of per-pixel BCE
    bce = -(gt * np.log(pred) + (1 - gt) * np.log(1 - pred))
    got_plain = BalanceLoss(False, "BCELoss").forward(t(pred), t(gt), t(mask)).item()
    assert got_plain == pytest.approx(bce.sum() / (6 + EPS), rel=1e-5)


def test_euclidean_ohem_hand_case():
    pred = np.array([[[0.8, 0.1, 0.6], [0.3, 0.05, 0.2]]], np.float32)
    gt = np.array([[[1, 0, 0], [0, 0, 0]]], np.float32)
    expected = (0.2**2 + 0.6**2 + 0.3**2 + 0.2**2) / (4 + EPS)
    got = BalanceLoss(True, "Euclidean", 3).forward(t(pred), t(gt), t(np.ones_like(gt))).item()
    assert got == pytest.approx(expected, rel=1e-5)


def _det_batch(rng: np.random.Generator, b: int = 2, h: int = 8, w: int = 8):
    gt = np.zeros((b, h, w), np.float32)
    gt[:, 2:5, 1:6] = 1
    thr_map = rng.uniform(0.3, 0.7, (b, h, w)).astype(np.float32)
    thr_mask = (rng.uniform(size=(b, h, w)) > 0.5).astype(np.float32)
    shrink_mask = np.ones((b, h, w), np.float32)
    shrink_mask[:, 0, 0] = 0
    batch = [torch.zeros(b, 3, h, w), t(thr_map), t(thr_mask), t(gt), t(shrink_mask)]
    return batch, (thr_map, thr_mask, gt, shrink_mask)


def test_db_loss_total_and_terms():
    rng = np.random.default_rng(0)
    batch, (thr_map, thr_mask, gt, smask) = _det_batch(rng)
    maps = rng.uniform(0.01, 0.99, (2, 3, 8, 8)).astype(np.float32)
    out = DBLoss()({"maps": t(maps)}, batch)
    assert set(out) == {"loss", "loss_shrink_maps", "loss_threshold_maps", "loss_binary_maps", "loss_cbn"}
    assert all(v.shape == () for v in out.values())
    shrink = paddle_balance_sorted(maps[:, 0], gt, smask, np_dice)
    l1 = (np.abs(maps[:, 1] - thr_map) * thr_mask).sum() / (thr_mask.sum() + EPS)
    binary = np_dice(maps[:, 2], gt, smask)
    assert out["loss_shrink_maps"].item() == pytest.approx(5 * shrink, rel=1e-5)
    assert out["loss_threshold_maps"].item() == pytest.approx(10 * l1, rel=1e-5)
    assert out["loss_binary_maps"].item() == pytest.approx(binary, rel=1e-5)
    assert out["loss_cbn"].item() == 0.0
    assert out["loss"].item() == pytest.approx(5 * shrink + 10 * l1 + binary, rel=1e-5)


def test_db_loss_gradient_and_registry_build():
    rng = np.random.default_rng(1)
    batch, _ = _det_batch(rng)
    maps = torch.rand(2, 3, 8, 8, requires_grad=True)
    loss = build_loss({"Loss": {"name": "DBLoss", "balance_loss": True, "main_loss_type": "DiceLoss", "alpha": 5,
                                "beta": 10, "ohem_ratio": 3}})({"maps": maps}, batch)["loss"]
    loss.backward()
    assert maps.grad is not None and torch.isfinite(maps.grad).all()
    with pytest.raises(ConfigError, match="Loss.ohem"):
        build_loss({"Loss": {"name": "DBLoss", "ohem": 3}})


@pytest.mark.parametrize("shape", [(1, 5, 7), (2, 9, 6)])
def test_dilated_teacher_target_matches_cv2(shape):
    rng = np.random.default_rng(2)
    teacher = rng.uniform(size=shape).astype(np.float32)
    teacher[:, 0, :] = 0.9  # touch the borders
    teacher[:, :, -1] = 0.9
    got = dilated_teacher_target(t(teacher)).numpy()
    kernel = np.array([[1, 1], [1, 1]])
    for i in range(shape[0]):
        expected = cv2.dilate((teacher[i] > 0.3).astype(np.uint8), kernel)
        np.testing.assert_array_equal(got[i], expected.astype(np.float32))


def test_dila_db_loss_value_keys_and_no_teacher_grad():
    rng = np.random.default_rng(3)
    batch, (_, _, _, smask) = _det_batch(rng)
    stu = torch.rand(2, 3, 8, 8, requires_grad=True)
    tch = torch.rand(2, 1, 8, 8, requires_grad=True)  # eval-mode teacher: one channel
    loss_fn = DistillationDilaDBLoss(model_name_pairs=[["Student", "Teacher"]], key="maps")
    out = loss_fn({"Student": {"maps": stu}, "Teacher": {"maps": tch}}, batch)
    assert set(out) == {"dila_dbloss_Student_Teacher", "loss"}
    target = np.stack(
        [cv2.dilate((tch[i, 0].detach().numpy() > 0.3).astype(np.uint8), np.ones((2, 2))) for i in range(2)]
    ).astype(np.float32)
    s = stu.detach().numpy()
    expected = 5 * paddle_balance_sorted(s[:, 0], target, smask, np_dice) + np_dice(s[:, 2], target, smask)
    assert out["loss"].item() == pytest.approx(expected, rel=1e-5)
    out["loss"].backward()
    assert stu.grad is not None
    assert tch.grad is None


def test_distillation_db_loss_keys_and_sum():
    rng = np.random.default_rng(4)
    batch, _ = _det_batch(rng)
    preds = {"Student": {"maps": torch.rand(2, 3, 8, 8)}, "Student2": {"maps": torch.rand(2, 3, 8, 8)}}
    out = DistillationDBLoss(model_name_list=["Student", "Student2"])(preds, batch)
    terms = ["loss_shrink_maps", "loss_threshold_maps", "loss_binary_maps", "loss_cbn"]
    assert set(out) == {f"db_{m}_{k}" for m in ("Student", "Student2") for k in terms} | {"loss"}
    ref = DBLoss()
    expected = ref(preds["Student"], batch)["loss"] + ref(preds["Student2"], batch)["loss"]
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert out["db_Student_loss_shrink_maps"].item() == pytest.approx(
        ref(preds["Student"], batch)["loss_shrink_maps"].item(), rel=1e-6
    )


def test_dml_map_kl_by_hand():
    e = 1e-5
    p1 = np.array([[[0.2, 0.9], [0.5, 0.0]], [[0.7, 0.1], [0.3, 1.0]]], np.float32)
    p2 = np.array([[[0.6, 0.9], [0.1, 0.4]], [[0.7, 0.2], [0.8, 0.5]]], np.float32)
    # one pixel by hand
    px = 0.5 * (0.6 * math.log((0.6 + e) / (0.2 + e) + e) + 0.2 * math.log((0.2 + e) / (0.6 + e) + e))
    kl = 0.5 * (p2 * np.log((p2 + e) / (p1 + e) + e) + p1 * np.log((p1 + e) / (p2 + e) + e))
    assert kl[0, 0, 0] == pytest.approx(px, rel=1e-5)
    expected = kl.mean(axis=(1, 2)).mean()
    maps1 = np.stack([p1, np.zeros_like(p1), np.zeros_like(p1)], 1)
    maps2 = np.stack([p2, np.ones_like(p2), np.ones_like(p2)], 1)
    loss_fn = DistillationDMLLoss(model_name_pairs=["Student", "Student2"], maps_name="thrink_maps", key="maps")
    assert loss_fn.model_name_pairs == [["Student", "Student2"]]
    out = loss_fn({"Student": {"maps": t(maps1)}, "Student2": {"maps": t(maps2)}}, [])
    assert set(out) == {"dml_thrink_maps_0", "loss"}
    assert out["dml_thrink_maps_0"].shape == ()
    assert out["loss"].item() == pytest.approx(expected, rel=1e-5)


def test_dml_rec_softmax_log_matches_torch_kl_div():
    torch.manual_seed(0)
    a, b = torch.randn(3, 5, 7), torch.randn(3, 5, 7)
    loss_fn = DistillationDMLLoss(model_name_pairs=["Student", "Teacher"], act="softmax", use_log=True,
                                  key="head_out", multi_head=True, dis_head="ctc", name="dml_ctc")
    preds = {"Student": {"head_out": {"ctc": a}}, "Teacher": {"head_out": {"ctc": b}}}
    out = loss_fn(preds, [])
    pa, pb = torch.softmax(a, -1) + 1e-10, torch.softmax(b, -1) + 1e-10
    kl = torch.nn.functional.kl_div
    expected = (kl(pa.log(), pb, reduction="batchmean") + kl(pb.log(), pa, reduction="batchmean")) / 2
    assert set(out) == {"dml_ctc_0", "loss"}
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-4)


def test_combined_loss_weights_and_keys():
    rng = np.random.default_rng(5)
    batch, _ = _det_batch(rng)
    preds = {
        "Student": {"maps": torch.rand(2, 3, 8, 8)},
        "Student2": {"maps": torch.rand(2, 3, 8, 8)},
        "Teacher": {"maps": torch.rand(2, 1, 8, 8)},
    }
    cfg = {
        "name": "CombinedLoss",
        "loss_config_list": [
            {"DistillationDilaDBLoss": {"weight": 1.0, "model_name_pairs": [["Student", "Teacher"],
                                        ["Student2", "Teacher"]], "key": "maps", "balance_loss": True,
                                        "main_loss_type": "DiceLoss", "alpha": 5, "beta": 10, "ohem_ratio": 3}},
            {"DistillationDMLLoss": {"weight": 0.5, "model_name_pairs": ["Student", "Student2"],
                                     "maps_name": "thrink_maps", "key": "maps"}},
            {"DistillationDBLoss": {"weight": 2.0, "model_name_list": ["Student", "Student2"],
                                    "name": "DBLoss", "balance_loss": True, "main_loss_type": "DiceLoss",
                                    "alpha": 5, "beta": 10, "ohem_ratio": 3}},
        ],
    }
    loss_fn = build_loss({"Loss": cfg})
    assert isinstance(loss_fn, CombinedLoss)
    out = loss_fn(preds, batch)
    dila = DistillationDilaDBLoss(model_name_pairs=[["Student", "Teacher"], ["Student2", "Teacher"]], key="maps")(
        preds, batch)
    dml = DistillationDMLLoss(model_name_pairs=["Student", "Student2"], maps_name="thrink_maps", key="maps")(
        preds, batch)
    db = DistillationDBLoss(model_name_list=["Student", "Student2"], name="DBLoss")(preds, batch)
    expected = dila["loss"] + 0.5 * dml["loss"] + 2.0 * db["loss"]
    assert out["loss"].shape == ()
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert out["dml_thrink_maps_0"].item() == pytest.approx(0.5 * dml["dml_thrink_maps_0"].item(), rel=1e-6)
    assert out["DBLoss_Student_loss_shrink_maps"].item() == pytest.approx(
        2.0 * db["DBLoss_Student_loss_shrink_maps"].item(), rel=1e-6)
    assert "dila_dbloss_Student2_Teacher" in out


@pytest.mark.parametrize(
    "entry,path",
    [
        ({"DBLoss": {"alpha": 5}}, "Loss.loss_config_list[0].DBLoss.weight"),
        ({"DBLoss": {"weight": 1.0, "alpah": 5}}, "Loss.loss_config_list[0].DBLoss.alpah"),
        ({"DBLoss": {"weight": 1.0, "alpha": "five"}}, "Loss.loss_config_list[0].DBLoss.alpha"),
        ({"NoSuchLoss": {"weight": 1.0}}, "Loss.loss_config_list[0]"),
        ({"DistillationDMLLoss": {"weight": 1.0, "model_name_pairs": []}},
         "Loss.loss_config_list[0].DistillationDMLLoss.model_name_pairs"),
    ],
)
def test_combined_loss_errors_name_the_key_path(entry, path):
    with pytest.raises(ConfigError) as err:
        CombinedLoss([entry])
    assert err.value.key_path == path


def test_registered_names():
    for name in ("DBLoss", "DistillationDBLoss", "DistillationDilaDBLoss", "DistillationDMLLoss", "CombinedLoss"):
        assert name in LOSSES
