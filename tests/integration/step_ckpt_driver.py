"""One training rank for tests/integration/test_step_checkpoints.py (not a test module).

``python step_ckpt_driver.py CONFIG_JSON [KILL_AT_STEP KILL_RANK]``: trains the config (JSON-encoded
dict) through the engine's Python API under the operator-style env the test sets (RANK,
WORLD_SIZE, MASTER_ADDR/PORT); with KILL_AT_STEP, rank KILL_RANK SIGKILLs itself right after that
optimizer step (a node lost mid-epoch, before any save at that step could finish).
"""

import json
import os
import signal
import sys

from ocr_core.engine.run import TrainHooks, train

cfg = json.loads(open(sys.argv[1], encoding="utf-8").read())
hooks = None
if len(sys.argv) > 3:
    kill_step, kill_rank = int(sys.argv[2]), int(sys.argv[3])

    def after_step(run, state):  # type: ignore[no-untyped-def]
        if state.global_step == kill_step and run.dist.rank == kill_rank:
            print(f"rank {kill_rank}: SIGKILL after step {kill_step}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        return False

    hooks = TrainHooks(after_step=after_step)
train(cfg, hooks=hooks)
