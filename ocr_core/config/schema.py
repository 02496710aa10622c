"""Typed validation of a resolved config.

``Global`` and ``Optimizer`` are dataclasses here (``LoaderConfig``, the data ``loader`` section,
lives with the loader in :mod:`ocr_core.data.loader`). Sections that name a registered component
(``Architecture.Backbone``, ``Loss``, ``PostProcess``, ``Metric``, ``Train.dataset`` and every
transform) are checked against that component's constructor signature. Every error names the key
path and the config file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

from ocr_core.config.guide_keys import check_guide_keys, save_epoch_due
from ocr_core.errors import ConfigError
from ocr_core.registry import check_dataclass, check_kwargs

SECTIONS = ("Global", "Architecture", "Loss", "Optimizer", "PostProcess", "Metric", "Train", "Eval")
#: ``Optimizer.name`` / ``Optimizer.lr.name`` values :mod:`ocr_core.engine.optim` builds
OPTIMIZERS = ("Adam", "AdamW", "Momentum", "SGD")
LR_SCHEDULES = ("Const", "Cosine", "Piecewise", "Step", "Linear", "Polynomial")


@dataclass
class GlobalConfig:
    """``Global`` section. PaddleOCR keys are kept (some only for compatibility)."""

    debug: bool = False
    use_gpu: bool = True
    device: str | None = None  # "cpu" | "cuda" | "cuda:N"; default: cuda if use_gpu and available
    epoch_num: int = 500
    log_smooth_window: int = 20
    print_batch_step: int = 10
    save_model_dir: str = "./output/model"
    save_epoch_step: Union[int, list[int]] = 1  # N, or OpenOCR's [start, step] (config/guide_keys.py)
    eval_batch_step: Union[int, list[int]] = field(default_factory=lambda: [0, 2000])
    eval_batch_epoch: int | None = None
    eval_at_end: bool = True  # one more evaluation after the last step if none ran there
    cal_metric_during_train: bool = False
    pretrained_model: str | None = None
    pretrained_strict: bool = False
    pretrained_max_missing_ratio: float = 0.5
    checkpoints: str | None = None
    save_inference_dir: str | None = None
    use_visualdl: bool = False
    use_wandb: bool = False
    infer_img: str | None = None
    backend: str = "torch"  # OpenOCR's infer: "torch" or "onnx" (runs onnx_model_path)
    onnx_model_path: str | None = None
    infer_mode: bool = False
    save_res_path: str | None = None
    distributed: bool = False
    d2s_train_image_shape: list[int] | None = None
    use_amp: bool | None = None  # None = auto (engine/fast_path.py): on where the hardware has fast bf16/fp16
    amp_dtype: str | None = None  # None = auto: bfloat16 (CPU, CUDA >= 8.0), else float16
    amp_level: str = "O1"
    scale_loss: float = 1024.0
    use_dynamic_loss_scaling: bool = True
    use_sync_bn: bool = False
    freeze_bn: bool = False  # BatchNorm in eval mode while training (fine-tuning, small batches)
    character_dict_path: str | None = None
    character_type: str | None = None
    max_text_length: int = 25
    use_space_char: bool = False
    seed: int = 1024
    num_threads: int | None = None
    channels_last: bool | None = None  # None = auto (engine/fast_path.py): on for CPU and CUDA
    grad_accum_steps: int = 1  # optimizer step every N batches (DDP all-reduces once per step)
    max_steps: int | None = None  # stop after this many iterations (smoke runs, benchmarks)
    # stop at the first step boundary after this much training wall time (budgeted runs); the run then
    # evaluates and saves as at its end. All ranks stop at the same step.
    max_train_seconds: float | None = None
    # also save `latest` every N optimizer steps (mid-epoch; resumed exactly). SIGTERM saves it too.
    save_step_interval: int | None = None
    # seconds a DDP collective waits for a peer before failing (a node lost without a TCP reset
    # blocks the survivors this long before torchrun restarts them); must exceed the longest wait of
    # one rank for another: rank 0 saving checkpoints, an uneven evaluation. None: PyTorch's
    # defaults (30 min gloo, 10 min NCCL). docs/scaling.md explains the 300.
    dist_timeout_s: float | None = 300.0
    metrics_port: int | None = None  # /metrics port (env OCRFLOW_METRICS_PORT); None = off
    eval_visualize: int = 8  # det/rec eval pictures kept per evaluation in <save_model_dir>/eval_vis; 0 = off
    model_name: str | None = None
    uniform_output_enabled: bool = False
    export_with_pir: bool = False
    load_static_weights: bool = False  # PaddleOCR 2.0-era key; accepted and ignored
    log_ranks: str | None = None
    use_xpu: bool = False
    use_npu: bool = False
    use_mlu: bool = False

    def saves_epoch(self, epoch: int) -> bool:
        """Whether ``epoch`` saves ``iter_epoch_<epoch>`` (see :func:`guide_keys.save_epoch_due`)."""
        return save_epoch_due(self.save_epoch_step, epoch)



@dataclass
class LRConfig:
    """``Optimizer.lr``."""

    name: str = "Const"
    learning_rate: float = 0.001
    warmup_epoch: float = 0
    decay_epochs: list[int] | None = None
    values: list[float] | None = None
    step_size: int | None = None
    gamma: float | None = None
    end_lr: float = 0.0
    power: float = 1.0
    # the global batch (images per optimizer step) the rates above are meant for; when set, every
    # rate (learning_rate, values, end_lr) scales linearly with the run's global batch
    # (batch_size_per_card x world_size x Global.grad_accum_steps). None: used as written.
    reference_batch_size: int | None = None


@dataclass
class RegularizerConfig:
    """``Optimizer.regularizer``: L2 is coupled weight decay (Adam ``weight_decay``)."""

    name: str = "L2"
    factor: float = 0.0


@dataclass
class OptimizerConfig:
    """``Optimizer``."""

    name: str = "Adam"
    beta1: float = 0.9
    beta2: float = 0.999
    momentum: float = 0.9
    epsilon: float = 1e-8
    weight_decay: float | None = None
    no_weight_decay_name: str | None = None
    one_dim_param_no_weight_decay: bool = False
    clip_norm: float | None = None
    clip_norm_global: float | None = None
    lr: dict[str, Any] | None = None
    regularizer: dict[str, Any] | None = None




#: the least value of a numeric ``Global`` key (every entry of a list one); None (unset) passes
_GLOBAL_MINIMUM = {"epoch_num": 1, "grad_accum_steps": 1, "log_smooth_window": 1, "max_text_length": 1,
                   "max_steps": 1, "save_step_interval": 1, "print_batch_step": 0, "save_epoch_step": 0,
                   "eval_batch_step": 0, "eval_batch_epoch": 0, "eval_visualize": 0, "max_train_seconds": 0}


def parse_global(cfg: dict[str, Any]) -> GlobalConfig:
    """Typed view of ``cfg['Global']`` (raises ConfigError naming the key)."""
    g: GlobalConfig = check_dataclass(GlobalConfig, cfg.get("Global"), "Global")
    for key, least in _GLOBAL_MINIMUM.items():
        value = getattr(g, key)
        if any(v is not None and not v >= least for v in (value if isinstance(value, list) else [value])):  # NaN too
            raise ConfigError(f"must be >= {least}, got {value!r}", f"Global.{key}")
    if g.dist_timeout_s is not None and not 0 < g.dist_timeout_s < float("inf"):  # NaN and inf too
        raise ConfigError(f"must be a number of seconds > 0 (or null: PyTorch's defaults), got {g.dist_timeout_s}",
                          "Global.dist_timeout_s")
    return g


def _check_arch(arch: Any, where: str) -> None:
    from ocr_core.modeling import BACKBONES, HEADS, NECKS

    if not isinstance(arch, dict):
        raise ConfigError("expected a mapping", where)
    if arch.get("name") == "DistillationModel" or "Models" in arch:
        from ocr_core.modeling.architectures.distillation_model import distillation_roles

        for sub_name, sub in distillation_roles(arch, where).items():
            _check_arch(sub, f"{where}.Models.{sub_name}")
        return
    allowed = {"model_type", "algorithm", "Transform", "Backbone", "Neck", "Head", "name",
               "freeze_params", "return_all_feats", "pretrained"}
    for key in arch:
        if key not in allowed:
            raise ConfigError(f"unknown key {key!r}; known keys: {', '.join(sorted(allowed))}", f"{where}.{key}")
    if arch.get("model_type") not in ("det", "rec"):
        raise ConfigError(f"model_type must be 'det' or 'rec', got {arch.get('model_type')!r}", f"{where}.model_type")
    if arch.get("Transform") not in (None, {}):
        raise ConfigError("input Transform modules are not supported", f"{where}.Transform")
    for key, typ in (("freeze_params", bool), ("return_all_feats", bool)):
        if key in arch and not isinstance(arch[key], typ):
            raise ConfigError(f"expected bool, got {arch[key]!r}", f"{where}.{key}")
    from ocr_core.modeling.architectures.base_model import backbone_cfg

    for section, reg, skip in (("Backbone", BACKBONES, set()), ("Neck", NECKS, {"in_channels"}),
                               ("Head", HEADS, {"in_channels", "out_channels", "out_channels_list"})):
        sub = backbone_cfg(arch) if section == "Backbone" and arch.get("Backbone") else arch.get(section)
        if sub is None:
            if section == "Backbone":
                raise ConfigError("missing Backbone section", f"{where}.Backbone")
            continue
        _check_named(reg, sub, f"{where}.{section}", skip)


def _check_named(reg: Any, sub: Any, where: str, skip: set[str] | None = None,
                 extra_allowed: set[str] | None = None) -> None:
    if not isinstance(sub, dict) or "name" not in sub:
        raise ConfigError(f"a {reg.kind} section needs a 'name' key", where)
    cls = reg.get(sub["name"], f"{where}.name")
    kwargs = {k: v for k, v in sub.items() if k != "name" and k not in (extra_allowed or set())}
    check_kwargs(cls, kwargs, where, skip=skip)


def _check_data_section(sec: Any, where: str) -> None:
    from ocr_core.data import DATASETS, TRANSFORMS

    if not isinstance(sec, dict):
        raise ConfigError("expected a mapping with 'dataset' and 'loader'", where)
    for key in sec:
        if key not in ("dataset", "loader", "sampler"):
            raise ConfigError(f"unknown key {key!r}; known keys: dataset, loader, sampler", f"{where}.{key}")
    ds = sec.get("dataset")
    if not isinstance(ds, dict):
        raise ConfigError("missing dataset section", f"{where}.dataset")
    _check_named(DATASETS, ds, f"{where}.dataset", extra_allowed={"transforms"})
    for i, op in enumerate(ds.get("transforms") or []):
        op_where = f"{where}.dataset.transforms[{i}]"
        if not isinstance(op, dict) or len(op) != 1:
            raise ConfigError("each transform must be a single-key mapping {OpName: {args}}", op_where)
        (op_name, op_args), = op.items()
        cls = TRANSFORMS.get(op_name, op_where)
        check_kwargs(cls, op_args or {}, f"{op_where}.{op_name}")
    from ocr_core.data.loader import LoaderConfig

    check_dataclass(LoaderConfig, sec.get("loader"), f"{where}.loader")


_OPENOCR_SCHEDULERS = {"CosineAnnealingLR": "Cosine", "CosineAnnealing": "Cosine", "Cosine": "Cosine",
                       "Const": "Const", "ConstLR": "Const", "LinearLR": "Linear", "Linear": "Linear",
                       "StepLR": "Step", "Step": "Step", "MultiStepLR": "Piecewise", "Piecewise": "Piecewise",
                       "Polynomial": "Polynomial", "PolynomialLR": "Polynomial"}


def _is_openocr(cfg: dict[str, Any]) -> bool:
    g = cfg.get("Global")
    return "LRScheduler" in cfg or (isinstance(g, dict) and ("output_dir" in g or g.get("device") == "gpu"))


def _necks(arch: Any) -> list[dict[str, Any]]:
    """The Neck sections of an Architecture (a plain model or a Distillation model's Models)."""
    if not isinstance(arch, dict):
        return []
    necks = [arch["Neck"]] if isinstance(arch.get("Neck"), dict) else []
    for sub in (arch.get("Models") or {}).values() if isinstance(arch.get("Models"), dict) else []:
        necks += _necks(sub)
    return necks


def normalize_openocr(cfg: dict[str, Any]) -> dict[str, Any]:
    """Rewrite OpenOCR-style keys in place onto ours (a no-op for PaddleOCR configs).

    ``LRScheduler`` -> ``Optimizer.lr`` (``CosineAnnealingLR`` -> ``Cosine``, ``warmup_epoch`` kept);
    ``Optimizer.lr: <float>`` -> ``Optimizer.lr.learning_rate``; ``Optimizer.filter_bias_and_bn``
    -> ``one_dim_param_no_weight_decay``; ``Global.output_dir`` -> ``save_model_dir``;
    ``Global.device: gpu|cpu`` -> ``use_gpu`` (+ ``device: cpu``); ``Global.model_type`` ->
    ``Architecture.model_type``;
    ``Global.use_tensorboard`` -> ``use_visualdl``; top-level ``profiler_options`` dropped.
    An OpenOCR config (an ``LRScheduler`` section, ``Global.output_dir`` or ``Global.device: gpu``)
    also gets ``se_gate: torch`` on its RSEFPN necks unless set: OpenOCR's PyTorch SE gate is
    ``F.hardsigmoid`` (slope 1/6), not Paddle's (slope 0.2), and its weights are trained with it.
    """
    g = cfg.get("Global")
    if _is_openocr(cfg):
        for neck in _necks(cfg.get("Architecture")):
            if neck.get("name") == "RSEFPN":
                neck.setdefault("se_gate", "torch")
    if isinstance(g, dict):
        if "output_dir" in g:
            out = g.pop("output_dir")
            g.setdefault("save_model_dir", out)
        if g.get("device") in ("gpu", "cpu"):
            dev = g.pop("device")
            g.setdefault("use_gpu", dev == "gpu")  # an explicit use_gpu (e.g. from -o) wins
            if dev == "cpu":
                g["device"] = "cpu"
        if "use_tensorboard" in g:
            g["use_visualdl"] = bool(g.pop("use_tensorboard"))
        if "model_type" in g:
            mtype = g.pop("model_type")
            if isinstance(cfg.get("Architecture"), dict):
                cfg["Architecture"].setdefault("model_type", mtype)
    if cfg.get("profiler_options", "absent") is None:
        cfg.pop("profiler_options")
    opt = cfg.get("Optimizer")
    if isinstance(opt, dict):
        if isinstance(opt.get("lr"), (int, float)) and not isinstance(opt.get("lr"), bool):
            opt["lr"] = {"learning_rate": float(opt["lr"])}
        if "filter_bias_and_bn" in opt:
            opt["one_dim_param_no_weight_decay"] = bool(opt.pop("filter_bias_and_bn"))
    sched = cfg.pop("LRScheduler", None)
    if isinstance(sched, dict):
        opt = cfg.setdefault("Optimizer", {}) or {}
        cfg["Optimizer"] = opt
        lr = dict(opt.get("lr") or {})
        sched = dict(sched)
        name = sched.pop("name", "Const")
        if name not in _OPENOCR_SCHEDULERS:
            raise ConfigError(f"unsupported OpenOCR scheduler {name!r}; known: {', '.join(_OPENOCR_SCHEDULERS)}",
                              "LRScheduler.name")
        lr["name"] = _OPENOCR_SCHEDULERS[name]
        lr.update(sched)
        opt["lr"] = lr
    return cfg


def validate_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Validate every supported section; return ``cfg`` on success.

    OpenOCR-style keys are first rewritten in place by :func:`normalize_openocr`.

    Raises:
        ConfigError: with the key path and the config file name.
    """
    from ocr_core.losses import LOSSES
    from ocr_core.metrics import METRICS
    from ocr_core.postprocess import POSTPROCESS

    src = (cfg.get("Global") or {}).get("_config_file")
    try:
        normalize_openocr(cfg)
        for key in cfg:
            if key not in SECTIONS:
                raise ConfigError(f"unknown section {key!r}; known sections: {', '.join(SECTIONS)}", str(key))
        parse_global(cfg)
        check_guide_keys(cfg)
        if "Architecture" in cfg:
            _check_arch(cfg["Architecture"], "Architecture")
        if cfg.get("Loss") is not None:
            _check_named(LOSSES, cfg["Loss"], "Loss")
        if cfg.get("PostProcess") is not None:
            _check_named(POSTPROCESS, cfg["PostProcess"], "PostProcess")
        if cfg.get("Metric") is not None:
            _check_named(METRICS, cfg["Metric"], "Metric")
        if cfg.get("Optimizer") is not None:
            opt = check_dataclass(OptimizerConfig, cfg["Optimizer"], "Optimizer")
            lr = check_dataclass(LRConfig, opt.lr, "Optimizer.lr")
            for name, known, key in ((opt.name, OPTIMIZERS, "Optimizer.name"),
                                     (lr.name, LR_SCHEDULES, "Optimizer.lr.name")):
                if name not in known:
                    raise ConfigError(f"unsupported {name!r}; choose {', '.join(known)}", key)
            check_dataclass(RegularizerConfig, opt.regularizer, "Optimizer.regularizer")
        for sec in ("Train", "Eval"):
            if cfg.get(sec) is not None:
                _check_data_section(cfg[sec], sec)
    except ConfigError as exc:
        if src:
            exc.with_file(src)
        raise
    return cfg
