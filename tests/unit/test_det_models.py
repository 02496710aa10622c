"""DBNet detection models and model wiring (BaseModel, DistillationModel, build_model)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ocr_core.build import create_model
from ocr_core.errors import ConfigError
from ocr_core.modeling import BACKBONES, HEADS, build_model
from ocr_core.modeling.architectures import BaseModel, DistillationModel
from ocr_core.modeling.backbones.det_mobilenet_v3 import MobileNetV3, SEModule, make_divisible
from ocr_core.modeling.backbones.det_resnet_vd import ResNet_vd
from ocr_core.modeling.heads.det_db_head import DBHead
from ocr_core.modeling.necks.db_fpn import DBFPN, LKPAN, RSEFPN
from ocr_core.weights import checkpoint as weights_checkpoint

torch.set_num_threads(2)

# ``Architecture`` sections shaped exactly like PaddleOCR's YAML files.
STUDENT = {  # configs/det/ch_PP-OCRv3/ch_PP-OCRv3_det_student.yml
    "model_type": "det",
    "algorithm": "DB",
    "Transform": None,
    "Backbone": {"name": "MobileNetV3", "scale": 0.5, "model_name": "large", "disable_se": True},
    "Neck": {"name": "RSEFPN", "out_channels": 96, "shortcut": True},
    "Head": {"name": "DBHead", "k": 50},
}
TEACHER = {  # the Teacher entry of ch_PP-OCRv3_det_cml.yml (without freeze_params)
    "return_all_feats": False,
    "model_type": "det",
    "algorithm": "DB",
    "Backbone": {"name": "ResNet_vd", "in_channels": 3, "layers": 50},
    "Neck": {"name": "LKPAN", "out_channels": 256},
    "Head": {"name": "DBHead", "kernel_list": [7, 2, 2], "k": 50},
}
DET_MV3_DB = {  # configs/det/det_mv3_db.yml
    "model_type": "det",
    "algorithm": "DB",
    "Transform": None,
    "Backbone": {"name": "MobileNetV3", "scale": 0.5, "model_name": "large"},
    "Neck": {"name": "DBFPN", "out_channels": 256},
    "Head": {"name": "DBHead", "k": 50},
}
DET_R18_VD_DB = {  # configs/det/det_res18_db_v2.0.yml (disable_se is ignored by ResNet_vd)
    "model_type": "det",
    "algorithm": "DB",
    "Transform": None,
    "Backbone": {"name": "ResNet_vd", "layers": 18, "disable_se": True},
    "Neck": {"name": "DBFPN", "out_channels": 256},
    "Head": {"name": "DBHead", "k": 50},
}
DET_R50_VD_DB = {  # configs/det/det_r50_vd_db.yml
    "model_type": "det",
    "algorithm": "DB",
    "Transform": None,
    "Backbone": {"name": "ResNet_vd", "layers": 50},
    "Neck": {"name": "DBFPN", "out_channels": 256},
    "Head": {"name": "DBHead", "k": 50},
}
CML = {  # configs/det/ch_PP-OCRv3/ch_PP-OCRv3_det_cml.yml
    "name": "DistillationModel",
    "algorithm": "Distillation",
    "model_type": "det",
    "Models": {
        "Student": {"pretrained": None, **copy.deepcopy(STUDENT)},
        "Student2": {"pretrained": None, **copy.deepcopy(STUDENT)},
        "Teacher": {"freeze_params": True, **copy.deepcopy(TEACHER)},
    },
}

# SPEC §1.2, measured with paddle: (total, backbone, neck, head) trainable parameters.
PARAM_COUNTS = {
    "ppocrv3_student": (STUDENT, 603_418, 398_480, 158_424, 46_514),
    "ppocrv3_teacher": (TEACHER, 32_895_970, 23_527_264, 7_729_152, 1_639_554),
    "det_mv3_db": (DET_MV3_DB, 1_844_136, 778_022, 737_280, 328_834),
    "det_r18_vd_db": (DET_R18_VD_DB, 12_364_386, 11_199_968, 835_584, 328_834),
    "det_r50_vd_db": (DET_R50_VD_DB, 25_428_962, 23_527_264, 1_572_864, 328_834),
}


def n_trainable(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters() if p.requires_grad)


@pytest.fixture(scope="module")
def models() -> dict[str, BaseModel]:
    torch.manual_seed(0)
    return {name: build_model(v[0]) for name, v in PARAM_COUNTS.items()}


@pytest.mark.parametrize("name", list(PARAM_COUNTS))
def test_parameter_counts_match_paddle(models: dict[str, BaseModel], name: str) -> None:
    _, total, backbone, neck, head = PARAM_COUNTS[name]
    m = models[name]
    assert isinstance(m, BaseModel) and m.model_type == "det" and m.algorithm == "DB"
    assert (n_trainable(m.backbone), n_trainable(m.neck), n_trainable(m.head)) == (backbone, neck, head)
    assert n_trainable(m) == total


@pytest.mark.parametrize("name", list(PARAM_COUNTS))
def test_train_step_gives_every_parameter_a_gradient(models: dict[str, BaseModel], name: str) -> None:
    m = models[name]
    m.train()
    m.zero_grad(set_to_none=True)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 64, 64, generator=g)
    maps = m(x)["maps"]
    assert maps.shape == (2, 3, 64, 64)
    assert torch.isfinite(maps).all()
    w = torch.rand(maps.shape, generator=g)  # random weights: no symmetric cancellation
    (maps * w).sum().backward()
    for pname, p in m.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname
    m.zero_grad(set_to_none=True)


def test_make_divisible() -> None:
    # hand-computed: nearest multiple of 8, at least 8, bumped up when > 10% below v
    assert [make_divisible(v) for v in (8, 12, 20, 28, 56, 480, 5.6, 8.4)] == [8, 16, 24, 32, 56, 480, 8, 8]
    assert make_divisible(10.0) == 16  # int(14) // 8 * 8 = 8 < 0.9 * 10, so + 8
    assert make_divisible(0.5 * 960) == 480 and make_divisible(0.5 * 112) == 56


def test_se_uses_paddle_hardsigmoid() -> None:
    torch.manual_seed(0)
    se = SEModule(8)
    x = torch.randn(2, 8, 5, 5) * 3
    s = se.conv2(F.relu(se.conv1(x.mean(dim=(2, 3), keepdim=True))))
    expected = x * torch.clamp(0.2 * s + 0.5, 0, 1)
    torch.testing.assert_close(se(x), expected)
    assert not torch.allclose(se(x), x * F.hardsigmoid(s))  # torch's slope is 1/6


@pytest.mark.parametrize(
    "model_name, disable_se, channels",
    [("large", False, [16, 24, 56, 480]), ("large", True, [16, 24, 56, 480]), ("small", False, [8, 16, 24, 288])],
)
def test_mobilenetv3_stages(model_name: str, disable_se: bool, channels: list[int]) -> None:
    bb = MobileNetV3(model_name=model_name, scale=0.5, disable_se=disable_se).eval()
    assert bb.out_channels == channels
    has_se = any(isinstance(m, SEModule) for m in bb.modules())
    assert has_se is (not disable_se)
    se_convs = {id(c) for s in bb.modules() if isinstance(s, SEModule) for c in s.children()}
    for m in bb.modules():
        if isinstance(m, nn.Conv2d):
            assert (m.bias is not None) is (id(m) in se_convs)  # only the SE 1x1 convs have a bias
    with torch.no_grad():
        feats = bb(torch.zeros(1, 3, 128, 128))
    assert [tuple(f.shape[1:]) for f in feats] == [(c, 128 // s, 128 // s) for c, s in zip(channels, (4, 8, 16, 32))]


def test_mobilenetv3_rejects_bad_config() -> None:
    with pytest.raises(ConfigError, match="scale"):
        MobileNetV3(scale=0.6)
    with pytest.raises(ConfigError, match="model_name"):
        MobileNetV3(model_name="huge")


@pytest.mark.parametrize("layers, channels", [(18, [64, 128, 256, 512]), (50, [256, 512, 1024, 2048])])
def test_resnet_vd_strides_and_shortcuts(layers: int, channels: list[int]) -> None:
    bb = ResNet_vd(layers=layers).eval()
    assert bb.out_channels == channels
    with torch.no_grad():
        feats = bb(torch.zeros(1, 3, 64, 64))
    assert [tuple(f.shape[1:]) for f in feats] == [(c, 64 // s, 64 // s) for c, s in zip(channels, (4, 8, 16, 32))]
    first = bb.stages[0][0]
    assert first.short is not None and first.short.pool is None  # plain 1x1 in the very first block
    for stage in bb.stages[1:]:
        blk = stage[0]
        assert isinstance(blk.short.pool, nn.AvgPool2d) and blk.short.pool.ceil_mode
        assert blk.short.conv.stride == (1, 1)
        conv3x3 = blk.conv1.conv if layers >= 50 else blk.conv0.conv
        assert conv3x3.kernel_size == (3, 3) and conv3x3.stride == (2, 2)
        assert all(b.short is None for b in stage[1:])
    assert ResNet_vd(layers=18, out_indices=[1, 3]).out_channels == [128, 512]


def test_resnet_vd_rejects_dcn_and_bad_depth() -> None:
    with pytest.raises(ConfigError, match="not supported"):
        ResNet_vd(layers=18, dcn_stage=[False, True, True, True])
    with pytest.raises(ConfigError, match="layers"):
        ResNet_vd(layers=42)
    ResNet_vd(layers=18, dcn_stage=[False] * 4, disable_se=True)  # accepted, no-op


@pytest.mark.parametrize(
    "neck",
    [
        lambda c: DBFPN(c, 32),
        lambda c: RSEFPN(c, 32, shortcut=False),
        lambda c: RSEFPN(c, 32, intracl=True),
        lambda c: LKPAN(c, 32),
        lambda c: LKPAN(c, 32, mode="lite", intracl=True),
    ],
)
def test_necks_fuse_at_stride_4(neck) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    chans = [16, 24, 56, 480]
    feats = [torch.randn(2, c, 32 // 2**i, 32 // 2**i) for i, c in enumerate(chans)]
    m = neck(chans)
    assert m.out_channels == 32
    out = m(feats)
    assert out.shape == (2, 32, 32, 32)
    assert all(mod.bias is None for mod in m.modules() if isinstance(mod, nn.Conv2d) and mod.kernel_size[0] == 9)
    # channels [0, 8) are the stride-32 level upsampled x8 (nearest): constant on 8x8 blocks
    p5 = out[:, :8]
    torch.testing.assert_close(p5, F.interpolate(p5[:, :, ::8, ::8], scale_factor=8, mode="nearest"))


def test_neck_rejects_unsupported_options() -> None:
    with pytest.raises(ConfigError, match="not supported"):
        DBFPN([16, 24, 56, 480], 256, use_asf=True)
    with pytest.raises(ConfigError, match="mode"):
        LKPAN([16, 24, 56, 480], 256, mode="huge")


def test_db_head_outputs_and_binary_formula() -> None:
    torch.manual_seed(0)
    head = DBHead(16, k=50)
    x = torch.randn(2, 16, 8, 8)
    head.train()
    maps = head(x)["maps"]
    assert maps.shape == (2, 3, 32, 32)
    shrink, thresh, binary = maps[:, :1], maps[:, 1:2], maps[:, 2:]
    expected = 1.0 / (1.0 + torch.exp(-50.0 * (shrink.double() - thresh.double())))
    torch.testing.assert_close(binary.double(), expected, rtol=1e-5, atol=1e-6)
    assert ((maps >= 0) & (maps <= 1)).all()
    head.eval()
    with torch.no_grad():
        out = head(x)
        assert set(out) == {"maps"} and out["maps"].shape == (2, 1, 32, 32)
        head.export_mode = True
        raw = head(x)
    assert isinstance(raw, torch.Tensor)
    torch.testing.assert_close(raw, out["maps"])


def test_db_head_init_and_kernel_list() -> None:
    head = DBHead(96, kernel_list=[7, 2, 2])
    for branch in (head.binarize, head.thresh):
        assert branch.conv1.kernel_size == (7, 7) and branch.conv1.bias is None
        for bn in (branch.conv_bn1, branch.conv_bn2):
            assert torch.all(bn.weight == 1) and torch.allclose(bn.bias, torch.full_like(bn.bias, 1e-4))
        for deconv in (branch.conv2, branch.conv3):
            assert deconv.bias.abs().max() <= 1 / 24**0.5
    assert DBHead(96).binarize.conv1.kernel_size == (3, 3)


def test_db_head_fix_nan() -> None:
    x = torch.randn(2, 16, 4, 4)
    x[0, 0, 0, 0] = float("nan")
    assert torch.isnan(DBHead(16).train()(x)["maps"]).any()
    assert torch.isfinite(DBHead(16, fix_nan=True).train()(x)["maps"]).all()


def test_export_mode_returns_raw_tensor(models: dict[str, BaseModel]) -> None:
    m = models["ppocrv3_student"].eval()
    x = torch.randn(1, 3, 64, 64)
    try:
        with torch.no_grad():
            ref = m(x)["maps"]
            m.export_mode = True
            raw = m(x)
        assert m.head.export_mode is True
        torch.testing.assert_close(raw, ref)
    finally:
        m.export_mode = False


def test_config_errors_name_the_key() -> None:
    bad = copy.deepcopy(STUDENT)
    bad["Backbone"]["scales"] = 0.5
    with pytest.raises(ConfigError, match=r"Architecture\.Backbone\.scales"):
        build_model(bad)
    bad = copy.deepcopy(STUDENT)
    bad["Backbone"]["scale"] = 0.6
    with pytest.raises(ConfigError, match=r"Architecture\.Backbone\.scale"):
        build_model(bad)
    bad = copy.deepcopy(DET_MV3_DB)
    bad["Neck"]["use_asf"] = True
    with pytest.raises(ConfigError, match=r"Architecture\.Neck\.use_asf.*not supported"):
        build_model(bad)
    bad = copy.deepcopy(STUDENT)
    bad["Neckk"] = bad.pop("Neck")
    with pytest.raises(ConfigError, match=r"Architecture\.Neckk"):
        build_model(bad)


# ---------------------------------------------------------------------------------------------
# Generic wiring (rec-style models): a test-only backbone and heads.
# ---------------------------------------------------------------------------------------------


@BACKBONES.register("_TestSeqBackbone")
class _TestSeqBackbone(nn.Module):
    def __init__(self, in_channels: int = 3, width: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3, padding=1)
        self.out_channels = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean(dim=2).transpose(1, 2)  # [B, W, C]


@HEADS.register("_TestTargetsHead")
class _TestTargetsHead(nn.Module):
    def __init__(self, in_channels: int, out_channels: int = 5) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.fc = nn.Linear(in_channels, out_channels)
        self.seen_targets: object = "unset"

    def forward(self, x: torch.Tensor, targets: object = None) -> dict[str, torch.Tensor]:
        self.seen_targets = targets
        return {"ctc": self.fc(x)}


@HEADS.register("_TestPlainHead")
class _TestPlainHead(nn.Module):
    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_channels, 3)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.fc(x)}


def test_base_model_is_generic_for_rec() -> None:
    arch = {"model_type": "rec", "algorithm": "CRNN", "Transform": None,
            "Backbone": {"name": "_TestSeqBackbone", "width": 12},
            "Head": {"name": "_TestTargetsHead", "out_channels": 7}}
    m = build_model(arch)
    assert m.model_type == "rec" and m.neck is None and m.head.in_channels == 12  # wired from backbone
    x = torch.randn(2, 3, 8, 16)
    targets = [torch.zeros(2)]
    out = m(x, targets)
    assert m.head.seen_targets is targets and out["ctc"].shape == (2, 16, 7)
    m.eval()
    m.export_mode = True
    assert isinstance(m(x), torch.Tensor)
    m.export_mode = False
    plain = build_model({**arch, "Head": {"name": "_TestPlainHead"}, "return_all_feats": True})
    feats = plain.train()(x, targets)  # a head without ``targets`` is called without them
    assert set(feats) == {"backbone_out", "head_out", "out"}
    assert set(plain.eval()(x)) == {"out"}


# ---------------------------------------------------------------------------------------------
# DistillationModel
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cml() -> DistillationModel:
    torch.manual_seed(0)
    return create_model({"Architecture": CML})


def test_distillation_roles_and_freezing(cml: DistillationModel) -> None:
    assert isinstance(cml, DistillationModel) and isinstance(cml, nn.ModuleDict)
    assert cml.roles == ["Student", "Student2", "Teacher"] and cml.frozen_roles == ["Teacher"]
    assert cml.algorithm == "Distillation" and cml.model_type == "det"
    assert all(not p.requires_grad for p in cml["Teacher"].parameters())
    assert all(p.requires_grad for r in ("Student", "Student2") for p in cml[r].parameters())
    assert n_trainable(cml) == 2 * 603_418
    assert any(k.startswith("Teacher.backbone.") for k in cml.state_dict())
    cml.eval()
    cml.train()
    assert cml.training and cml["Student"].training and cml["Student2"].training
    assert not any(m.training for m in cml["Teacher"].modules())
    assert all(m.training for m in cml["Student"].modules())


def test_frozen_teacher_is_a_fixed_function(cml: DistillationModel) -> None:
    cml.train()
    teacher_bufs = {k: v.clone() for k, v in cml["Teacher"].state_dict().items()}
    student_bufs = {k: v.clone() for k, v in cml["Student"].state_dict().items() if "running_mean" in k}
    x = torch.randn(2, 3, 64, 64)
    out = cml(x)
    assert list(out) == ["Student", "Student2", "Teacher"]
    assert out["Student"]["maps"].shape == (2, 3, 64, 64)
    assert out["Teacher"]["maps"].shape == (2, 1, 64, 64)  # eval-mode head dict
    assert out["Teacher"]["maps"].grad_fn is None and out["Student"]["maps"].grad_fn is not None
    for k, v in cml["Teacher"].state_dict().items():
        assert torch.equal(v, teacher_bufs[k]), k  # BN running stats (and weights) untouched
    changed = [k for k, v in student_bufs.items() if not torch.equal(cml["Student"].state_dict()[k], v)]
    assert changed  # the students do update their BN statistics
    with torch.no_grad():
        again = cml["Teacher"](x)["maps"]
    torch.testing.assert_close(again, out["Teacher"]["maps"])


def test_role_state_dict_loads_into_plain_model(cml: DistillationModel) -> None:
    sd = cml.role_state_dict("Teacher")
    assert not any(k.startswith("Teacher.") for k in sd)
    plain = build_model(TEACHER)
    plain.load_state_dict(sd, strict=True)
    student = build_model(STUDENT)
    student.load_state_dict(cml.role_state_dict("Student2"), strict=True)
    x = torch.randn(1, 3, 64, 64)
    cml.eval()
    with torch.no_grad():
        torch.testing.assert_close(student.eval()(x)["maps"], cml["Student2"](x)["maps"])
    cml.train()
    with pytest.raises(ConfigError, match="unknown role"):
        cml.role_state_dict("Student3")


def test_pretrained_is_loaded_per_role(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[nn.Module, str]] = []
    monkeypatch.setattr(weights_checkpoint, "load_pretrained", lambda model, path: calls.append((model, path)))
    cfg = {"name": "DistillationModel", "algorithm": "Distillation", "model_type": "det",
           "Models": {"Student": {"pretrained": "/models/mv3_x0_5", **copy.deepcopy(STUDENT)},
                      "Student2": {"pretrained": "", **copy.deepcopy(STUDENT)},
                      "Student3": {"pretrained": None, "freeze_params": False, **copy.deepcopy(STUDENT)}}}
    build_model(cfg)
    assert calls == []  # models never load files: the builder does
    m = create_model({"Architecture": cfg})
    assert [(type(mod).__name__, path) for mod, path in calls] == [("BaseModel", "/models/mv3_x0_5")]
    assert calls[0][0] is m["Student"]
    assert m.frozen_roles == [] and cfg["Models"]["Student"]["pretrained"] == "/models/mv3_x0_5"
