"""LMDB build + read: same bytes and labels, leaf-directory discovery, atomicity, map growth."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import lmdb
import numpy as np
import pytest

from ocr_core.data import lmdb_build
from ocr_core.data.lmdb_build import build_lmdb
from ocr_core.data.lmdb_dataset import LMDBDataSet, find_lmdb_dirs
from ocr_core.errors import DataError


def _make_rec_set(root, n, noise=False, name="labels.txt", start=0):
    rng = np.random.default_rng(start)
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(start, start + n):
        h, w = 8, 16 + i
        img = rng.integers(0, 256, (h * 8, w * 8, 3), dtype=np.uint8) if noise else np.full((h, w, 3), i, np.uint8)
        ok, buf = cv2.imencode(".png", img)
        assert ok
        (root / f"w{i}.png").write_bytes(buf.tobytes())
        lines.append(f"w{i}.png\tword {i}, ok")
    label = root / name
    label.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return label


def test_build_then_read_same_bytes_and_labels(tmp_path):
    data = tmp_path / "data"
    label = _make_rec_set(data, 5)
    with open(label, "a", encoding="utf-8") as fh:
        fh.write("missing.png\tgone\n")
        fh.write("no tab here\n")
    out = tmp_path / "lmdb" / "train"
    stats = build_lmdb([str(label)], str(data), str(out))
    assert stats.samples == 5 and stats.skipped == 2
    assert sorted((i.line, i.code) for i in stats.issues) == [(6, "missing_image"), (7, "missing_delimiter")]
    # raw layout: 1-based keys, num-samples
    env = lmdb.open(str(out), readonly=True, lock=False)
    with env.begin() as txn:
        assert txn.get(b"num-samples") == b"5"
        assert txn.get(b"label-000000001") == b"word 0, ok"
        assert txn.get(b"image-000000000") is None
    env.close()
    ds = LMDBDataSet(data_dir=str(out), transforms=None, mode="eval")
    assert len(ds) == 5
    for i in range(5):
        img, text = ds.read_sample(i)
        assert img == (data / f"w{i}.png").read_bytes()
        assert text == f"word {i}, ok"
    sample = ds[2]
    assert sample["image"] == (data / "w2.png").read_bytes() and sample["img_path"].endswith(":3")
    ds2 = LMDBDataSet(data_dir=str(out), mode="eval",
                      transforms=[{"DecodeImage": {"img_mode": "BGR"}}, {"KeepKeys": {"keep_keys": ["image", "label"]}}])
    img, text = ds2[4]
    assert img.shape == (8, 20, 3) and int(img[0, 0, 0]) == 4 and text == "word 4, ok"


def test_two_lmdbs_found_as_leaf_directories(tmp_path):
    data = tmp_path / "data"
    la = _make_rec_set(data, 3, name="a.txt")
    lb = _make_rec_set(data, 4, name="b.txt", start=3)
    root = tmp_path / "root"
    build_lmdb(str(la), str(data), str(root / "part1" / "synth"))
    build_lmdb(str(lb), str(data), str(root / "part2"))
    assert [os.path.relpath(p, root) for p in find_lmdb_dirs(str(root))] == [os.path.join("part1", "synth"), "part2"]
    ds = LMDBDataSet(data_dir=str(root), mode="train", shuffle=True, seed=1)
    assert len(ds) == 7
    labels = sorted(ds.read_sample(i)[1] for i in range(7))
    assert labels == sorted(f"word {i}, ok" for i in range(7))


def test_interrupted_build_leaves_nothing(tmp_path, monkeypatch):
    data = tmp_path / "data"
    label = _make_rec_set(data, 6)
    calls = {"n": 0}
    real = lmdb_build.read_image_size

    def flaky(path):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(path)

    monkeypatch.setattr(lmdb_build, "read_image_size", flaky)
    monkeypatch.setattr(lmdb_build, "_CHUNK", 1)  # something has been written before the interrupt
    out_parent = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        build_lmdb(str(label), str(data), str(out_parent / "db"))
    assert os.listdir(out_parent) == []


def test_existing_output_needs_overwrite(tmp_path):
    data = tmp_path / "data"
    label = _make_rec_set(data, 2)
    out = tmp_path / "db"
    build_lmdb(str(label), str(data), str(out))
    with pytest.raises(DataError, match="already exists"):
        build_lmdb(str(label), str(data), str(out))
    stats = build_lmdb(str(label), str(data), str(out), overwrite=True)
    assert stats.samples == 2 and sorted(os.listdir(tmp_path)) == ["data", "db"]
    empty = tmp_path / "empty.txt"
    empty.write_text("x.png\tnothing\n", encoding="utf-8")
    with pytest.raises(DataError, match="no usable samples"):
        build_lmdb(str(empty), str(data), str(tmp_path / "db2"))
    assert sorted(os.listdir(tmp_path)) == ["data", "db", "empty.txt"]


def test_map_grows_from_tiny_size(tmp_path):
    data = tmp_path / "data"
    label = _make_rec_set(data, 10, noise=True)  # ~25-40 KB of incompressible PNG each
    total = sum((data / f"w{i}.png").stat().st_size for i in range(10))
    assert total > 4 * 65536
    stats = build_lmdb(str(label), str(data), str(tmp_path / "db"), map_size=1 << 16)
    assert stats.map_resizes >= 2 and stats.map_size > total
    ds = LMDBDataSet(data_dir=str(tmp_path / "db"), mode="eval")
    assert [ds.read_sample(i)[0] == (data / f"w{i}.png").read_bytes() for i in range(10)] == [True] * 10


def test_overwrite_never_deletes_the_inputs(tmp_path):
    """Issue #15 item 6: --out pointed at the dataset, or at any non-LMDB directory, is refused."""
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    ok, buf = cv2.imencode(".png", np.full((8, 16, 3), 200, np.uint8))
    (data / "images" / "w.png").write_bytes(buf.tobytes())
    label = data / "label.txt"
    label.write_text("images/w.png\tabc\n", encoding="utf-8")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(DataError, match="holds the inputs"):
        build_lmdb(str(label), str(data), str(data), overwrite=True)
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="not an LMDB directory"):
        build_lmdb(str(label), str(data), str(other), overwrite=True)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == sorted(before + [Path("notes"),
                                                                                        Path("notes/keep.txt")])
    out = tmp_path / "lmdb"
    assert build_lmdb(str(label), str(data), str(out)).samples == 1
    assert build_lmdb(str(label), str(data), str(out), overwrite=True).samples == 1  # an LMDB of ours: replaced
