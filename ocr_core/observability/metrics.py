"""Prometheus metrics of a training process (one registry per run, labelled job / role / rank).

Exposed on ``/metrics`` when a port is configured (``Global.metrics_port`` or env
``OCRFLOW_METRICS_PORT``; off by default). Inside a pod (``KUBERNETES_SERVICE_HOST`` set) the
server binds 0.0.0.0 and the port is offset by ``LOCAL_RANK``; elsewhere it binds 127.0.0.1
and the port is offset by ``RANK`` so local multi-process runs do not collide. With
``OCRFLOW_PUSHGATEWAY`` set, the registry is also pushed after every evaluation and at the end.

Metric names (all carry ``job``, ``role``, ``rank``):

* ``ocrflow_train_loss{term}`` — loss and each loss term of the last optimizer step
* ``ocrflow_train_learning_rate``, ``ocrflow_train_epoch``, ``ocrflow_train_global_step``
* ``ocrflow_train_samples_total`` (counter), ``ocrflow_train_samples_per_second`` (last 20 steps)
* ``ocrflow_train_data_seconds`` / ``ocrflow_train_step_seconds`` — histograms of the per-step
  data-loading wait and compute time
* ``ocrflow_eval_metric{name}`` (hmean, precision, recall, acc, norm_edit_dis, fps, ...),
  ``ocrflow_eval_runs_total``
* ``ocrflow_gpu_max_memory_allocated_bytes`` (CUDA only)
* ``ocrflow_checkpoint_save_seconds{checkpoint}`` — histogram of checkpoint save durations
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, push_to_gateway, start_http_server

from ocr_core.observability.tensorboard_sink import TensorBoardSink, open_sink

log = logging.getLogger("ocrflow")

PORT_ENV = "OCRFLOW_METRICS_PORT"
PUSHGATEWAY_ENV = "OCRFLOW_PUSHGATEWAY"
ROLE_ENV = "OCRFLOW_ROLE"
LABELS = ("job", "role", "rank")
# keys of train_one_epoch's metrics_sink dict that are not loss terms
_NON_LOSS = frozenset({"lr", "samples", "data_seconds", "step_seconds", "epoch", "global_step"})
_STEP_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_SAVE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
MAX_LOSS_POINTS = 4000


def in_kubernetes() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def resolve_port(config_port: int | None) -> int | None:
    """The base metrics port: ``Global.metrics_port`` wins, then ``OCRFLOW_METRICS_PORT``; None = off."""
    if config_port is not None:
        return int(config_port)
    env = os.environ.get(PORT_ENV, "").strip()
    return int(env) if env else None


def bind_address() -> str:
    """0.0.0.0 inside a pod (Prometheus scrapes the pod IP), loopback anywhere else."""
    return "0.0.0.0" if in_kubernetes() else "127.0.0.1"


def port_for_rank(base: int, rank: int, local_rank: int) -> int:
    """Per-process port: pods have their own network namespace, local processes share one."""
    if base == 0:
        return 0
    return base + (local_rank if in_kubernetes() else rank)


class TrainingMetrics:
    """Training gauges/counters/histograms in a dedicated :class:`CollectorRegistry`.

    Also keeps a small in-memory record (loss per step, downsampled; per-epoch timings;
    checkpoint save times) for ``curves.png`` and the HTML report.

    Args:
        job: Job label (``Global.model_name`` or the save directory's name).
        role: Role label (env ``OCRFLOW_ROLE``, default ``train``).
        rank: Global rank label.
        state: Optional object with ``epoch`` / ``global_step`` attributes (the run's
            ``StepState``), read at every step when the sink dict does not carry them.
        device: Torch device; GPU memory is reported when it is CUDA.
    """

    def __init__(self, job: str, role: str = "train", rank: int = 0, state: Any = None, device: Any = None) -> None:
        self.labels = {"job": job, "role": role, "rank": str(rank)}
        self.registry = CollectorRegistry(auto_describe=True)
        self.state = state
        self.device = device
        self.server: Any = None
        self.port: int | None = None
        self.pushgateway = os.environ.get(PUSHGATEWAY_ENV) or None
        r = self.registry
        lt = list(LABELS)
        self.loss = Gauge("ocrflow_train_loss", "Loss terms of the last optimizer step", [*lt, "term"], registry=r)
        self.lr = Gauge("ocrflow_train_learning_rate", "Learning rate of the last step", lt, registry=r)
        self.epoch = Gauge("ocrflow_train_epoch", "Current epoch", lt, registry=r)
        self.global_step = Gauge("ocrflow_train_global_step", "Optimizer steps done", lt, registry=r)
        self.samples = Counter("ocrflow_train_samples", "Training samples consumed", lt, registry=r)
        self.ips = Gauge("ocrflow_train_samples_per_second", "Throughput over the last 20 steps", lt, registry=r)
        self.data_seconds = Histogram("ocrflow_train_data_seconds", "Per-step wait for the data loader",
                                      lt, buckets=_STEP_BUCKETS, registry=r)
        self.step_seconds = Histogram("ocrflow_train_step_seconds", "Per-step compute (forward/backward/step)",
                                      lt, buckets=_STEP_BUCKETS, registry=r)
        self.eval_metric = Gauge("ocrflow_eval_metric", "Metrics of the last evaluation", [*lt, "name"], registry=r)
        self.eval_runs = Counter("ocrflow_eval_runs", "Evaluations done", lt, registry=r)
        self.gpu_mem = Gauge("ocrflow_gpu_max_memory_allocated_bytes", "torch.cuda.max_memory_allocated",
                             lt, registry=r)
        self.ckpt_seconds = Histogram("ocrflow_checkpoint_save_seconds", "Checkpoint save duration",
                                      [*lt, "checkpoint"], buckets=_SAVE_BUCKETS, registry=r)
        for m in (self.lr, self.epoch, self.global_step, self.ips):
            m.labels(**self.labels).set(0)
        self.samples.labels(**self.labels)
        self.eval_runs.labels(**self.labels)
        self._window: deque[tuple[int, float]] = deque(maxlen=20)
        self._prev_epoch: int | None = None
        self._prev_data = self._prev_step = 0.0
        self._local_step = 0
        self.loss_points: list[tuple[int, dict[str, float]]] = []
        self._loss_stride = 1
        self.epochs: list[dict[str, float]] = []
        self.evals: list[dict[str, float]] = []
        self.checkpoints: list[dict[str, Any]] = []
        self.tensorboard: TensorBoardSink | None = None  # Global.use_visualdl (set by for_run)

    # ------------------------------------------------------------------ construction
    @classmethod
    def for_run(cls, run: Any) -> TrainingMetrics:
        """Build for a :class:`~ocr_core.engine.run.Run` and start ``/metrics`` if configured."""
        g = run.g
        job = g.model_name or Path(str(g.save_model_dir).rstrip("/\\")).name or "ocrflow"
        role = os.environ.get(ROLE_ENV) or "train"
        rank = int(os.environ.get("RANK", getattr(run.dist, "rank", 0)))
        self = cls(job, role, rank, state=run.state, device=run.dist.device)
        self.tensorboard = open_sink(g.use_visualdl, run.save_dir, bool(getattr(run.dist, "is_main", rank == 0)))
        base = resolve_port(g.metrics_port)
        if base is not None:
            local_rank = int(os.environ.get("LOCAL_RANK", "0"))
            self.serve(port_for_rank(base, rank, local_rank), bind_address())
        return self

    def serve(self, port: int, addr: str = "127.0.0.1") -> int | None:
        """Start the ``/metrics`` HTTP server; a busy port is a warning, never a training failure."""
        try:
            server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        except OSError as exc:
            log.warning("metrics: cannot serve on %s:%d (%s); continuing without /metrics", addr, port, exc)
            return None
        self.server = server
        self.port = int(server.server_address[1])
        log.info("metrics: serving http://%s:%d/metrics (job=%s role=%s rank=%s)", addr, self.port,
                 *self.labels.values())
        return self.port

    # ------------------------------------------------------------------ recording
    def on_step(self, d: dict[str, float], epoch: int | None = None, global_step: int | None = None) -> None:
        """``train_one_epoch``'s ``metrics_sink``: called after every optimizer step.

        ``data_seconds`` / ``step_seconds`` arrive cumulative over the epoch; the per-step values
        are their differences (reset when the epoch changes).
        """
        lb = self.labels
        if epoch is None:
            epoch = int(d.get("epoch", getattr(self.state, "epoch", 0)))
        if global_step is None:
            global_step = int(d.get("global_step", getattr(self.state, "global_step", self._local_step + 1)))
        self._local_step = global_step
        if epoch != self._prev_epoch:
            self._prev_epoch = epoch
            self._prev_data = self._prev_step = 0.0
        terms = {k: float(v) for k, v in d.items() if k not in _NON_LOSS}
        for k, v in terms.items():
            self.loss.labels(**lb, term=k).set(v)
        if "lr" in d:
            self.lr.labels(**lb).set(float(d["lr"]))
        self.epoch.labels(**lb).set(epoch)
        self.global_step.labels(**lb).set(global_step)
        n = int(d.get("samples", 0))
        if n:
            self.samples.labels(**lb).inc(n)
        dt_data = max(0.0, float(d.get("data_seconds", self._prev_data)) - self._prev_data)
        dt_step = max(0.0, float(d.get("step_seconds", self._prev_step)) - self._prev_step)
        self._prev_data = float(d.get("data_seconds", self._prev_data))
        self._prev_step = float(d.get("step_seconds", self._prev_step))
        if "data_seconds" in d:
            self.data_seconds.labels(**lb).observe(dt_data)
        if "step_seconds" in d:
            self.step_seconds.labels(**lb).observe(dt_step)
        self._window.append((n, dt_data + dt_step))
        secs = sum(s for _, s in self._window)
        if secs > 0:
            self.ips.labels(**lb).set(sum(k for k, _ in self._window) / secs)
        self._gpu_memory()
        self._record_loss(global_step, terms)
        if self.tensorboard is not None:
            self.tensorboard.on_step({**terms, "lr": d.get("lr")}, global_step)

    __call__ = on_step

    def _record_loss(self, step: int, terms: dict[str, float]) -> None:
        # keep at most MAX_LOSS_POINTS: when full, drop every other point and double the stride
        if step % self._loss_stride:
            return
        self.loss_points.append((step, {k: v for k, v in terms.items() if math.isfinite(v)}))
        if len(self.loss_points) >= MAX_LOSS_POINTS:
            self.loss_points = self.loss_points[::2]
            self._loss_stride *= 2

    def _gpu_memory(self) -> None:
        if self.device is None or getattr(self.device, "type", None) != "cuda":
            return
        import torch

        self.gpu_mem.labels(**self.labels).set(torch.cuda.max_memory_allocated(self.device))

    def on_epoch_end(self, epoch_logs: dict[str, float]) -> None:
        """Record ``train_one_epoch``'s summary (steps, samples, seconds, ips, data/step time)."""
        epoch = self._prev_epoch if self._prev_epoch is not None else getattr(self.state, "epoch", 0)
        self.epochs.append({"epoch": epoch, **{k: float(v) for k, v in epoch_logs.items()}})

    def on_eval(self, metrics: dict[str, float], push: bool = True) -> None:
        """Set ``ocrflow_eval_metric{name}`` for every numeric entry; push if a gateway is set."""
        for k, v in metrics.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                self.eval_metric.labels(**self.labels, name=k).set(float(v))
        self.eval_runs.labels(**self.labels).inc()
        if self.tensorboard is not None:
            self.tensorboard.on_eval(metrics, getattr(self.state, "global_step", self._local_step))
        self.evals.append({"global_step": getattr(self.state, "global_step", self._local_step), **metrics})
        self._gpu_memory()
        if push:
            self.push()

    def on_checkpoint(self, name: str, seconds: float) -> None:
        """Observe one checkpoint save (``name`` is reduced to its kind: latest, best_accuracy, ...)."""
        kind = "iter_epoch" if name.startswith("iter_epoch_") else name
        self.ckpt_seconds.labels(**self.labels, checkpoint=kind).observe(seconds)
        self.checkpoints.append({"checkpoint": name, "seconds": round(float(seconds), 4),
                                 "global_step": getattr(self.state, "global_step", self._local_step)})

    # ------------------------------------------------------------------ output
    def push(self) -> bool:
        """Push the registry to ``OCRFLOW_PUSHGATEWAY`` (grouped by job/role/rank); False on failure."""
        if not self.pushgateway:
            return False
        lb = self.labels
        try:
            push_to_gateway(self.pushgateway, job=lb["job"], registry=self.registry,
                            grouping_key={"role": lb["role"], "rank": lb["rank"]}, timeout=5)
        except Exception as exc:  # noqa: BLE001 - a monitoring outage must not stop training
            log.warning("metrics: push to %s failed: %s", self.pushgateway, exc)
            return False
        return True

    def summary(self, history: Iterable[dict[str, Any]] = (), best: dict[str, Any] | None = None) -> dict[str, Any]:
        """Everything recorded, JSON-ready (the HTML report and ``curves.png`` read this)."""
        return {"labels": dict(self.labels), "best_metric": dict(best or {}),
                "loss": [[s, t] for s, t in self.loss_points],
                "epochs": self.epochs, "evals": list(history) or self.evals, "checkpoints": self.checkpoints,
                "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    def finish(self, save_dir: str | Path | None, history: Iterable[dict[str, Any]] = (),
               best: dict[str, Any] | None = None) -> None:
        """End of training: push, and (rank 0: pass ``save_dir``) write ``training_summary.json``,
        ``curves.png`` and ``report.html`` into ``save_dir``."""
        self.push()
        if self.tensorboard is not None:
            self.tensorboard.close()
        if save_dir is None:
            return
        save_dir = Path(save_dir)
        summary = self.summary(history, best)
        save_dir.mkdir(parents=True, exist_ok=True)
        (save_dir / "training_summary.json").write_text(json.dumps(summary, indent=1, default=float),
                                                        encoding="utf-8")
        try:
            from ocr_core.observability.plots import write_curves
            from ocr_core.observability.report import training_report

            write_curves(save_dir / "curves.png", summary["loss"], summary["evals"],
                         title=f"{self.labels['job']} ({self.labels['role']})")
            training_report(save_dir)
        except Exception as exc:  # noqa: BLE001 - pictures must not fail a finished training
            log.warning("could not write curves/report in %s: %s", save_dir, exc)

    def close(self) -> None:
        """Stop the ``/metrics`` server (idempotent)."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def __enter__(self) -> TrainingMetrics:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


__all__ = ["TrainingMetrics", "bind_address", "port_for_rank", "resolve_port"]
