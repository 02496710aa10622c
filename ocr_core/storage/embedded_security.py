"""Lock down every port of the embedded SeaweedFS server, not only S3.

``weed mini`` also opens master, volume and filer HTTP ports and a gRPC port per component. Left
alone, the filer's HTTP port serves bucket contents and accepts uploads with no credentials, and
the gRPC ports answer anyone on the machine. :func:`write_security_config` writes the
``security.toml`` that ``weed`` reads from its working directory:

* ``jwt.signing`` / ``jwt.signing.read`` and ``jwt.filer_signing`` / ``jwt.filer_signing.read``:
  fresh random keys per server start, so volume and filer HTTP reads and writes need a token that
  only the server's own components can mint (``401 wrong jwt`` otherwise);
* ``[grpc.*]``: mutual TLS on every gRPC port, from a throw-away CA made for this server start
  (``openssl``); a client without a certificate signed by it fails the TLS handshake.

The server also runs with ``-disableHttp`` (:meth:`EmbeddedS3.command`): the master's and the
filer's HTTP APIs answer 404 (the master's ``/submit`` stores an upload from anyone, ``/dir/assign``
hands out file ids, ``/col/delete`` drops a bucket's volumes). The volume server's HTTP API stays
(the S3 gateway moves chunks through it) and answers ``401 wrong jwt`` to a request without a
token. What still answers without credentials is status only, no object names or contents: the
master's status page and ``/cluster/status``, the volume's ``/status`` and the admin's ``/metrics``
(both name the buckets), the ``/healthz`` endpoints. Only the S3 port takes or serves data, with
the session's keys (SigV4). Everything binds 127.0.0.1.
Test: tests/integration/test_storage_security.py.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

from ocr_core.storage.uri import StorageError

_GRPC_SECTIONS = ("master", "volume", "filer", "s3", "admin", "client", "msg_broker", "msg_agent")
_JWT_SECTIONS = ("jwt.signing", "jwt.signing.read", "jwt.filer_signing", "jwt.filer_signing.read")


def _openssl(*args: str, cwd: Path) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise StorageError("the embedded S3 server needs the `openssl` command to secure its internal gRPC "
                           "ports (apt-get install openssl)")
    proc = subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise StorageError(f"openssl {args[0]} failed: {proc.stderr.strip()[-300:]}")


def make_pki(pki: Path) -> dict[str, Path]:
    """A CA and one certificate (server and client use, 127.0.0.1/localhost) valid for 30 days."""
    pki.mkdir(parents=True, exist_ok=True)
    os.chmod(pki, 0o700)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "30",
             "-subj", "/CN=ocrflow-embedded-s3-ca", cwd=pki)
    _openssl("req", *ec, "-keyout", "node.key", "-out", "node.csr", "-subj", "/CN=ocrflow-embedded-s3", cwd=pki)
    (pki / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                 "extendedKeyUsage=serverAuth,clientAuth\n", encoding="utf-8")
    _openssl("x509", "-req", "-in", "node.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "node.crt", "-days", "30", "-extfile", "ext.cnf", cwd=pki)
    (pki / "ca.key").unlink()  # nothing else is ever signed with it
    for key in pki.glob("*.key"):
        os.chmod(key, 0o600)
    return {"ca": pki / "ca.crt", "cert": pki / "node.crt", "key": pki / "node.key"}


def write_security_config(run_dir: Path) -> Path:
    """``run_dir/security.toml`` (JWT keys + gRPC mTLS) and its PKI under ``run_dir/pki``; the path."""
    files = make_pki(run_dir / "pki")
    lines = []
    for section in _JWT_SECTIONS:
        lines += [f"[{section}]", f'key = "{secrets.token_hex(32)}"', "expires_after_seconds = 60", ""]
    lines += ["[grpc]", f'ca = "{files["ca"]}"', ""]
    for section in _GRPC_SECTIONS:
        lines += [f"[grpc.{section}]", f'cert = "{files["cert"]}"', f'key = "{files["key"]}"', ""]
    path = run_dir / "security.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    os.chmod(path, 0o600)
    return path


__all__ = ["make_pki", "write_security_config"]
