"""Shards (#16 item 1): build round trip, SimpleDataSet parity, rank/worker split, shuffle, resume, integrity.

All data is synthesized here: small random images (PNG and JPEG) with det or rec labels. The S3 side
(download cache, corrupted objects on a real server) is tests/integration/test_shards_s3.py.
"""

from __future__ import annotations

import random
import tarfile
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ocr_core.cli import main
from ocr_core.data import TRANSFORMS
from ocr_core.data.loader import build_dataloader
from ocr_core.data.shard_cache import ShardCache, ShardFile
from ocr_core.data.shard_format import build_shards, parse_size, read_index
from ocr_core.data.shards import ShardDataSet, rank_plan, worker_positions
from ocr_core.data.simple_dataset import SimpleDataSet
from ocr_core.errors import ConfigError
from ocr_core.storage.client import LocalStore
from ocr_core.storage.manifest import read_manifest
from ocr_core.storage.uri import IntegrityError
from tests.integration.shard_fixtures import make_set


@TRANSFORMS.register("ShardTestNoise")
class ShardTestNoise:
    """Random draws from ``random`` and ``np.random``, as augmentations make them."""

    def __call__(self, data: dict) -> dict:
        data["noise"] = random.random() + float(np.random.rand())
        return data


def tag_ops(noise: bool = False) -> list:
    return [*([{"ShardTestNoise": None}] if noise else []), {"KeepKeys": {"keep_keys": ["img_path", "label",
                                                                                        *(["noise"] if noise else [])]}}]


@pytest.fixture(scope="module")
def rec_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("rec")
    label = make_set(root / "src", 23, "rec", bad_lines=2)
    build_shards([str(label)], str(root / "src"), str(root / "shards"), "rec", 12_000, quiet=True)
    return root / "src", root / "shards"


def names(ds: ShardDataSet) -> list[str]:
    return [s[0].split(":", 1)[1] for s in ds]


# -- format ----------------------------------------------------------------------------------------
def test_parse_size() -> None:
    assert parse_size("256MB") == 256_000_000 and parse_size("1GiB") == 1 << 30 and parse_size(4096) == 4096
    assert parse_size("1.5k") == 1500
    for bad in ("12XB", "-1", 0, "MB"):
        with pytest.raises(ConfigError, match="size"):
            parse_size(bad, "size")


@pytest.mark.parametrize("mode", ["det", "rec"])
def test_round_trip_every_sample_and_label(tmp_path: Path, mode: str) -> None:
    label = make_set(tmp_path / "src", 17, mode, bad_lines=1)
    (tmp_path / "src" / "imgs" / "im5.png").unlink()  # a missing image is skipped and counted
    stats = build_shards([str(label)], str(tmp_path / "src"), str(tmp_path / "out"), mode, "15KB", quiet=True)
    assert stats.samples == 16 and stats.skipped == Counter({"missing_image": 1, "missing_delimiter": 1})
    index = read_index(str(tmp_path / "out"))
    assert index.mode == mode and index.total == 16 and len(index.names) == stats.shards > 2
    man = read_manifest(str(tmp_path / "out"))
    assert man.counts["samples"] == 16 and [f.path for f in man.files] == index.names
    got = []
    for name, count, sha in zip(index.names, index.counts, index.sha256):
        path = tmp_path / "out" / name
        assert path.stat().st_size <= 15_000 or count == 1
        assert LocalStore().stat(str(path)).sha256 == sha
        shard = ShardFile(str(path), name, count)
        got += [shard.read(i) + (shard.samples[i].ext,) for i in range(count)]
        shard.close()
    source = [ln.split("\t", 1) for ln in label.read_text(encoding="utf-8").splitlines() if "\t" in ln]
    source = [(p, lab) for p, lab in source if p != "imgs/im5.png"]
    assert len(got) == len(source)
    for (img, meta, ext), (path, lab) in zip(got, source):
        assert meta["path"] == path and meta["label"] == lab and ext == path.rsplit(".", 1)[1]
        assert img == (tmp_path / "src" / path).read_bytes()
    with tarfile.open(tmp_path / "out" / index.names[0]) as tf:  # a plain tar any tool reads
        assert tf.getnames()[:2] == ["000000000." + source[0][0].rsplit(".", 1)[1], "000000000.json"]
    # the same inputs give byte-identical shards
    build_shards([str(label)], str(tmp_path / "src"), str(tmp_path / "again"), mode, "15KB", quiet=True)
    assert read_index(str(tmp_path / "again")).sha256 == index.sha256


def test_cli_build_shards_and_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    label = make_set(tmp_path / "src", 5, "rec")
    out = tmp_path / "out"
    args = ["build-shards", "--mode", "rec", "--label-file", str(label), "--data-dir", str(tmp_path / "src"),
            "--out", str(out), "--shard-size", "8KB", "--quiet"]
    assert main(args) == 0
    assert "wrote 5 sample(s)" in capsys.readouterr().out
    assert main(args) == 2 and "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite", "--shard-size", "1MB"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "shard-000000.tar"]  # stale shards removed
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("x")
    assert main([*args[:-5], "--out", str(tmp_path / "other")]) == 2
    assert "not empty" in capsys.readouterr().err


# -- the dataset -----------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["det", "rec"])
def test_sample_equals_simple_dataset(tmp_path: Path, mode: str) -> None:
    label = make_set(tmp_path / "src", 9, mode)
    build_shards([str(label)], str(tmp_path / "src"), str(tmp_path / "out"), mode, "10KB", quiet=True)
    if mode == "det":
        ops = [{"DecodeImage": {"img_mode": "BGR", "channel_first": False}}, {"DetLabelEncode": None},
               {"DetResizeForTest": {"limit_side_len": 64, "limit_type": "max"}},
               {"NormalizeImage": {"scale": "1./255.", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                                   "order": "hwc"}}, {"ToCHWImage": None},
               {"KeepKeys": {"keep_keys": ["image", "shape", "polys", "ignore_tags"]}}]
    else:
        ops = [{"DecodeImage": {"img_mode": "BGR", "channel_first": False}}, {"CTCLabelEncode": None},
               {"RecResizeImg": {"image_shape": [3, 32, 100]}}, {"KeepKeys": {"keep_keys": ["image", "label", "length"]}}]
    g = {"max_text_length": 25, "character_dict_path": None, "use_space_char": False}
    simple = SimpleDataSet(str(tmp_path / "src"), [str(label)], transforms=ops, mode="eval", global_cfg=g)
    shards = ShardDataSet(str(tmp_path / "out"), transforms=ops, mode="eval", global_cfg=g)
    assert len(shards.index.names) > 1
    out = list(shards)
    assert len(out) == len(simple) == 9
    for i, got in enumerate(out):
        want = simple[i]
        for a, b in zip(got, want):
            assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def test_config_loader_counts_and_workers(rec_set: tuple[Path, Path]) -> None:
    """Through build_dataloader: len per rank known up front; 2 worker processes give the 0-worker batches."""
    _, shards = rec_set

    def batches(workers: int) -> tuple[int, list[list[str]]]:
        cfg = {"Global": {"seed": 3}, "Train": {"dataset": {"name": "ShardDataSet", "data_dir": str(shards),
                                                             "shuffle_buffer": 5, "transforms": tag_ops()},
                                                "loader": {"shuffle": True, "batch_size_per_card": 4,
                                                           "num_workers": workers}}}
        _ds, loader, sampler = build_dataloader(cfg, "Train")
        sampler.set_epoch(2)
        return len(loader), [list(b[0]) for b in loader]

    n0, b0 = batches(0)
    n2, b2 = batches(2)
    assert n0 == n2 == 6 and len(b0) == 6 and b2 == b0  # 23 samples: 5 batches of 4 + 1 of 3
    assert sorted(p for b in b0 for p in b) == sorted({p for b in b0 for p in b}) and len(sum(b0, [])) == 23


@pytest.mark.parametrize("total_counts", [[5, 7, 4, 8], [6, 6, 6, 6]])
def test_rank_worker_split_covers_every_sample_once(total_counts: list[int]) -> None:
    counts = np.array(total_counts)
    total, world, workers, batch = int(counts.sum()), 2, 2, 3
    seen = []
    for rank in range(world):
        ids = rank_plan(counts, seed=1, epoch=4, rank=rank, world=world, shuffle=True, buffer=4, pad=True)
        assert len(ids) == -(-total // world)
        parts = [worker_positions(len(ids), 0, batch, w, workers) for w in range(workers)]
        pos = np.sort(np.concatenate(parts))
        assert pos.tolist() == list(range(len(ids)))  # the workers of a rank share its stream, no overlap
        seen += ids.tolist()
    c = Counter(seen)
    assert set(c) == set(range(total))  # every sample of the set, every epoch
    assert sum(v - 1 for v in c.values()) == world * -(-total // world) - total  # only the wrap-around pads


def test_two_ranks_two_workers_through_the_dataset(rec_set: tuple[Path, Path],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The dataset's own iterator, with each (rank, worker) simulated: the union is the whole set."""
    _, shards = rec_set
    import ocr_core.data.shards as shards_mod

    seen: list[str] = []
    for rank in range(2):
        for worker in range(2):
            ds = ShardDataSet(str(shards), transforms=tag_ops(), shuffle=True, shuffle_buffer=6, seed=5)
            ds.configure(rank, 2, 3)
            ds.set_epoch(1)
            monkeypatch.setattr(shards_mod, "get_worker_info", lambda w=worker: SimpleNamespace(id=w, num_workers=2))
            got = [s[0] for s in ds]
            assert len(got) == 6  # 12 per rank in batches of 3: 2 batches per worker
            seen += got
    monkeypatch.undo()
    assert len(seen) == 24 and len(set(seen)) == 23  # 23 samples, one wrap-around pad


def test_shuffle_is_deterministic_by_seed_and_epoch(rec_set: tuple[Path, Path]) -> None:
    _, shards = rec_set

    def order(epoch: int, seed: int = 5) -> list[str]:
        ds = ShardDataSet(str(shards), transforms=tag_ops(), shuffle=True, shuffle_buffer=6, seed=seed)
        ds.set_epoch(epoch)
        return names(ds)

    base = order(1)
    assert base == order(1) and sorted(base) == sorted(order(2))
    assert order(2) != base and order(1, seed=6) != base
    plain = ShardDataSet(str(shards), transforms=tag_ops(), shuffle=False)
    assert names(plain) == [f"imgs/im{i}{'.png' if i % 3 else '.jpg'}" for i in range(23)]
    assert base != names(plain)
    # buffer 0: whole shards in a permuted order; buffer 6: samples of neighbouring shards interleave
    index = read_index(str(shards))
    ends = np.cumsum(index.counts)

    def shard_runs(order: list[str]) -> list[int]:
        ids = [int(np.searchsorted(ends, int(n.split("/im")[1].split(".")[0]), side="right")) for n in order]
        return [s for k, s in enumerate(ids) if k == 0 or ids[k - 1] != s]

    no_buffer = [ShardDataSet(str(shards), transforms=tag_ops(), shuffle=True, shuffle_buffer=0, seed=5)
                 for _ in range(3)]
    runs = []
    for epoch, ds in enumerate(no_buffer, start=1):
        ds.set_epoch(epoch)
        runs.append(shard_runs(names(ds)))
    assert all(sorted(r) == list(range(len(index.names))) for r in runs)  # each shard contiguous
    assert any(r != sorted(r) for r in runs) and len({tuple(r) for r in runs}) > 1
    assert len(shard_runs(base)) > len(index.names)


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_mid_epoch_gives_the_exact_rest(rec_set: tuple[Path, Path], workers: int) -> None:
    _, shards = rec_set
    cfg = {"Global": {"seed": 9}, "Train": {"dataset": {"name": "ShardDataSet", "data_dir": str(shards),
                                                        "shuffle_buffer": 4, "transforms": tag_ops(noise=True)},
                                            "loader": {"shuffle": True, "batch_size_per_card": 4,
                                                       "num_workers": workers}}}

    def fresh() -> tuple[ShardDataSet, torch.utils.data.DataLoader]:
        ds, loader, sampler = build_dataloader(cfg, "Train")
        sampler.set_epoch(3)
        return ds, loader  # type: ignore[return-value]

    def flat(batches: list) -> list[tuple[str, float]]:
        return [(p, float(n)) for b in batches for p, n in zip(b[0], b[2])]

    ds, loader = fresh()
    full = flat(list(loader))
    ds, loader = fresh()
    it = iter(loader)
    first = [next(it), next(it)]
    state = ds.state_dict()
    del it
    assert state["epoch"] == 3 and state["samples"] == 8
    ds2, loader2 = fresh()
    ds2.load_state_dict(state)
    rest = flat(list(loader2))
    assert flat(first) + rest == full and len(rest) == 15
    # the position after the resumed run's epoch is its end; the next epoch starts over
    assert ds2.state_dict()["samples"] == 23
    ds2.set_epoch(4)
    assert len(flat(list(loader2))) == 23


def test_corrupted_shard_is_an_error_naming_it(tmp_path: Path) -> None:
    label = make_set(tmp_path / "src", 8, "rec")
    build_shards([str(label)], str(tmp_path / "src"), str(tmp_path / "out"), "rec", "10KB", quiet=True)
    victim = tmp_path / "out" / "shard-000001.tar"
    data = bytearray(victim.read_bytes())
    data[700] ^= 0xFF
    victim.write_bytes(bytes(data))
    ds = ShardDataSet(str(tmp_path / "out"), transforms=tag_ops())
    with pytest.raises(IntegrityError, match=r"shard-000001\.tar: sha256 mismatch"):
        list(ds)


def test_cache_stays_within_its_bound(tmp_path: Path) -> None:
    """The download cache through the Store API (LocalStore here; the S3 test uses a real server)."""
    label = make_set(tmp_path / "src", 30, "rec")
    build_shards([str(label)], str(tmp_path / "src"), str(tmp_path / "out"), "rec", "12KB", quiet=True)
    index = read_index(str(tmp_path / "out"))
    bound = 2 * max(index.sizes) + 100
    cache = ShardCache(index, str(tmp_path / "cache"), bound, store=LocalStore())
    cache.local = False
    for i in [*range(len(index.names)), 0, 1]:
        f = cache.open(i)
        assert f.read(0)[1]["path"].startswith("imgs/")
        f.close()
        assert sum(p.stat().st_size for p in (tmp_path / "cache").glob("*.tar")) <= bound
    assert cache.downloads == len(index.names) + 2 and len(index.names) >= 4
    with pytest.raises(ConfigError, match="cache_size"):
        ShardCache(read_index(str(tmp_path / "out")).__class__(**{**index.__dict__, "prefix": "s3://b/p"}),
                   str(tmp_path / "c2"), max(index.sizes) - 1)
