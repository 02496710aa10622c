"""How a training run stops early: SIGTERM (eviction, preemption) and ``Global.max_train_seconds``,
agreed by every rank at a step boundary (:mod:`ocr_core.engine.run`)."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ocr_core.engine.distributed import DistInfo, all_reduce_sum

if TYPE_CHECKING:
    from ocr_core.engine.run import Run

log = logging.getLogger("ocrflow")


def on_sigterm(run: Run) -> Callable[[], None]:
    """SIGTERM (Kubernetes eviction / preemption) asks the run to stop at the next step boundary.

    Returns the function that puts the previous handler back. A no-op off the main thread (signal
    handlers can only be set there).
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: Any) -> None:
        if not run.preempted:
            log.warning("SIGTERM: stopping at the next step boundary; saving latest")
        run.preempted = True

    previous = signal.signal(signal.SIGTERM, handler)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore


def agreed(run: Run, flag: bool) -> bool:
    """True on every rank when any rank has ``flag`` (one small all-reduce per step under DDP)."""
    if not run.dist.enabled:
        return flag
    return bool(all_reduce_sum({"flag": float(flag)}, run.dist.device)["flag"])


def time_budget(limit_s: float | None, dist_info: DistInfo) -> Any:
    """``() -> bool``: True once training ran ``limit_s`` seconds (every rank agrees on the same step)."""
    if limit_s is None:
        return lambda: False
    t0 = time.monotonic()
    said = False

    def over() -> bool:
        nonlocal said
        flag = float(time.monotonic() - t0 > limit_s)
        if dist_info.enabled:  # one rank's clock must not leave the others waiting in a collective
            flag = all_reduce_sum({"over": flag}, dist_info.device)["over"]
        if flag and not said:
            said = True
            log.warning("Global.max_train_seconds=%g reached: stopping at this step", limit_s)
        return bool(flag)

    return over


__all__ = ["agreed", "on_sigterm", "time_budget"]
