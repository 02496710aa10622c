"""Two real gloo ranks: a stalled peer fails the other's collective after ``Global.dist_timeout_s``.

A node that powers off sends no TCP reset, so nothing but the process-group timeout ends the
survivors' wait (issue #16). Here rank 1 stops taking part without closing its sockets (it sleeps),
which is what a silent node looks like to rank 0. Rank 1 also starts late, by more than the timeout:
the start-up rendezvous keeps PyTorch's own timeout, so pods that start apart still meet.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 2.0
LATE_START_S = 4.0  # > TIMEOUT_S: the rendezvous must still wait for this rank

WORKER = f"""
import json, os, sys, time
from ocr_core.engine.distributed import all_reduce_sum, init_distributed
import torch
rank = int(os.environ["RANK"])
if rank == 1:
    time.sleep({LATE_START_S})
info = init_distributed("cpu", use_gpu=False, timeout_s={TIMEOUT_S})
first = all_reduce_sum({{"x": rank + 1.0}}, torch.device("cpu"))  # both ranks here: works
if rank == 1:
    print(json.dumps({{"rank": 1, "first": first}}), flush=True)
    time.sleep(60)  # stalled: alive, sockets open, never joins the next collective
    sys.exit(0)
t0 = time.monotonic()
try:
    all_reduce_sum({{"x": 1.0}}, torch.device("cpu"))
    error = None
except Exception as exc:
    error = f"{{type(exc).__name__}}: {{exc}}"
print(json.dumps({{"rank": 0, "first": first, "waited": time.monotonic() - t0, "error": error}}), flush=True)
os._exit(0)  # skip gloo's teardown of the timed-out group: it can abort the process at exit
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_stalled_rank_fails_the_other_ranks_collective_after_the_timeout(tmp_path: Path) -> None:
    port = _free_port()
    procs = []
    for rank in range(2):
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
               "WORLD_SIZE": "2", "LOCAL_RANK": "0", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, "-c", WORKER], env=env, cwd=tmp_path,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        out, err = procs[0].communicate(timeout=40)  # PyTorch's default would block rank 0 for 30 min
    finally:
        procs[1].kill()
    out1, _ = procs[1].communicate(timeout=10)
    assert procs[0].returncode == 0, err[-2000:]
    report = json.loads(out.strip().splitlines()[-1])
    assert report["first"] == {"x": 3.0}  # 1 + 2: the late rank joined and the group worked
    assert json.loads(out1.strip().splitlines()[-1])["first"] == {"x": 3.0}
    assert report["error"] is not None, "the collective with a stalled peer did not fail"
    assert "timed out" in report["error"].lower() or "timeout" in report["error"].lower(), report["error"]
    # failed after about the timeout, not PyTorch's 30 min (slack for a loaded 2-core machine)
    assert TIMEOUT_S * 0.9 <= report["waited"] < TIMEOUT_S + 8, report
