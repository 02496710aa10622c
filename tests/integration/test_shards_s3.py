"""Shards on a real embedded S3 server (SeaweedFS): build to s3://, stream back, bounded cache, corruption.

One server for the module (~1 s to start). Data is synthesized by shard_fixtures.make_set.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocr_core.cli import main
from ocr_core.data.loader import build_dataloader
from ocr_core.data.shard_format import read_index
from ocr_core.data.shards import ShardDataSet
from ocr_core.storage.embedded import EmbeddedS3, find_weed_binary
from ocr_core.storage.uri import IntegrityError, StorageError
from tests.integration.shard_fixtures import make_set

RAW = [{"KeepKeys": {"keep_keys": ["img_path", "label", "image"]}}]  # no decode: the stored bytes


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedS3]:
    try:
        find_weed_binary()
    except StorageError as exc:
        pytest.skip(f"SeaweedFS binary not installed: {exc}")
    with EmbeddedS3(tmp_path_factory.mktemp("s3"), bucket="ocrflow-shards") as server:
        yield server


@pytest.fixture()
def published(s3: EmbeddedS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, str]:
    """(source dir, label file, s3 prefix) of a 26-sample rec set built into ~7 shards through the CLI."""
    for k, v in s3.env.items():
        monkeypatch.setenv(k, v)
    label = make_set(tmp_path / "src", 26, "rec", seed=4)
    prefix = f"s3://{s3.bucket}/{uuid.uuid4().hex[:8]}/shards"
    assert main(["build-shards", "--mode", "rec", "--label-file", str(label), "--data-dir", str(tmp_path / "src"),
                 "--out", prefix, "--shard-size", "12KB", "--quiet"]) == 0
    return tmp_path / "src", label, prefix


def test_stream_from_s3_equals_the_source(published: tuple[Path, Path, str], tmp_path: Path) -> None:
    src, label, prefix = published
    index = read_index(prefix)
    assert index.total == 26 and len(index.names) >= 5
    assert s3_listing(prefix) == sorted([*index.names, "manifest.json"])
    want = {p: (lab, (src / p).read_bytes()) for p, lab in (ln.split("\t", 1) for ln in
                                                            label.read_text(encoding="utf-8").splitlines())}
    cfg = {"Global": {"seed": 1}, "Eval": {"dataset": {"name": "ShardDataSet", "data_dir": prefix, "transforms": RAW,
                                                       "cache_dir": str(tmp_path / "cache"), "cache_size": "1MB"},
                                           "loader": {"batch_size_per_card": 4, "num_workers": 2}}}
    _ds, loader, _ = build_dataloader(cfg, "Eval")  # two worker processes, each with its own S3 connections
    got = [(p, lab, img) for b in loader for p, lab, img in zip(*b)]
    assert len(got) == 26 and len(loader) == 7
    for path, lab, img in got:
        rel = path.split(":", 1)[1]
        assert want[rel] == (lab, img)
    assert sorted(p.split(":", 1)[1] for p, _, _ in got) == sorted(want)


def s3_listing(prefix: str) -> list[str]:
    from ocr_core.storage.client import open_store

    return sorted(o.rel for o in open_store(prefix).list(prefix))


def _cached_bytes(cache: Path) -> int:
    """Bytes of the cached shards now; a shard the background prefetch evicts mid-listing counts 0."""
    total = 0
    for p in cache.iterdir():
        if p.name.endswith(".tar"):
            try:
                total += p.stat().st_size
            except FileNotFoundError:
                pass
    return total


def test_cache_bound_holds_while_streaming(published: tuple[Path, Path, str], tmp_path: Path) -> None:
    _, _, prefix = published
    index = read_index(prefix)
    bound = 2 * max(index.sizes) + 1000
    cache = tmp_path / "cache"
    ds = ShardDataSet(prefix, transforms=RAW, shuffle=True, shuffle_buffer=3, seed=2, cache_dir=str(cache),
                      cache_size=bound)
    ds.set_epoch(1)
    peak, n = 0, 0
    for _sample in ds:
        n += 1
        peak = max(peak, _cached_bytes(cache))
    assert n == 26 and 0 < peak <= bound
    assert ds.cache.downloads >= len(index.names)  # every shard came from S3 (some twice: a small cache)
    assert len([p for p in cache.iterdir() if p.name.endswith(".tar")]) <= 2


def test_corrupted_object_names_the_shard(published: tuple[Path, Path, str], tmp_path: Path) -> None:
    _, _, prefix = published
    index = read_index(prefix)
    from ocr_core.storage.client import open_store

    store = open_store(prefix)
    victim = index.uri(2)
    data = bytearray(store.get_bytes(victim))
    data[600] ^= 0xFF
    store.put_bytes(bytes(data), victim)
    ds = ShardDataSet(prefix, transforms=RAW, cache_dir=str(tmp_path / "cache"), cache_size="1MB")
    with pytest.raises(IntegrityError, match=rf"{victim}: sha256 mismatch"):
        list(ds)
    assert not [p for p in (tmp_path / "cache").iterdir() if index.names[2] in p.name and p.name.endswith(".tar")]
