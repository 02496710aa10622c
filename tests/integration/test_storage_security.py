"""Every port the embedded S3 server opens refuses unauthenticated reads and writes (#15 item 1).

The real ``weed mini``: an object is put through S3 with the session's keys, then every TCP port the
server process listens on (found in /proc, not taken from our own port table) is tried without
credentials: HTTP GET of the object through the filer's and S3's paths, HTTP PUT/POST of new data,
the volume server's read/write/delete of the object's real file id (looked up with ``weed shell``
holding the server's own certificate), the master's ``/submit`` upload, and on gRPC ports a TLS
handshake without a client certificate and a plaintext HTTP/2 preface. The controls show the
refusals are real, not a port that answers nobody: S3 works with the keys, a volume read carrying a
token signed with the server's read key returns the object, and a client holding the server's
certificate completes the gRPC handshake.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ocr_core.storage.embedded import EmbeddedS3, find_weed_binary
from ocr_core.storage.uri import StorageError

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux /proc")

SECRET = b"do-not-leak-" * 64
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000")


def _weed_or_skip() -> None:
    try:
        find_weed_binary()
    except StorageError as exc:
        pytest.skip(str(exc))


def _process_tree(pid: int) -> set[int]:
    """``pid`` and every descendant (``weed mini`` runs its servers in one process today; a child
    spawned by a later version is scanned too)."""
    parent = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(stat.parent.name)] = int(fields[1])
    tree, grew = {pid}, True
    while grew:
        grew = False
        for child, ppid in parent.items():
            if ppid in tree and child not in tree:
                tree.add(child)
                grew = True
    return tree


def _listening(pid: int) -> tuple[set[int], set[str]]:
    """TCP ports and unix socket paths the process tree of ``pid`` listens on, from /proc."""
    inodes = set()
    for p in _process_tree(pid):
        try:
            fds = list(Path(f"/proc/{p}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:  # LISTEN
                ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    unix = set()
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 8 and cols[6] in inodes and cols[3] == "00010000":  # __SO_ACCEPTCON
            unix.add(cols[7])
    return ports, unix


def _listening_ports(pid: int) -> set[int]:
    return _listening(pid)[0]


def _http(method: str, url: str, data: bytes | None = None, headers: dict | None = None) -> tuple[object, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, method=method, headers=headers or {}),
                                    timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, ConnectionError, OSError) as e:
        return type(e).__name__, b""


def _multipart(payload: bytes) -> tuple[bytes, dict]:
    b = "ocrflowboundary"
    body = (f"--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.bin\"\r\n\r\n").encode() \
        + payload + f"\r\n--{b}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={b}"}


def _tls_handshake(port: int | str, ca: Path, cert: tuple[Path, Path] | None) -> str:
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.set_alpn_protocols(["h2"])
    if cert:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    try:
        with _connect(port) as raw, ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(PREFACE)
            frame = tls.recv(9)
            return "settings" if len(frame) == 9 and frame[3] == 0x04 else f"other {frame!r}"
    except (ssl.SSLError, ConnectionError, OSError) as e:
        return f"refused: {type(e).__name__}"


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=5)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(self.unix_path)


def _unix_http(path: str, method: str, url: str, data: bytes | None = None) -> tuple[object, bytes]:
    conn = _UnixHTTP(path)
    try:
        conn.request(method, url, body=data)
        resp = conn.getresponse()
        return resp.status, resp.read()
    except (http.client.HTTPException, OSError) as e:
        return type(e).__name__, b""
    finally:
        conn.close()


def _file_id(server: EmbeddedS3, path: str) -> str:
    """The volume file id of a one-chunk object, asked as the server's own components ask: ``weed
    shell`` run in the server's run dir, so it reads its security.toml and client certificate."""
    assert server.log_path is not None and server.binary is not None
    master = f"127.0.0.1:{server.ports['master.port']}.{server.ports['master.port.grpc']}"
    out = subprocess.run([server.binary, "shell", f"-master={master}"], input=f"fs.meta.cat {path}\n",
                         cwd=server.log_path.parent, capture_output=True, text=True, timeout=60).stdout
    fids = re.findall(r'"fileId":\s*"(\d+,[0-9a-f]+)"', out)
    assert len(fids) == 1, out[-500:]
    return fids[0]


def _volume_read_token(run_dir: Path, fid: str) -> str:
    """An HS256 token for ``fid`` signed with the server's volume read key (``[jwt.signing.read]``)."""
    # (tomllib is 3.11+; the section is one `key = "..."` line below its header)
    found = re.search(r'^\[jwt\.signing\.read\]\s*^key\s*=\s*"([^"]*)"',
                      (run_dir / "security.toml").read_text(), re.M)
    key = found.group(1) if found else ""  # "" when there is none: the lock left off

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64(json.dumps({"fid": fid, "exp": int(time.time()) + 60}).encode())
    sig = hmac.new(key.encode(), f"{head}.{claims}".encode(), hashlib.sha256).digest()
    return f"{head}.{claims}.{b64(sig)}"


def _connect(where: int | str) -> socket.socket:
    if isinstance(where, int):
        return socket.create_connection(("127.0.0.1", where), timeout=5)
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.settimeout(5)
    raw.connect(where)
    return raw


def _plaintext_h2(where: int | str) -> bool:
    """True when a plaintext HTTP/2 (gRPC) client gets the server's SETTINGS frame."""
    with _connect(where) as raw:
        raw.sendall(PREFACE)
        try:
            got = raw.recv(9)
        except OSError:
            got = b""
    return len(got) == 9 and got[3] == 0x04


def test_no_port_of_the_embedded_server_serves_or_takes_data_without_credentials(tmp_path: Path) -> None:
    _weed_or_skip()
    with EmbeddedS3(tmp_path / "s3", bucket="secure") as server:
        src = tmp_path / "obj.bin"
        src.write_bytes(SECRET)
        store = server.store()
        store.put_file(src, "s3://secure/dir/obj.bin")
        back = tmp_path / "back.bin"
        store.get_file("s3://secure/dir/obj.bin", back)
        assert back.read_bytes() == SECRET  # S3 with the session's keys works
        assert server.pid is not None
        ports, unix = _listening(server.pid)
        assert server.ports["s3.port"] in ports and len(ports) >= 6
        grpc_ports = {p for name, p in server.ports.items() if name.endswith(".grpc")} & ports
        assert len(grpc_ports) >= 4
        master = server.ports["master.port"]
        assert _http("GET", f"http://127.0.0.1:{master}/dir/assign")[0] == 404  # no file ids for anyone
        assert server.log_path is not None
        run_dir = server.log_path.parent  # security.toml and the per-start PKI live beside the log
        fid = _file_id(server, "/buckets/secure/dir/obj.bin")  # where the bytes really are
        # a key far past the server's counter on the same (writable) volume, the cookie reused
        new_fid = f"{fid.split(',')[0]},7fffffff{fid[-8:]}"
        volume = f"http://127.0.0.1:{server.ports['volume.port']}"
        # the control: the volume port does serve this file id, to a holder of the read key
        token = _volume_read_token(run_dir, fid)
        assert _http("GET", f"{volume}/{fid}", headers={"Authorization": f"BEARER {token}"}) == (200, SECRET)
        leaks = []
        for port in sorted(ports - grpc_ports):
            base = f"http://127.0.0.1:{port}"
            for method, path, data, headers in (
                    ("GET", "/", None, None), ("GET", "/status", None, None), ("GET", "/metrics", None, None),
                    ("GET", "/buckets/secure/dir/?pretty=y", None, None), ("GET", "/secure?list-type=2", None, None),
                    ("GET", "/buckets/secure/dir/obj.bin", None, None),
                    ("GET", "/secure/dir/obj.bin", None, None),
                    ("GET", f"/{fid}", None, None),
                    ("PUT", "/buckets/secure/evil.bin", b"evil", None),
                    ("PUT", "/secure/evil.bin", b"evil", None),
                    ("PUT", "/evilbucket", None, None),
                    ("PUT", f"/{new_fid}", b"evil", None),
                    ("POST", "/buckets/secure/", *_multipart(b"evil")),
                    ("POST", "/submit", *_multipart(b"evil")),
                    ("POST", f"/{new_fid}", *_multipart(b"evil")),
                    ("DELETE", f"/{fid}", None, None),
                    ("DELETE", "/secure/dir/obj.bin", None, None)):
                status, body = _http(method, base + path, data, headers)
                # status pages may answer (they name buckets), never with an object's bytes, nor its
                # name unless the request held it (S3 errors echo the key asked for)
                named = b"obj.bin" in body and "obj.bin" not in path
                if SECRET[:12] in body or named or status in (200, 201, 202, 204) and method != "GET":
                    leaks.append(f"{method} :{port}{path} -> {status} {body[:60]!r}")
            # master/volume administration: dropping a bucket's volumes, growing, vacuuming, deleting
            for method, path in (("GET", "/col/delete?collection=secure"), ("POST", "/col/delete?collection=secure"),
                                 ("GET", "/vol/grow?count=1&collection=secure"), ("GET", "/vol/vacuum"),
                                 ("POST", f"/admin/volume/delete?volume={fid.split(',')[0]}")):
                status, body = _http(method, base + path)
                if isinstance(status, int) and status < 400:
                    leaks.append(f"{method} :{port}{path} -> {status} {body[:60]!r}")
        assert not leaks, "unauthenticated access:\n" + "\n".join(leaks)
        assert [o.uri for o in store.list("s3://secure")] == ["s3://secure/dir/obj.bin"]  # nothing was written
        assert "evilbucket" not in {b.name for b in store.client.list_buckets()}
        assert _http("GET", f"{volume}/{fid}", headers={"Authorization": f"BEARER {token}"}) == (200, SECRET)
        new_token = _volume_read_token(run_dir, new_fid)  # not deleted above, and no new needle
        assert _http("GET", f"{volume}/{new_fid}", headers={"Authorization": f"BEARER {new_token}"})[0] == 404
        ca, cert = run_dir / "pki" / "ca.crt", (run_dir / "pki" / "node.crt", run_dir / "pki" / "node.key")
        for port in sorted(grpc_ports):
            assert _tls_handshake(port, ca, None).startswith("refused"), port  # no client certificate
            assert _tls_handshake(port, ca, cert) == "settings", port  # the control: mTLS works
            assert not _plaintext_h2(port), f"plaintext HTTP/2 accepted on {port}"
        # unix sockets: per-component gRPC sockets (mTLS like their TCP twins) and the S3/filer local
        # sockets (S3 signature / -disableHttp like their ports)
        assert any("grpc" in u for u in unix) and any(u.endswith("s3.sock") for u in unix), unix
        for path in sorted(unix):
            assert os.stat(path).st_mode & 0o002 == 0, f"{path} is world-writable (anyone may connect)"
            if "grpc" in path:
                assert _tls_handshake(path, ca, None).startswith("refused"), path
                assert not _plaintext_h2(path), f"plaintext HTTP/2 accepted on {path}"
                continue
            for method, url, data in (("GET", "/buckets/secure/dir/obj.bin", None), ("GET", "/secure/dir/obj.bin", None),
                                      ("PUT", "/buckets/secure/evil.bin", b"evil"), ("PUT", "/secure/evil.bin", b"evil")):
                status, body = _unix_http(path, method, url, data)
                if SECRET[:12] in body or status in (200, 201, 204) and method != "GET":
                    leaks.append(f"{method} {path}{url} -> {status} {body[:60]!r}")
        assert not leaks, "unauthenticated access:\n" + "\n".join(leaks)
        assert [o.uri for o in store.list("s3://secure")] == ["s3://secure/dir/obj.bin"]
        # nor the disk: the volume files hold the objects in clear, for the owner only
        data_dir = tmp_path / "s3"
        assert data_dir.stat().st_mode & 0o077 == 0, oct(data_dir.stat().st_mode)
        volumes = list(data_dir.rglob("*.dat"))
        assert volumes
        assert all(v.stat().st_mode & 0o077 == 0 for v in volumes), [oct(v.stat().st_mode) for v in volumes]
