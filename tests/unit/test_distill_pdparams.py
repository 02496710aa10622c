"""#18 item 8: the official ``ch_PP-OCRv3_det_distill_train`` layout onto our CML config's three roles.

The official archive's ``best_accuracy.pdparams`` is PaddleOCR's CML checkpoint: one DistillationModel
with sub-layers ``Student``, ``Student2`` (MobileNetV3-large x0.5 without SE + RSEFPN 96 + DBHead)
and ``Teacher`` (ResNet50_vd + LKPAN 256 + DBHead [7, 2, 2]). The key names and shapes below are
enumerated from PaddleOCR 2.10's layer definitions (``ppocr/modeling/backbones/det_mobilenet_v3.py``,
``det_resnet_vd.py``, ``necks/db_fpn.py``, ``heads/det_db_head.py``, ``architectures/
distillation_model.py``), independently of our model code, and checked against Paddle's measured
parameter counts (SPEC 1.2). The one command, ``ocrflow weights import-paddle --in FILE -c
configs/det/ch_PP-OCRv3/ch_PP-OCRv3_det_cml.yml --out cml.pt``, must put every array somewhere,
each exactly once, into the right role, BN statistics into running stats, in layer order.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import torch

from ocr_core.cli import main as cli_main
from ocr_core.weights.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]
CML = ROOT / "configs/det/ch_PP-OCRv3/ch_PP-OCRv3_det_cml.yml"
Shapes = list[tuple[str, tuple[int, ...]]]

# det_mobilenet_v3.py, model_name "large": kernel, expansion, channels, SE, stride
MV3_LARGE = [(3, 16, 16, False, 1), (3, 64, 24, False, 2), (3, 72, 24, False, 1), (5, 72, 40, True, 2),
             (5, 120, 40, True, 1), (5, 120, 40, True, 1), (3, 240, 80, False, 2), (3, 200, 80, False, 1),
             (3, 184, 80, False, 1), (3, 184, 80, False, 1), (3, 480, 112, True, 1), (3, 672, 112, True, 1),
             (5, 672, 160, True, 2), (5, 960, 160, True, 1), (5, 960, 160, True, 1)]


def make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def bn(prefix: str, c: int, names: tuple[str, ...] = ("weight", "bias", "_mean", "_variance")) -> Shapes:
    return [(f"{prefix}.{n}", (c,)) for n in names]


def conv_bn(prefix: str, cin: int, cout: int, k: int, groups: int = 1, conv: str = "conv",
            norm: str = "bn") -> Shapes:
    """ConvBNLayer: a bias-free conv and a BatchNorm."""
    return [(f"{prefix}.{conv}.weight", (cout, cin // groups, k, k)), *bn(f"{prefix}.{norm}", cout)]


def se(prefix: str, c: int, names: tuple[str, str] = ("conv1", "conv2")) -> Shapes:
    r = c // 4
    return [(f"{prefix}.{names[0]}.weight", (r, c, 1, 1)), (f"{prefix}.{names[0]}.bias", (r,)),
            (f"{prefix}.{names[1]}.weight", (c, r, 1, 1)), (f"{prefix}.{names[1]}.bias", (c,))]


def mobilenet_v3(scale: float = 0.5, disable_se: bool = True) -> tuple[Shapes, list[int]]:
    out = conv_bn("backbone.conv", 3, make_divisible(16 * scale), 3)
    inplanes, stage, blocks, outs = make_divisible(16 * scale), 0, 0, []
    for i, (k, exp, c, use_se, s) in enumerate(MV3_LARGE):
        if s == 2 and i > 2:  # start_idx 2: a new stage at each later stride-2 block
            outs.append(inplanes)
            stage, blocks = stage + 1, 0
        mid, cout, p = make_divisible(scale * exp), make_divisible(scale * c), f"backbone.stage{stage}.{blocks}"
        out += conv_bn(f"{p}.expand_conv", inplanes, mid, 1) + conv_bn(f"{p}.bottleneck_conv", mid, mid, k, mid)
        if use_se and not disable_se:
            out += se(f"{p}.mid_se", mid)
        out += conv_bn(f"{p}.linear_conv", mid, cout, 1)
        inplanes, blocks = cout, blocks + 1
    last = make_divisible(scale * 960)
    out += conv_bn(f"backbone.stage{stage}.{blocks}", inplanes, last, 1)
    return out, [*outs, last]


def resnet50_vd() -> tuple[Shapes, list[int]]:
    def layer(p: str, cin: int, cout: int, k: int) -> Shapes:
        return conv_bn(p, cin, cout, k, conv="_conv", norm="_batch_norm")

    out = layer("backbone.conv1_1", 3, 32, 3) + layer("backbone.conv1_2", 32, 32, 3) + layer("backbone.conv1_3", 32, 64, 3)
    depth, channels, filters = [3, 4, 6, 3], [64, 256, 512, 1024], [64, 128, 256, 512]
    for b in range(4):
        for i in range(depth[b]):
            cin, f, p = channels[b] if i == 0 else filters[b] * 4, filters[b], f"backbone.bb_{b}_{i}"
            out += layer(f"{p}.conv0", cin, f, 1) + layer(f"{p}.conv1", f, f, 3) + layer(f"{p}.conv2", f, f * 4, 1)
            if i == 0:  # shortcut False for a stage's first block: projection
                out += layer(f"{p}.short", cin, f * 4, 1)
    return out, [f * 4 for f in filters]


def rsefpn(ins: list[int], c: int = 96) -> Shapes:
    out: Shapes = []
    for i, cin in enumerate(ins):
        out += [(f"neck.ins_conv.{i}.in_conv.weight", (c, cin, 1, 1)), *se(f"neck.ins_conv.{i}.se_block", c)]
    for i in range(len(ins)):
        out += [(f"neck.inp_conv.{i}.in_conv.weight", (c // 4, c, 3, 3)), *se(f"neck.inp_conv.{i}.se_block", c // 4)]
    return out


def lkpan(ins: list[int], c: int = 256) -> Shapes:
    q = c // 4
    out = [(f"neck.ins_conv.{i}.weight", (c, cin, 1, 1)) for i, cin in enumerate(ins)]
    out += [(f"neck.inp_conv.{i}.weight", (q, c, 9, 9)) for i in range(4)]
    out += [(f"neck.pan_head_conv.{i}.weight", (q, q, 3, 3)) for i in range(3)]
    out += [(f"neck.pan_lat_conv.{i}.weight", (q, q, 9, 9)) for i in range(4)]
    return out


def db_head(cin: int, kernels: tuple[int, int, int] = (3, 2, 2)) -> Shapes:
    q, out = cin // 4, []
    for branch in ("binarize", "thresh"):
        p = f"head.{branch}"
        out += [(f"{p}.conv1.weight", (q, cin, kernels[0], kernels[0])), *bn(f"{p}.conv_bn1", q),
                # Conv2DTranspose weights are [in, out, k, k] in Paddle (and torch)
                (f"{p}.conv2.weight", (q, q, kernels[1], kernels[1])), (f"{p}.conv2.bias", (q,)),
                *bn(f"{p}.conv_bn2", q), (f"{p}.conv3.weight", (q, 1, kernels[2], kernels[2])), (f"{p}.conv3.bias", (1,))]
    return out


def distill_train_layout() -> Shapes:
    student, s_out = mobilenet_v3()
    student += rsefpn(s_out) + db_head(96)
    teacher, t_out = resnet50_vd()
    teacher += lkpan(t_out) + db_head(256, (7, 2, 2))
    return ([(f"Student.{k}", s) for k, s in student] + [(f"Student2.{k}", s) for k, s in student]
            + [(f"Teacher.{k}", s) for k, s in teacher])


def _trainable(layout: Shapes, role: str) -> int:
    return sum(int(np.prod(s)) for k, s in layout if k.startswith(role + ".") and not k.endswith(("_mean", "_variance")))


def _digest(a: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(a, dtype=np.float32).tobytes()).hexdigest()


def test_distill_train_pdparams_onto_cml_roles(tmp_path: Path) -> None:
    layout = distill_train_layout()
    assert _trainable(layout, "Student") == _trainable(layout, "Student2") == 603_418  # Paddle's measured count
    assert _trainable(layout, "Teacher") == 32_895_970
    rng = np.random.default_rng(18)
    arrays = {k: rng.standard_normal(s).astype(np.float32) for k, s in layout}
    path = tmp_path / "best_accuracy.pdparams"
    with open(path, "wb") as fh:  # paddle.save: a pickle of {structured name: ndarray}
        pickle.dump(arrays, fh, protocol=4)
    out = tmp_path / "cml.pt"
    assert cli_main(["weights", "import-paddle", "--in", str(path), "-c", str(CML), "--out", str(out), "--strict"]) == 0
    ck = load_checkpoint(out)
    state = {k: v for k, v in ck["model"].items() if not k.endswith("num_batches_tracked")}
    assert ck["provenance"]["by_order"] == 0  # every tensor placed by name
    where = {_digest(a): k for k, a in arrays.items()}
    assert len(where) == len(arrays) == len(state) == 918  # 2 x 301 student + 316 teacher
    placed = {}
    for ours, t in state.items():
        src = where[_digest(t.numpy())]  # the Paddle array this tensor holds, bit for bit
        assert src not in placed.values(), f"{src} landed twice"
        placed[ours] = src
    assert set(placed.values()) == set(arrays)  # every array landed, each once
    order = {k: i for i, (k, _) in enumerate(layout)}
    for role in ("Student", "Student2", "Teacher"):
        ours = [k for k in state if k.startswith(role + ".")]
        assert all(placed[k].startswith(role + ".") for k in ours)
        assert [order[placed[k]] for k in ours] == sorted(order[placed[k]] for k in ours)  # layer order kept
    kinds = {"_mean": "running_mean", "_variance": "running_var", "bias": "bias", "weight": "weight"}
    for ours, src in placed.items():
        assert ours.rsplit(".", 1)[1] == kinds[src.rsplit(".", 1)[1]], (src, ours)
    assert torch.equal(state["Teacher.head.binarize.conv1.weight"],
                       torch.from_numpy(arrays["Teacher.head.binarize.conv1.weight"]))
