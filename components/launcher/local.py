"""Run a PyTorchJob's replicas as local processes ("nodes" on loopback) with the operator's env.

Each node gets exactly what the training operator v1.9.4 injects into a replica
(``pkg/controller.v1/pytorch/envvar.go``, ``master.go``, ``pytorch_defaults.go``), except that
``MASTER_ADDR``/``PET_MASTER_ADDR`` are ``127.0.0.1`` instead of the ``<job>-master-0`` service
name and ``MASTER_PORT`` is a free loopback port instead of the container port 23456. The worker
command is the same one ``build_pytorchjob`` puts into the pod, with ``$(VAR)`` expanded the way
the kubelet does, ``python`` mapped to this interpreter and ``torchrun`` to
``python -m torch.distributed.run``. ``launcher=local`` in the pipeline uses this.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from components.launcher.pytorchjob import worker_command

_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class LocalJobFailed(RuntimeError):
    """A node exited non-zero; the others were killed."""

    def __init__(self, rank: int, exit_code: int, log_tail: list[str]) -> None:
        self.rank, self.exit_code, self.log_tail = rank, exit_code, log_tail
        super().__init__(f"node {rank} exited with code {exit_code}\n--- last {len(log_tail)} lines of node "
                         f"{rank} ---\n" + "\n".join(log_tail))


class LocalJobTimeout(TimeoutError):
    """The overall timeout passed; every node was killed."""


@dataclass
class LocalResult:
    nnodes: int
    duration_s: float
    log_tail: list[str]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def operator_env(nnodes: int, rank: int, master_addr: str, master_port: int,
                 nproc_per_node: int | str | None = None) -> dict[str, str]:
    """The env the operator injects into replica ``rank`` of a Master+Worker job (no elastic).

    ``nproc_per_node=None`` behaves like the controller, which defaults ``nprocPerNode`` to
    ``"auto"`` before generating env: ``PET_NPROC_PER_NODE=auto`` and ``WORLD_SIZE`` counts one
    process per replica (``auto`` is not an int).
    """
    nproc = "auto" if nproc_per_node is None else str(nproc_per_node)
    per_node = int(nproc) if nproc.isdigit() else 1
    return {
        "PYTHONUNBUFFERED": "1",
        "MASTER_PORT": str(master_port),
        "PET_MASTER_PORT": str(master_port),
        "MASTER_ADDR": master_addr,
        "PET_MASTER_ADDR": master_addr,
        "WORLD_SIZE": str(nnodes * per_node),
        "RANK": str(rank),
        "PET_NODE_RANK": str(rank),
        "PET_NPROC_PER_NODE": nproc,
        "PET_NNODES": str(nnodes),
    }


def expand_k8s_vars(arg: str, env: Mapping[str, str]) -> str:
    """Kubelet ``$(VAR)`` expansion: defined vars are replaced, ``$$`` is ``$``, others stay."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return _VAR.sub(sub, arg)


def local_argv(command: Sequence[str], env: Mapping[str, str], python: str = sys.executable) -> list[str]:
    """A pod command made runnable here: expand ``$(VAR)``, map ``python``/``torchrun``."""
    argv = [expand_k8s_vars(a, env) for a in command]
    if argv and argv[0] in ("python", "python3"):
        argv[0] = python
    elif argv and argv[0] == "torchrun":
        argv = [python, "-m", "torch.distributed.run", *argv[1:]]
    return argv


def kill_group(proc: subprocess.Popen, grace_s: float = 3.0) -> None:
    """SIGTERM the process group of ``proc`` (torchrun has children), SIGKILL after ``grace_s``."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_local_workers(
    program: Sequence[str],
    *,
    nnodes: int = 1,
    nproc_per_node: int | None = None,
    env: Mapping[str, str] | None = None,
    timeout_s: float | None = None,
    log_sink: Callable[[str], None] | None = print,
    cwd: str | None = None,
    tail_lines: int = 40,
) -> LocalResult:
    """Start ``nnodes`` nodes running ``program`` (the same args as ``build_pytorchjob``'s command).

    Rank 0's output goes to ``log_sink`` line by line; the others are kept as tails. Any node
    exiting non-zero kills the rest and raises :class:`LocalJobFailed` with that node's tail;
    ``timeout_s`` (overall) raises :class:`LocalJobTimeout`; KeyboardInterrupt kills all nodes.
    """
    port = free_port()
    command = worker_command(program, nproc_per_node)
    sink = log_sink or (lambda line: None)
    tails = [collections.deque(maxlen=tail_lines) for _ in range(nnodes)]
    procs: list[subprocess.Popen] = []
    readers: list[threading.Thread] = []
    start = time.monotonic()
    try:
        for rank in range(nnodes):
            node_env = {**os.environ, **(env or {}), **operator_env(nnodes, rank, "127.0.0.1", port, nproc_per_node)}
            proc = subprocess.Popen(local_argv(command, node_env), env=node_env, cwd=cwd, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, bufsize=1, start_new_session=True)
            procs.append(proc)
            reader = threading.Thread(target=_pump, args=(proc, tails[rank], sink if rank == 0 else None),
                                      daemon=True)
            reader.start()
            readers.append(reader)
        while True:
            codes = [p.poll() for p in procs]
            failed = [(r, c) for r, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                rank, code = failed[0]
                _stop_all(procs, readers)
                raise LocalJobFailed(rank, code, list(tails[rank]))
            if all(c == 0 for c in codes):
                for reader in readers:
                    reader.join(timeout=5)
                return LocalResult(nnodes, time.monotonic() - start, list(tails[0]))
            if timeout_s is not None and time.monotonic() - start > timeout_s:
                raise LocalJobTimeout(f"local job did not finish within {timeout_s:g} s")
            time.sleep(0.05)
    finally:
        _stop_all(procs, readers)


def _pump(proc: subprocess.Popen, tail: collections.deque, sink: Callable[[str], None] | None) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip("\n")
        tail.append(line)
        if sink is not None:
            sink(line)
    proc.stdout.close()


def _stop_all(procs: list[subprocess.Popen], readers: list[threading.Thread]) -> None:
    for proc in procs:
        kill_group(proc)
    for reader in readers:
        reader.join(timeout=5)
