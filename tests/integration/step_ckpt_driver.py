"""One training rank for tests/integration/test_step_checkpoints.py (not a test module).

``python step_ckpt_driver.py CONFIG_JSON [KILL_AT_STEP KILL_RANK [term]]``: trains the config
(JSON-encoded dict) through the engine's Python API under the operator-style env the test sets
(RANK, WORLD_SIZE, MASTER_ADDR/PORT); with KILL_AT_STEP, rank KILL_RANK SIGKILLs itself right after
that optimizer step (a node lost mid-epoch, before any save at that step could finish). With
``term``, that rank instead writes ``CONFIG_JSON.at_step`` (holding the step) right after the step
and waits (at most 120 s) until the test's SIGTERM has reached it, then trains on. ``Preempted``
exits 143 as ``ocrflow train`` does.
"""

import json
import os
import signal
import sys
import time

from ocr_core.engine.run import TrainHooks, train
from ocr_core.errors import Preempted

cfg = json.loads(open(sys.argv[1], encoding="utf-8").read())
hooks = None
if len(sys.argv) > 3:
    kill_step, kill_rank = int(sys.argv[2]), int(sys.argv[3])
    term = len(sys.argv) > 4 and sys.argv[4] == "term"

    def after_step(run, state):  # type: ignore[no-untyped-def]
        if state.global_step == kill_step and run.dist.rank == kill_rank:
            if term:
                with open(sys.argv[1] + ".at_step", "w", encoding="utf-8") as fh:
                    fh.write(str(state.global_step))
                deadline = time.monotonic() + 120
                while not run.preempted and time.monotonic() < deadline:
                    time.sleep(0.05)  # the SIGTERM handler runs here, on the main thread
                if not run.preempted:
                    raise RuntimeError(f"rank {kill_rank}: no SIGTERM within 120 s after step {kill_step}")
                print(f"rank {kill_rank}: SIGTERM received after step {kill_step}", flush=True)
            else:
                print(f"rank {kill_rank}: SIGKILL after step {kill_step}", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
        return False

    hooks = TrainHooks(after_step=after_step)
try:
    train(cfg, hooks=hooks)
except Preempted as exc:  # as ocr_core/commands/train.py: latest.pt is saved, a retry resumes
    print(f"ocrflow train: preempted: {exc}", file=sys.stderr, flush=True)
    sys.exit(Preempted.EXIT_CODE)
