"""Recognition backbones, necks, heads and losses (PP-OCRv3 SVTR_LCNet and the CRNN baseline).

Models are composed from the classes directly; inputs are tiny (batch 2).
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from ocr_core.errors import ConfigError
from ocr_core.losses.rec_ctc_loss import CTCLoss
from ocr_core.losses.rec_multi_loss import MultiLoss
from ocr_core.losses.rec_sar_loss import SARLoss
from ocr_core.modeling.backbones import rec_mobilenet_v1_enhance as mv1e
from ocr_core.modeling.backbones import rec_mobilenet_v3 as rmv3
from ocr_core.modeling.backbones.rec_mobilenet_v1_enhance import MobileNetV1Enhance
from ocr_core.modeling.backbones.rec_mobilenet_v3 import RecMobileNetV3
from ocr_core.modeling.heads.rec_ctc_head import CTCHead
from ocr_core.modeling.heads.rec_multi_head import MultiHead
from ocr_core.modeling.heads.rec_sar_head import SARHead
from ocr_core.modeling.necks.rec_sequence_encoder import SequenceEncoder

N_CTC = 97  # en_dict.txt (95) + space + blank
HEAD_LIST = [
    {"CTCHead": {"Neck": {"name": "svtr", "dims": 64, "depth": 2, "hidden_dims": 120, "use_guide": True},
                 "Head": {"fc_decay": 0.00001}}},
    {"SARHead": {"enc_dim": 512, "max_text_length": 25}},
]


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters() if p.requires_grad)


class SVTRLCNet(nn.Module):
    """en_PP-OCRv3_rec.yml: MobileNetV1Enhance + MultiHead(CTC with SVTR neck, SAR)."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = MobileNetV1Enhance(scale=0.5, last_conv_stride=[1, 2], last_pool_type="avg",
                                           last_pool_kernel_size=[2, 2])
        self.head = MultiHead(self.backbone.out_channels,
                              {"CTCLabelDecode": N_CTC, "SARLabelDecode": N_CTC + 2}, HEAD_LIST)

    def forward(self, x, targets=None):
        return self.head(self.backbone(x), targets)


def crnn(n_classes: int) -> nn.Sequential:
    """rec_mv3_none_bilstm_ctc / rec_icdar15_train: MobileNetV3 large x0.5 + BiLSTM 96 + CTC."""
    bb = RecMobileNetV3(model_name="large", scale=0.5)
    neck = SequenceEncoder(bb.out_channels, "rnn", hidden_size=96)
    return nn.Sequential(bb, neck, CTCHead(neck.out_channels, n_classes, fc_decay=0.0))


def sar_label(b: int, length: int = 25, n_ctc: int = N_CTC, seed: int = 0) -> torch.Tensor:
    """SAR labels: BOS, chars, EOS, PAD... with BOS/EOS = n_ctc, PAD = n_ctc + 1."""
    g = torch.Generator().manual_seed(seed)
    lab = torch.full((b, length), n_ctc + 1, dtype=torch.long)
    for i, n in enumerate([min(3, length - 2), min(6, length - 2)][:b]):
        lab[i, 0] = n_ctc
        lab[i, 1:n + 1] = torch.randint(0, n_ctc - 1, (n,), generator=g)
        lab[i, n + 1] = n_ctc
    return lab


def multi_batch(b: int = 2, width: int = 64) -> list[torch.Tensor]:
    """[image, label_ctc, label_sar, length, valid_ratio] as KeepKeys emits for PP-OCRv3."""
    g = torch.Generator().manual_seed(1)
    label_ctc = torch.zeros(b, 25, dtype=torch.long)
    length = torch.tensor([3, 6][:b])
    for i, n in enumerate(length.tolist()):
        label_ctc[i, :n] = torch.randint(1, N_CTC, (n,), generator=g)
    return [torch.randn(b, 3, 48, width, generator=g), label_ctc, sar_label(b), length,
            torch.tensor([0.75, 1.0][:b])]


@pytest.fixture(scope="module")
def svtr() -> SVTRLCNet:
    torch.manual_seed(0)
    return SVTRLCNet()


# ------------------------------------------------------------------------------------ shapes


def test_mv1_enhance_ppocrv3_output_shape() -> None:
    bb = MobileNetV1Enhance(scale=0.5, last_conv_stride=[1, 2], last_pool_type="avg",
                            last_pool_kernel_size=[2, 2]).eval()
    with torch.no_grad():
        assert bb(torch.zeros(2, 3, 48, 320)).shape == (2, 512, 1, 40)
    assert bb.out_channels == 512


def test_mv1_enhance_defaults_max_pool() -> None:
    bb = MobileNetV1Enhance().eval()  # last stride 1, 2x2 max pool: 32x100 -> [1, 25]
    with torch.no_grad():
        assert bb(torch.zeros(1, 3, 32, 100)).shape == (1, 512, 1, 25)


def test_rec_mobilenet_v3_large_output_shape() -> None:
    bb = RecMobileNetV3(model_name="large", scale=0.5).eval()
    with torch.no_grad():
        assert bb(torch.zeros(2, 3, 32, 100)).shape == (2, 480, 1, 25)
    small = RecMobileNetV3(model_name="small", scale=0.5, small_stride=[1, 2, 2, 2]).eval()
    with torch.no_grad():
        assert small(torch.zeros(1, 3, 32, 100)).shape == (1, small.out_channels, 1, 25)


def test_se_gates_use_the_right_hardsigmoid() -> None:
    """MV1Enhance SE: Paddle default hardsigmoid (slope 1/6); rec MV3 SE: slope 0.2."""
    x = torch.ones(1, 8, 2, 2)
    for module, slope in ((mv1e.SEModule(8), 1 / 6), (rmv3.SEModule(8), 0.2)):
        nn.init.zeros_(module.conv2.weight)
        nn.init.constant_(module.conv2.bias, 1.2)
        torch.testing.assert_close(module(x), x * (1.2 * slope + 0.5))


# ------------------------------------------------------------------------------ param counts


def test_crnn_parameter_count() -> None:
    # SPEC 2.3 "1.46M trainable" matches the en_dict head (95 chars + blank = 96 classes,
    # rec_icdar15_train.yml). With the 36-char default dict (37 classes) the exact trainable
    # count is 1,451,787 (1.45M); only counting BN running stats (Paddle lists them as
    # parameters) brings that to 1.46M.
    m96 = crnn(96)
    assert n_params(m96) == 1_463_174
    assert 1_455_000 <= n_params(m96) < 1_465_000
    m37 = crnn(37)
    assert n_params(m37) == 1_451_787
    bn_stats = sum(b.numel() for n, b in m37.named_buffers() if not n.endswith("num_batches_tracked"))
    assert 1_455_000 <= n_params(m37) + bn_stats < 1_465_000
    assert n_params(m37[0]) == 778_022 and n_params(m37[1]) == 666_624


def test_svtr_lcnet_parameter_count(svtr: SVTRLCNet) -> None:
    total, backbone = n_params(svtr), n_params(svtr.backbone)
    assert abs(total - 13.7e6) / 13.7e6 < 0.01, total
    assert abs(backbone - 1.02e6) / 1.02e6 < 0.01, backbone
    assert abs(n_params(svtr.head) - 12.69e6) / 12.69e6 < 0.01
    assert (total, backbone) == (13_707_284, 1_016_160)


def test_inference_path_layer_order_matches_official_onnx(svtr: SVTRLCNet) -> None:
    """Backbone + SVTR neck + CTC head hold 82 Conv/BN/Linear/LayerNorm layers (the official rec
    ONNX has 82), and they run in registration order, so weights map in forward order."""
    kinds = (nn.Conv2d, nn.BatchNorm2d, nn.Linear, nn.LayerNorm)
    registered = [m for name, m in svtr.named_modules() if isinstance(m, kinds) and "sar_head" not in name]
    executed: list[nn.Module] = []
    hooks = [m.register_forward_hook(lambda mod, i, o: executed.append(mod)) for m in registered]
    svtr.eval()
    try:
        with torch.no_grad():
            svtr(torch.zeros(1, 3, 48, 64))
    finally:
        for h in hooks:
            h.remove()
        svtr.train()
    assert len(registered) == 82
    assert [id(m) for m in executed] == [id(m) for m in registered]


# -------------------------------------------------------------------------- output contracts


def test_multihead_training_and_eval_outputs(svtr: SVTRLCNet) -> None:
    batch = multi_batch(2, width=64)  # W 64 -> T 8
    svtr.train()
    out = svtr(batch[0], batch[1:])
    assert set(out) == {"ctc", "ctc_neck", "sar"}
    assert out["ctc"].shape == (2, 8, N_CTC)
    assert out["ctc_neck"].shape == (2, 8, 64)
    assert out["sar"].shape == (2, 25, N_CTC + 1)  # SAR predicts every class but <PAD>
    svtr.eval()
    with torch.no_grad():
        ev = svtr(batch[0])
    svtr.train()
    assert set(ev) == {"ctc"}
    torch.testing.assert_close(ev["ctc"].sum(-1), torch.ones(2, 8))
    with pytest.raises(ValueError, match="targets"):
        svtr(batch[0])


def test_ctc_head_train_logits_eval_softmax() -> None:
    head = CTCHead(16, 5, fc_decay=1e-5, return_feats=True)
    x = torch.randn(2, 4, 16)
    tr = head(x)
    assert set(tr) == {"ctc", "ctc_feats"} and tr["ctc"].shape == (2, 4, 5)
    head.eval()
    torch.testing.assert_close(head(x)["ctc"], tr["ctc"].softmax(-1))
    assert head.fc_decay == 1e-5 and head.fc.weight_decay_override == 1e-5
    bound = 1 / math.sqrt(16)
    assert head.fc.weight.abs().max() <= bound and head.fc.bias.abs().max() <= bound


def test_sequence_encoder_variants() -> None:
    x = torch.randn(2, 32, 1, 10)
    assert SequenceEncoder(32, "reshape")(x).shape == (2, 10, 32)
    torch.testing.assert_close(SequenceEncoder(32, "reshape")(x), x[:, :, 0].transpose(1, 2))
    rnn = SequenceEncoder(32, "rnn", hidden_size=96)
    assert rnn.out_channels == 192 and rnn(x).shape == (2, 10, 192)
    assert SequenceEncoder(32, "fc", hidden_size=12)(x).shape == (2, 10, 12)
    sv = SequenceEncoder(32, "svtr", dims=16, depth=1, hidden_dims=24, num_heads=4)
    assert sv.out_channels == 16 and sv(x).shape == (2, 10, 16)
    with pytest.raises(ValueError, match="height 1"):
        SequenceEncoder(32, "reshape")(torch.randn(1, 32, 2, 4))
    with pytest.raises(ConfigError):
        SequenceEncoder(32, "lstm")


def test_svtr_neck_use_guide_blocks_ctc_gradient(svtr: SVTRLCNet) -> None:
    batch = multi_batch(2, width=64)
    svtr.train()
    svtr.zero_grad(set_to_none=True)
    out = svtr(batch[0], batch[1:])
    CTCLoss()(out, batch[:2] + batch[3:])["loss"].backward()
    assert all(p.grad is None for p in svtr.backbone.parameters())
    assert all(p.grad is not None for p in svtr.head.ctc_encoder.parameters())
    svtr.zero_grad(set_to_none=True)
    # Without use_guide the gradient does reach the input.
    neck = SequenceEncoder(32, "svtr", dims=16, depth=1, hidden_dims=24, num_heads=4)
    x = torch.randn(1, 32, 1, 6, requires_grad=True)
    neck(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_sar_eval_greedy_decoding_and_padding_mask() -> None:
    torch.manual_seed(0)
    sar = SARHead(in_channels=16, out_channels=12, enc_dim=16, d_k=8, max_text_length=5).eval()
    feat = torch.randn(2, 16, 1, 10)
    vr = torch.tensor([0.5, 1.0])
    with torch.no_grad():
        probs = sar(feat, [sar_label(2, 5, n_ctc=10), torch.tensor([1, 1]), vr])["sar"]
        assert probs.shape == (2, 5, 11)
        torch.testing.assert_close(probs.sum(-1), torch.ones(2, 5))
        # Sample 0 sees ceil(0.5 * 10) = 5 columns; the 3x3 key conv also reads column 5, so
        # columns 6+ must not matter.
        feat2 = feat.clone()
        feat2[0, :, :, 6:] = 100.0
        probs2 = sar(feat2, [sar_label(2, 5, n_ctc=10), torch.tensor([1, 1]), vr])["sar"]
    torch.testing.assert_close(probs2[0], probs[0])


# ------------------------------------------------------------------------------------ losses


def _brute_force_ctc_nll(probs: torch.Tensor, target: list[int]) -> float:
    """-log sum over all paths (blank 0) that collapse to ``target``; probs is [T, C]."""
    t, c = probs.shape
    total = 0.0
    for path in itertools.product(range(c), repeat=t):
        collapsed = [k for i, k in enumerate(path) if k != 0 and (i == 0 or path[i - 1] != k)]
        if collapsed == target:
            total += math.prod(float(probs[i, k]) for i, k in enumerate(path))
    return -math.log(total)


def test_ctc_loss_matches_hand_computation() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 3, dtype=torch.float64)
    p = logits.softmax(-1)
    # Sample 0, target "1" in T=3: the ones form one non-empty block: 100 010 001 110 011 111.
    b, a = p[0, :, 0], p[0, :, 1]
    by_hand = (a[0] * b[1] * b[2] + b[0] * a[1] * b[2] + b[0] * b[1] * a[2]
               + a[0] * a[1] * b[2] + b[0] * a[1] * a[2] + a[0] * a[1] * a[2])
    nll0 = -math.log(float(by_hand))
    assert nll0 == pytest.approx(_brute_force_ctc_nll(p[0], [1]), rel=1e-9)
    nll1 = _brute_force_ctc_nll(p[1], [1, 2])
    batch = [None, torch.tensor([[1, 0, 0], [1, 2, 0]]), torch.tensor([1, 2])]
    loss = CTCLoss()({"ctc": logits}, batch)["loss"]
    # Plain batch mean, no division by the label length.
    assert float(loss) == pytest.approx((nll0 + nll1) / 2, rel=1e-5)
    assert float(CTCLoss()(logits, batch)["loss"]) == pytest.approx(float(loss))


def test_ctc_loss_infeasible_sample_is_zero_like_warpctc() -> None:
    logits = torch.randn(2, 2, 4, requires_grad=True)
    batch = [None, torch.tensor([[1, 1, 0], [2, 0, 0]]), torch.tensor([2, 1])]  # "11" needs 3 steps
    loss = CTCLoss()({"ctc": logits}, batch)["loss"]
    nll1 = _brute_force_ctc_nll(logits[1].detach().double().softmax(-1), [2])
    assert float(loss.detach()) == pytest.approx(nll1 / 2, rel=1e-5)
    loss.backward()
    assert torch.all(logits.grad[0] == 0) and torch.isfinite(logits.grad).all()


def test_ctc_focal_weighting() -> None:
    torch.manual_seed(1)
    logits = torch.randn(2, 6, 5)
    batch = [None, torch.tensor([[1, 2, 0], [3, 0, 0]]), torch.tensor([2, 1])]
    per = torch.stack([CTCLoss()({"ctc": logits[i:i + 1]}, [None, batch[1][i:i + 1], batch[2][i:i + 1]])["loss"]
                       for i in range(2)])
    focal = CTCLoss(use_focal_loss=True)({"ctc": logits}, batch)["loss"]
    torch.testing.assert_close(focal, (per * (1 - torch.exp(-per)) ** 2).mean())


def test_sar_loss_shifts_and_ignores_padding() -> None:
    torch.manual_seed(2)
    n_ctc = 5  # SAR classes 7: pad 6, predicted classes 6
    pred = torch.randn(2, 6, 6)
    label = sar_label(2, 6, n_ctc=n_ctc)
    out = SARLoss(ignore_index=n_ctc + 1)({"sar": pred}, [None, label])["loss"]
    logp = pred[:, :-1].log_softmax(-1)
    tgt = label[:, 1:]
    terms = [-logp[i, j, tgt[i, j]] for i in range(2) for j in range(5) if tgt[i, j] != n_ctc + 1]
    assert len(terms) == 4 + 5  # chars + EOS per sample
    torch.testing.assert_close(out, torch.stack(terms).mean())
    torch.testing.assert_close(SARLoss()(pred, [None, label])["loss"], out)  # None -> pred classes


def test_multiloss_sums_branches_with_batch_layout(svtr: SVTRLCNet) -> None:
    batch = multi_batch(2, width=64)
    torch.manual_seed(3)
    preds = {"ctc": torch.randn(2, 8, N_CTC), "sar": torch.randn(2, 25, N_CTC + 1)}
    ml = MultiLoss(loss_config_list=[{"CTCLoss": None}, {"SARLoss": None}], weight_1=1.0, weight_2=0.5,
                   ignore_index=N_CTC + 1)
    out = ml(preds, batch)
    ctc = CTCLoss()(preds["ctc"], [batch[0], batch[1], batch[3]])["loss"]
    sar = SARLoss(ignore_index=N_CTC + 1)(preds["sar"], [batch[0], batch[2]])["loss"]
    torch.testing.assert_close(out["CTCLoss"], ctc)
    torch.testing.assert_close(out["SARLoss"], 0.5 * sar)
    torch.testing.assert_close(out["loss"], ctc + 0.5 * sar)
    with pytest.raises(ConfigError, match="use_focal"):
        MultiLoss(loss_config_list=[{"CTCLoss": {"use_focal": True}}])


def test_every_parameter_gets_a_gradient_svtr_lcnet(svtr: SVTRLCNet) -> None:
    batch = multi_batch(2, width=64)
    svtr.train()
    svtr.zero_grad(set_to_none=True)
    out = MultiLoss(loss_config_list=[{"CTCLoss": None}, {"SARLoss": None}])(svtr(batch[0], batch[1:]), batch)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    missing = [n for n, p in svtr.named_parameters() if p.grad is None]
    assert not missing
    assert all(torch.isfinite(p.grad).all() for p in svtr.parameters())
    assert all(p.grad.abs().sum() > 0 for p in svtr.backbone.parameters())
    svtr.zero_grad(set_to_none=True)


def test_every_parameter_gets_a_gradient_crnn() -> None:
    torch.manual_seed(4)
    model = crnn(37).train()
    logits = model(torch.randn(2, 3, 32, 100))["ctc"]
    assert logits.shape == (2, 25, 37)
    loss = CTCLoss()({"ctc": logits}, [None, torch.tensor([[1, 2, 3], [4, 0, 0]]), torch.tensor([3, 1])])["loss"]
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


# ----------------------------------------------------------------------------------- registry


def test_registered_names_and_config_validation() -> None:
    from ocr_core.losses import LOSSES
    from ocr_core.modeling import BACKBONES, HEADS, NECKS

    assert BACKBONES.get("MobileNetV1Enhance") is MobileNetV1Enhance
    assert BACKBONES.get("rec:MobileNetV3") is RecMobileNetV3
    assert NECKS.get("SequenceEncoder") is SequenceEncoder
    for name in ("CTCHead", "SARHead", "MultiHead"):
        assert name in HEADS
    for name in ("CTCLoss", "SARLoss", "MultiLoss"):
        assert name in LOSSES
    head = HEADS.build({"name": "MultiHead", "head_list": HEAD_LIST}, "Architecture.Head",
                       in_channels=512, out_channels=N_CTC)
    assert head.out_channels_list == {"CTCLabelDecode": N_CTC, "SARLabelDecode": N_CTC + 2}
    bad = [{"CTCHead": {"Neck": {"name": "svtr", "dimz": 64}, "Head": {}}}, HEAD_LIST[1]]
    with pytest.raises(ConfigError, match=r"head_list\[0\]\.CTCHead\.Neck\.dimz"):
        MultiHead(512, {"CTCLabelDecode": 5, "SARLabelDecode": 7}, bad)
    with pytest.raises(ConfigError):
        MultiHead(512, {"CTCLabelDecode": 5, "SARLabelDecode": 7}, [{"NRTRHead": {}}])
    loss = LOSSES.build({"name": "MultiLoss", "loss_config_list": [{"CTCLoss": None}, {"SARLoss": None}]})
    assert set(loss.loss_funcs) == {"CTCLoss", "SARLoss"}
    # The neck config dict given to MultiHead is not mutated (PaddleOCR pops "name").
    assert HEAD_LIST[0]["CTCHead"]["Neck"]["name"] == "svtr"
