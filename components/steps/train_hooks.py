"""The worker's engine hooks: the background upload of ``latest.pt`` to the run prefix, hook
chaining, and the fault injection of tests and chaos drills (used by :mod:`components.steps.train`)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from components.steps.common import log
from ocr_core.storage.client import open_store
from ocr_core.storage.uri import join_uri

if TYPE_CHECKING:
    from ocr_core.engine.run import TrainHooks


class CheckpointUploader(threading.Thread):
    """Rank 0: copy ``latest.pt`` to the run prefix each time the engine saves it (resume after a kill).

    The engine's ``TrainHooks.after_save`` wakes this thread (:meth:`hooks`); the upload runs in the
    background so training does not wait for the object store, and a save that lands during an
    upload is uploaded right after it (only the newest matters). :meth:`close` uploads what is
    still pending and stops the thread.
    """

    def __init__(self, save_dir: Path, out_uri: str) -> None:
        super().__init__(daemon=True)
        self.save_dir, self.out_uri = save_dir, out_uri
        self.wake = threading.Event()
        self.closing = threading.Event()
        self.dirty = False  # a save happened since the last upload started
        self.uploads = 0

    def hooks(self) -> TrainHooks:
        from ocr_core.engine.run import TrainHooks

        def after_save(run: Any, name: str, path: Path | None) -> None:
            if name == "latest" and path is not None:
                self.dirty = True
                self.wake.set()

        return TrainHooks(after_save=after_save)

    def run(self) -> None:
        while True:
            self.wake.wait()
            self.wake.clear()
            if self.dirty:
                self.dirty = False
                self._upload()
            if self.closing.is_set():
                return

    def _upload(self) -> None:
        p = self.save_dir / "latest.pt"
        try:
            if p.is_file():
                open_store(self.out_uri).put_file(p, join_uri(self.out_uri, "latest.pt"))
                self.uploads += 1
        except Exception as exc:  # noqa: BLE001 - a failed interim upload must not kill training
            log.warning("interim checkpoint upload failed: %s", exc)

    def close(self) -> None:
        """Upload a save still pending, then stop the thread."""
        self.closing.set()
        self.wake.set()
        self.join(timeout=600)


def combine_hooks(*hooks: TrainHooks | None) -> TrainHooks | None:
    """One ``TrainHooks`` calling each given one's callbacks in order (``after_step``: any True stops)."""
    from ocr_core.engine.run import TrainHooks

    given = [h for h in hooks if h is not None]
    if len(given) <= 1:
        return given[0] if given else None

    def after_step(run: Any, state: Any) -> bool:
        return any([bool(h.after_step(run, state)) for h in given if h.after_step])

    def after_eval(run: Any, metrics: dict[str, float]) -> None:
        for h in given:
            if h.after_eval:
                h.after_eval(run, metrics)

    def after_save(run: Any, name: str, path: Path | None) -> None:
        for h in given:
            if h.after_save:
                h.after_save(run, name, path)

    return TrainHooks(after_step=after_step, after_eval=after_eval, after_save=after_save)


FAULT_ENV = "OCRFLOW_FAULT_KILL_AFTER_EPOCH"


def install_fault(spec: str, rank: int, save_dir: Path, out_uri: str) -> TrainHooks:
    """Fault injection for tests and chaos drills: ``OCRFLOW_FAULT_KILL_AFTER_EPOCH=E[:R]``.

    Right after epoch ``E``'s ``latest.pt`` is saved, rank 0 uploads it to the run prefix, all
    ranks meet at a barrier, then rank ``R`` (default 0) SIGKILLs itself: a lost node at a known
    point. A resumed attempt starts past epoch ``E``, so it fires once per run prefix. Returns the
    engine hooks that do it (``train(cfg, hooks=...)``).
    """
    import signal

    from ocr_core.engine.distributed import barrier
    from ocr_core.engine.run import TrainHooks

    epoch_s, _, rank_s = spec.partition(":")
    epoch, victim = int(epoch_s), int(rank_s or 0)

    def fault_after_save(run: Any, name: str, path: Path | None) -> None:
        if name == "latest" and run.state.epoch == epoch:
            if rank == 0:
                open_store(out_uri).put_file(save_dir / "latest.pt", join_uri(out_uri, "latest.pt"))
            barrier()
            if rank == victim:
                print(f"[rank {rank}] {FAULT_ENV}: SIGKILL after epoch {epoch} (latest.pt uploaded)", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)

    return TrainHooks(after_save=fault_after_save)


__all__ = ["FAULT_ENV", "CheckpointUploader", "combine_hooks", "install_fault"]
