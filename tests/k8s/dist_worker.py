"""A tiny distributed "training" replica for the launcher tests (not a test module).

Prints the operator env it got, joins a gloo group from ``env://``, all-reduces ``rank + 1`` and
prints the sum. ``--fail-rank R`` makes rank R exit 3 with a message; ``--sleep S`` just sleeps.
"""

import argparse
import datetime
import json
import os
import sys
import time

KEYS = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "PET_NNODES", "PET_NODE_RANK",
        "PET_NPROC_PER_NODE", "PET_MASTER_ADDR", "PET_MASTER_PORT", "PYTHONUNBUFFERED")

parser = argparse.ArgumentParser()
parser.add_argument("--fail-rank", type=int, default=None)
parser.add_argument("--sleep", type=float, default=0.0)
parser.add_argument("--linger", type=float, default=0.0, help="seconds to wait after the all-reduce")
args = parser.parse_args()
rank = int(os.environ["RANK"])
print("ENV " + json.dumps({k: os.environ.get(k) for k in KEYS}, sort_keys=True))
if args.sleep:
    print(f"rank {rank} sleeping", flush=True)
    time.sleep(args.sleep)
    sys.exit(0)
if args.fail_rank == rank:
    print(f"rank {rank}: cannot open shard s3://bucket/train-{rank}.lmdb: NoSuchKey", file=sys.stderr)
    sys.exit(3)

import torch  # noqa: E402 - after the cheap paths
import torch.distributed as dist  # noqa: E402

dist.init_process_group("gloo", init_method="env://", timeout=datetime.timedelta(seconds=60))
value = torch.tensor([float(rank + 1)])
dist.all_reduce(value)
print(f"rank {rank}/{dist.get_world_size()} all_reduce sum={value.item():g}", flush=True)
time.sleep(args.linger)
dist.destroy_process_group()
