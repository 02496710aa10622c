"""PaddleOCR ``.pdparams`` import: safe reading and Paddle-name -> our-name mapping.

The ``.pdparams`` files are written here in Paddle's key layout (``paddle.save`` = a pickle of
``{structured name: numpy array}``). Paddle's names are produced by an explicit our->Paddle
renaming written from PaddleOCR's layer definitions (``ppocr/modeling/...``), checked against
literal Paddle keys and against Paddle's measured parameter counts (SPEC §1.2).
"""

from __future__ import annotations

import os
import pickle
import re
import subprocess

import numpy as np
import pytest
import torch
from torch import nn

from ocr_core.modeling import build_model
from ocr_core.weights.checkpoint import CheckpointError, load_checkpoint
from ocr_core.weights.paddle_import import map_paddle_state, read_pdparams

STUDENT = {"model_type": "det", "algorithm": "DB", "Transform": None,
           "Backbone": {"name": "MobileNetV3", "scale": 0.5, "model_name": "large", "disable_se": True},
           "Neck": {"name": "RSEFPN", "out_channels": 96, "shortcut": True},
           "Head": {"name": "DBHead", "k": 50}}
TEACHER = {"model_type": "det", "algorithm": "DB", "Transform": None,
           "Backbone": {"name": "ResNet_vd", "layers": 50},
           "Neck": {"name": "LKPAN", "out_channels": 256},
           "Head": {"name": "DBHead", "kernel_list": [7, 2, 2], "k": 50}}
CML = {"name": "DistillationModel", "algorithm": "Distillation", "model_type": "det",
       "Models": {"Student": STUDENT, "Student2": STUDENT, "Teacher": TEACHER}}
SVTR_LCNET = {"model_type": "rec", "algorithm": "SVTR_LCNet", "Transform": None,
              "Backbone": {"name": "MobileNetV1Enhance", "scale": 0.5, "last_conv_stride": [1, 2],
                           "last_pool_type": "avg"},
              "Neck": {"name": "SequenceEncoder", "encoder_type": "svtr", "dims": 64, "depth": 2,
                       "hidden_dims": 120, "use_guide": True},
              "Head": {"name": "CTCHead", "fc_decay": 1e-5, "out_channels": 37}}
CRNN = {"model_type": "rec", "algorithm": "CRNN", "Transform": None,
        "Backbone": {"name": "MobileNetV3", "scale": 0.5, "model_name": "large"},
        "Neck": {"name": "SequenceEncoder", "encoder_type": "rnn", "hidden_size": 48},
        "Head": {"name": "CTCHead", "out_channels": 37}}


def paddle_name(ours: str) -> str:
    """Paddle's structured name for one of our keys (from PaddleOCR's layer definitions)."""
    k = ours.replace("running_mean", "_mean").replace("running_var", "_variance")
    # det_resnet_vd.py: ConvBNLayer(_pool2d_avg, _conv, _batch_norm); blocks add_sublayer('bb_%d_%d')
    if re.search(r"(^|\.)backbone\.(conv1_[123]|stages\.\d+\.\d+\.(conv[0-2]|short))\.", k) and ".layers" not in k \
            and "expand_conv" not in k:
        k = re.sub(r"\.conv\.(weight)$", r"._conv.\1", k)
        k = re.sub(r"\.bn\.", "._batch_norm.", k)
        k = re.sub(r"backbone\.stages\.(\d+)\.(\d+)\.", r"backbone.bb_\1_\2.", k)
    # det_mobilenet_v3.py: self.add_sublayer(name="stage{i}")
    k = re.sub(r"backbone\.stages\.(\d+)\.", r"backbone.stage\1.", k)
    return k


def paddle_layout(model: nn.Module, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Random distinct arrays under Paddle names (Linear weights stored [in, out])."""
    linear = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    arrays, names = {}, {}
    for key, t in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        a = rng.standard_normal(tuple(t.shape)).astype(np.float32)
        if key in linear:
            a = np.ascontiguousarray(a.T)
        pk = paddle_name(key)
        arrays[pk] = a
        names[pk] = key
    return arrays, names


def write_pdparams(path, arrays: dict, protocol: int = 2) -> None:
    with open(path, "wb") as fh:  # paddle.save: pickle.dump(dict of numpy arrays, protocol)
        pickle.dump(arrays, fh, protocol=protocol)


def _check_landed(model: nn.Module, state: dict, arrays: dict, names: dict) -> None:
    linear = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    assert set(state) == set(names.values())
    for pk, ours in names.items():
        want = arrays[pk].T if ours in linear else arrays[pk]
        np.testing.assert_array_equal(state[ours].numpy(), want, err_msg=f"{pk} -> {ours}")


def _trainable(arrays: dict) -> int:
    return sum(a.size for k, a in arrays.items() if not k.endswith(("._mean", "._variance")))


def test_ppocrv3_student_layout_maps_every_tensor(tmp_path) -> None:
    model = build_model(STUDENT)
    arrays, names = paddle_layout(model, np.random.default_rng(0))
    for literal in ("backbone.conv.conv.weight", "backbone.stage0.0.expand_conv.bn._mean",
                    "backbone.stage3.3.conv.weight", "neck.ins_conv.0.in_conv.weight",
                    "neck.inp_conv.3.se_block.conv2.bias", "head.binarize.conv1.weight",
                    "head.thresh.conv_bn2._variance", "head.binarize.conv3.bias"):
        assert literal in arrays, literal
    assert _trainable(arrays) == 603_418  # Paddle's measured count for the v3 student
    path = tmp_path / "student.pdparams"
    write_pdparams(path, arrays, protocol=2)
    state, report = map_paddle_state(read_pdparams(path), model, STUDENT, strict=True)
    assert not report.by_order and not report.missing and not report.unexpected
    _check_landed(model, state, arrays, names)
    model.load_state_dict(state, strict=False)
    assert torch.equal(model.backbone.stages[0][0].expand_conv.bn.running_mean,
                       torch.from_numpy(arrays["backbone.stage0.0.expand_conv.bn._mean"]))


def test_cml_three_roles_keep_their_prefixes(tmp_path) -> None:
    model = build_model(CML)
    arrays, names = paddle_layout(model, np.random.default_rng(1))
    for literal in ("Student.backbone.stage1.0.linear_conv.conv.weight", "Student2.neck.ins_conv.2.in_conv.weight",
                    "Teacher.backbone.conv1_1._conv.weight", "Teacher.backbone.conv1_3._batch_norm._variance",
                    "Teacher.backbone.bb_0_0.short._conv.weight", "Teacher.backbone.bb_3_2.conv2._batch_norm.weight",
                    "Teacher.neck.pan_lat_conv.3.weight", "Teacher.head.thresh.conv1.weight"):
        assert literal in arrays, literal
    teacher = {k: a for k, a in arrays.items() if k.startswith("Teacher.")}
    assert _trainable(teacher) == 32_895_970  # Paddle's measured count for the v3 teacher
    path = tmp_path / "cml.pdparams"
    write_pdparams(path, arrays, protocol=4)
    state, report = map_paddle_state(read_pdparams(path), model, CML, strict=True)
    assert not report.by_order
    _check_landed(model, state, arrays, names)


def test_rec_linear_weights_are_transposed(tmp_path) -> None:
    model = build_model(SVTR_LCNET)
    arrays, names = paddle_layout(model, np.random.default_rng(2))
    # rec_mv1_enhance.py names: ConvBNLayer(_conv, _batch_norm), DepthwiseSeparable(_depthwise_conv, _se, ...)
    arrays = {re.sub(r"\.(conv|bn)\.", lambda m: "._conv." if m.group(1) == "conv" else "._batch_norm.", k)
              if k.startswith("backbone.") else k: a for k, a in arrays.items()}
    arrays = {re.sub(r"\.(depthwise_conv|pointwise_conv|se)\.", r"._\1.", k): a for k, a in arrays.items()}
    names = dict(zip(arrays, names.values()))
    assert "backbone.block_list.0._depthwise_conv._batch_norm._mean" in arrays
    assert arrays["head.fc.weight"].shape == (64, 37)  # Paddle Linear: [in, out]
    path = tmp_path / "rec.pdparams"
    write_pdparams(path, arrays)
    state, report = map_paddle_state(read_pdparams(path), model, SVTR_LCNET, strict=True)
    assert "head.fc.weight" in report.transposed and "neck.encoder.svtr_block.0.mixer.qkv.weight" in report.transposed
    _check_landed(model, state, arrays, names)


def test_paddle_lstm_duplicate_cell_names(tmp_path) -> None:
    model = build_model(CRNN)
    arrays, names = paddle_layout(model, np.random.default_rng(3))
    for key in list(arrays):  # Paddle's RNN lists each weight again under its BiRNN cells
        m = re.match(r"(neck\.encoder\.lstm)\.(\w+)_l(\d)(_reverse)?$", key)
        if m:
            arrays[f"{m.group(1)}.{m.group(3)}.cell_{'bw' if m.group(4) else 'fw'}.{m.group(2)}"] = arrays[key]
    state, report = map_paddle_state({k: torch.from_numpy(a) for k, a in arrays.items()}, model)
    assert len(report.ignored) == 16 and not report.unexpected
    _check_landed(model, state, {k: arrays[k] for k in names}, names)


def test_backbone_only_imagenet_file_by_order(tmp_path) -> None:
    model = build_model({**STUDENT, "Backbone": {**STUDENT["Backbone"], "disable_se": False}})
    arrays, names = paddle_layout(model, np.random.default_rng(4))
    backbone = {}
    for i, (k, a) in enumerate((k, a) for k, a in arrays.items() if k.startswith("backbone.")):
        backbone[f"blocks.{i}.w" if "stage" in k else k[len("backbone."):]] = a  # PaddleClas-style names
    backbone["last_conv.weight"] = np.zeros((1280, 480, 1, 1), np.float32)
    backbone["fc.weight"], backbone["fc.bias"] = np.zeros((1280, 1000), np.float32), np.zeros(1000, np.float32)
    path = tmp_path / "MobileNetV3_large_x0_5_pretrained.pdparams"
    write_pdparams(path, backbone)
    state, report = map_paddle_state(read_pdparams(path), model, max_missing_ratio=0.0)
    assert sorted(report.ignored) == ["fc.bias", "fc.weight", "last_conv.weight"]
    assert report.by_order and not report.missing and all(k.startswith("backbone.") for k in state)
    want = {names[k]: a for k, a in arrays.items() if k.startswith("backbone.")}
    for key, a in want.items():
        np.testing.assert_array_equal(state[key].numpy(), a)


def test_wrong_architecture_fails_past_threshold(tmp_path) -> None:
    arrays, _ = paddle_layout(build_model(STUDENT), np.random.default_rng(5))
    with pytest.raises(CheckpointError, match="missing"):
        map_paddle_state({k: torch.from_numpy(a) for k, a in arrays.items()}, build_model(TEACHER))


def test_load_checkpoint_reads_pdparams(tmp_path) -> None:
    path = tmp_path / "m.pdparams"
    write_pdparams(path, {"head.fc.weight": np.ones((2, 3), np.float32),
                          "StructuredToParameterName@@": {"head.fc.weight": "linear_0.w_0"}})
    ck = load_checkpoint(path)
    assert list(ck["model"]) == ["head.fc.weight"] and ck["model"]["head.fc.weight"].shape == (2, 3)


class _Evil:
    def __init__(self, call, arg) -> None:
        self.call, self.arg = call, arg

    def __reduce__(self):
        return self.call, (self.arg,)


@pytest.mark.parametrize("kind", ["os.system", "builtins.eval", "subprocess.Popen", "reduce_object"])
def test_malicious_pickle_is_refused_without_running(tmp_path, kind) -> None:
    marker = tmp_path / "pwned"
    cmd = f"touch {marker}"
    payload = {
        "os.system": _Evil(os.system, cmd),
        "builtins.eval": _Evil(eval, f"open({str(marker)!r}, 'w').close()"),
        "subprocess.Popen": _Evil(subprocess.Popen, ["touch", str(marker)]),
        "reduce_object": _Evil(_Evil, "x"),
    }[kind]
    path = tmp_path / "evil.pdparams"
    with open(path, "wb") as fh:
        pickle.dump({"backbone.conv.conv.weight": np.zeros(3, np.float32), "x": payload}, fh, protocol=2)
    with pytest.raises(CheckpointError, match="refused"):
        read_pdparams(path)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    assert not marker.exists()


def test_object_arrays_and_non_dicts_are_refused(tmp_path) -> None:
    path = tmp_path / "obj.pdparams"
    with open(path, "wb") as fh:
        pickle.dump({"a": np.array([1, "x"], dtype=object)}, fh, protocol=4)
    with pytest.raises(CheckpointError, match="refused|object"):
        read_pdparams(path)
    with open(path, "wb") as fh:
        pickle.dump([np.zeros(2)], fh, protocol=4)
    with pytest.raises(CheckpointError, match="not a Paddle state dict"):
        read_pdparams(path)
