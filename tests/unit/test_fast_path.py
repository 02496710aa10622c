"""The fast path (channels_last, bf16/fp16 AMP) is what a run takes by default, and it trains and
evaluates like the float32 path within stated tolerances."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ocr_core.build import create_model
from ocr_core.config import load_config, parse_global, resolve_config
from ocr_core.config.schema import GlobalConfig
from ocr_core.engine import fast_path
from ocr_core.engine.fast_path import cpu_bf16, cpu_flags, resolve_fast_path
from ocr_core.engine.loop import StepSettings, StepState, train_one_epoch
from ocr_core.engine.run import prepare

ROOT = Path(__file__).resolve().parents[2]
CPU = torch.device("cpu")
NATIVE, NOT_NATIVE = (True, "avx512_bf16"), (False, "no bf16")


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 amx_tile\n\nprocessor\t: 1\n")
    assert {"avx512_bf16", "amx_tile", "fpu"} <= cpu_flags(info)
    assert cpu_flags(tmp_path / "missing") == set()
    native, why = cpu_bf16()
    assert native == bool(cpu_flags() & {"avx512_bf16", "amx_bf16"}) or "oneDNN" in why


@pytest.mark.parametrize(("use_amp", "channels_last", "bf16", "want_amp", "want_cl"), [
    (None, None, NATIVE, True, True),          # auto on a bf16 CPU: both
    (None, None, NOT_NATIVE, False, True),     # auto without native bf16: channels_last only
    (False, None, NATIVE, False, True),        # opt out of AMP
    (None, False, NATIVE, True, False),        # opt out of channels_last
    (True, None, NOT_NATIVE, True, True),      # forced on
])
def test_cpu_resolution(use_amp, channels_last, bf16, want_amp, want_cl) -> None:
    fp = resolve_fast_path(GlobalConfig(use_amp=use_amp, channels_last=channels_last), CPU, bf16_cpu=bf16)
    assert (fp.amp, fp.channels_last, fp.amp_dtype, fp.grad_scaler) == (want_amp, want_cl, torch.bfloat16, False)
    forced_fp16 = resolve_fast_path(GlobalConfig(use_amp=True, amp_dtype="float16"), CPU, bf16_cpu=bf16)
    assert forced_fp16.amp_dtype == torch.bfloat16  # no float16 autocast on CPU
    rec = resolve_fast_path(GlobalConfig(use_amp=use_amp, channels_last=channels_last), CPU, bf16_cpu=bf16,
                            model_type="rec")
    assert (rec.amp, rec.channels_last) == (bool(use_amp), want_cl)  # rec: AMP only when asked for


@pytest.mark.parametrize(("capability", "dtype", "scaler"), [((9, 0), torch.bfloat16, False),
                                                              ((8, 0), torch.bfloat16, False),
                                                              ((7, 0), torch.float16, True)])
def test_cuda_resolution(monkeypatch: pytest.MonkeyPatch, capability, dtype, scaler) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    fp = resolve_fast_path(GlobalConfig(), torch.device("cuda", 0))
    assert (fp.amp, fp.amp_dtype, fp.grad_scaler, fp.channels_last, fp.cudnn_benchmark) == (True, dtype, scaler, True, True)
    rec = resolve_fast_path(GlobalConfig(), torch.device("cuda", 0), model_type="rec")
    assert (rec.amp, rec.grad_scaler, rec.channels_last) == (False, False, True)
    forced = resolve_fast_path(GlobalConfig(use_amp=True), torch.device("cuda", 0), model_type="rec")
    assert (forced.amp, forced.amp_dtype, forced.grad_scaler) == (True, dtype, scaler)
    off = resolve_fast_path(GlobalConfig(use_amp=False, channels_last=False), torch.device("cuda", 0))
    assert (off.amp, off.grad_scaler, off.channels_last) == (False, False, False)


@pytest.mark.parametrize("config", ["configs/det/det_mv3_db.yml", "configs/det/ch_PP-OCRv3/ch_PP-OCRv3_det_student.yml",
                                    "configs/rec/PP-OCRv3/en_PP-OCRv3_rec.yml"])
def test_shipped_configs_take_the_fast_path_by_default(tmp_path: Path, config: str) -> None:
    common = ["Global.use_gpu=false", f"Global.save_model_dir={tmp_path}", "Global.pretrained_model=null"]
    run = prepare(load_config(ROOT / config, common))
    want_amp = cpu_bf16()[0] and run.model_type == "det"  # rec: channels_last only
    assert run.g.channels_last is True and run.g.use_amp is want_amp
    conv = next(m for m in run.model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size[0] > 1)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    slow = prepare(load_config(ROOT / config, [*common, "Global.use_amp=false", "Global.channels_last=false"]))
    assert slow.g.channels_last is False and slow.g.use_amp is False
    conv = next(m for m in slow.model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size[0] > 1)
    assert conv.weight.is_contiguous() and not conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert "fast path: amp" in (tmp_path / "train.log").read_text()


def _batches(n: int, size: int = 64, batch: int = 2) -> list[list[torch.Tensor]]:
    """Fixed DB training batches: bright boxes on noise, their shrink/threshold maps."""
    g = torch.Generator().manual_seed(3)
    out = []
    for _ in range(n):
        img = torch.rand(batch, 3, size, size, generator=g) * 0.5
        shrink = torch.zeros(batch, size, size)
        for b in range(batch):
            for _ in range(2):
                y, x = torch.randint(4, size - 20, (2,), generator=g).tolist()
                shrink[b, y : y + 8, x : x + 16] = 1.0
                img[b, :, y - 2 : y + 10, x - 2 : x + 18] += 0.8
        thresh = 0.3 + 0.4 * torch.nn.functional.max_pool2d(shrink[:, None], 5, 1, 2)[:, 0]
        out.append([img, thresh, torch.ones_like(shrink), shrink, torch.ones_like(shrink)])
    return out


def _loss_curve(amp: bool, channels_last: bool, steps: int = 6) -> list[float]:
    torch.manual_seed(0)
    cfg = resolve_config(load_config(ROOT / "configs/det/det_mv3_db.yml", ["Global.use_gpu=false"]))
    model = create_model(cfg)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    from ocr_core.build import build_loss

    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    losses: list[float] = []
    settings = StepSettings(device=CPU, print_batch_step=0, amp=amp, amp_dtype=torch.bfloat16,
                            channels_last=channels_last)
    train_one_epoch(model, _batches(steps), build_loss(cfg), opt, sched, StepState(), settings,
                    metrics_sink=lambda d: losses.append(d["loss"]))
    return losses


def test_fast_training_follows_the_float32_loss_curve() -> None:
    """6 fixed-seed Adam steps of det_mv3_db: each step's loss within 1.5% of float32's (measured
    0.34% for bf16 + channels_last, 0.10% for channels_last alone; bf16 autocast rounds activations
    to 8 bits of mantissa, the losses stay in float32)."""
    fp = resolve_fast_path(GlobalConfig(), CPU)
    slow = _loss_curve(False, False)
    fast = _loss_curve(fp.amp, fp.channels_last)
    assert len(slow) == len(fast) == 6 and slow[-1] < slow[0]  # it really trains
    np.testing.assert_allclose(fast, slow, rtol=0.015)
    forced = _loss_curve(True, True)  # bf16 + channels_last even where not native: same check
    np.testing.assert_allclose(forced, slow, rtol=0.015)


def test_fast_evaluation_matches_float32_hmean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The official PP-OCRv3 det weights on rendered scenes: hmean of the default (fast) path within
    0.02 of float32's (measured on 16 such images: 0.9873 for all of fast, channels_last only, fp32)."""
    from ocr_core.engine.run import evaluate_config
    from ocr_core.weights.ppocr_weights import WeightsImportError, fetch_rapidocr_wheel, import_ppocrv3
    from tests.integration.det_fixtures import make_det_split

    if not list((Path.home() / ".cache" / "ocrflow" / "wheels").glob("rapidocr_onnxruntime-1.2.13*.whl")):
        pytest.skip("rapidocr-onnxruntime wheel not cached (no network in unit tests)")
    try:
        ckpt = import_ppocrv3("det", tmp_path / "det.pt", wheel=fetch_rapidocr_wheel()).checkpoint
    except WeightsImportError as exc:
        pytest.skip(str(exc))
    label = make_det_split(tmp_path / "eval", num=4, seed=5, size=(320, 256))
    base = [f"Global.checkpoints={ckpt}", "Global.use_gpu=false", f"Global.save_model_dir={tmp_path / 'o'}",
            f"Eval.dataset.data_dir={tmp_path / 'eval'}", f"Eval.dataset.label_file_list=[{label}]",
            "Eval.loader.num_workers=0", "Global.pretrained_model=null"]
    config = ROOT / "configs/det/ch_PP-OCRv3/ch_PP-OCRv3_det_student.yml"
    seen = []
    real = fast_path.resolve_fast_path
    monkeypatch.setattr(fast_path, "resolve_fast_path", lambda *a, **k: seen.append(real(*a, **k)) or seen[-1])
    fast = evaluate_config(load_config(config, base))
    slow = evaluate_config(load_config(config, [*base, "Global.use_amp=false", "Global.channels_last=false"]))
    assert seen[0].channels_last and seen[0].amp == cpu_bf16()[0] and not seen[1].amp
    assert slow["hmean"] > 0.3  # a real detector on real-looking text
    assert abs(fast["hmean"] - slow["hmean"]) <= 0.02
    assert parse_global(load_config(config, base)).use_amp is None  # the config leaves it to auto


@pytest.mark.parametrize(("device", "pinned", "persistent"), [("cuda", True, True), ("cpu", False, None)])
def test_cuda_loaders_pin_memory_and_keep_eval_workers(monkeypatch: pytest.MonkeyPatch, device, pinned,
                                                       persistent) -> None:
    from types import SimpleNamespace

    from ocr_core.engine import run as run_mod

    calls = {}

    def fake_build(cfg, mode, distributed=False, seed=None, pin_memory=False, persistent_workers=None):
        calls[mode] = (pin_memory, persistent_workers)
        return None, [1], None

    monkeypatch.setattr(run_mod, "build_dataloader", fake_build)
    run = SimpleNamespace(g=GlobalConfig(), cfg={"Eval": {"dataset": {}}}, dist=SimpleNamespace(device=torch.device(device),
                                                                                 enabled=False))
    run_mod._build_loaders(run, with_train=True)
    assert calls == {"Train": (pinned, None), "Eval": (pinned, persistent)}
