"""SimpleDataSet: ratio_list sampling and per-epoch redraw, multi-image lines, bad lines, bounded
retries, ext_data; build_dataloader and collate."""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Optional

import cv2
import numpy as np
import pytest
import torch

from ocr_core.data import TRANSFORMS
from ocr_core.data.loader import EpochSampler, build_dataloader, collate_batch
from ocr_core.data.simple_dataset import SimpleDataSet
from ocr_core.errors import ConfigError, DataError

QUAD = [[1, 1], [10, 1], [10, 6], [1, 6]]


@pytest.fixture
def data(tmp_path):
    """Images i0..i29 (pixel value = i) and label files A (10 lines) and B (20 lines)."""
    d = tmp_path / "data"
    d.mkdir()
    for i in range(30):
        ok, buf = cv2.imencode(".png", np.full((8, 12, 3), i, np.uint8))
        (d / f"i{i}.png").write_bytes(buf.tobytes())
    (tmp_path / "A.txt").write_text("".join(f"i{i}.png\ta{i}\n" for i in range(10)), encoding="utf-8")
    (tmp_path / "B.txt").write_text("".join(f"i{i}.png\tb{i}\n" for i in range(10, 30)), encoding="utf-8")
    return tmp_path


def _labels(ds):
    return [e.label for e in ds.data_lines]


def test_ratio_list_counts_and_epoch_redraw(data):
    files = [str(data / "A.txt"), str(data / "B.txt")]
    ds = SimpleDataSet(data_dir=str(data / "data"), label_file_list=files, ratio_list=[0.5, 0.25], seed=7)
    assert len(ds) == 10 and ds.need_reset
    assert Counter(lab[0] for lab in _labels(ds)) == {"a": 5, "b": 5}
    first = set(_labels(ds))
    ds.set_epoch(1)
    second = set(_labels(ds))
    assert len(ds) == 10 and Counter(lab[0] for lab in second) == {"a": 5, "b": 5}
    assert first != second
    # deterministic in (seed, epoch)
    other = SimpleDataSet(data_dir=str(data / "data"), label_file_list=files, ratio_list=[0.5, 0.25], seed=7)
    other.set_epoch(1)
    assert _labels(other) == _labels(ds)
    ds.set_epoch(0)
    assert set(_labels(ds)) == first
    # eval: only files with ratio < 1 are subsampled
    ev = SimpleDataSet(data_dir=str(data / "data"), label_file_list=files, ratio_list=[1.0, 0.5], mode="eval")
    assert Counter(lab[0] for lab in _labels(ev)) == {"a": 10, "b": 10}
    assert _labels(ev)[:10] == [f"a{i}" for i in range(10)]
    with pytest.raises(ConfigError, match="ratio_list has 1 entries"):
        SimpleDataSet(data_dir=str(data / "data"), label_file_list=files, ratio_list=[0.5])


def test_sample_dict_and_multi_image_line(data):
    (data / "M.txt").write_text('["i1.png", "i2.png"]\tshared\n', encoding="utf-8")
    ds = SimpleDataSet(data_dir=str(data / "data"), label_file_list=str(data / "M.txt"), mode="eval",
                       transforms=[{"DecodeImage": {"img_mode": "BGR"}}])
    random.seed(0)
    seen = Counter()
    for _ in range(30):
        s = ds[0]
        assert s["label"] == "shared" and s["image"].shape == (8, 12, 3)
        seen[int(s["image"][0, 0, 0])] += 1
        assert s["img_path"].endswith(f"i{int(s['image'][0, 0, 0])}.png")
    assert set(seen) == {1, 2}


def test_bad_lines_skipped_and_counted(data, caplog):
    pytest.importorskip("ocr_core.data.transforms.det_label")
    good = json.dumps([{"transcription": "t", "points": QUAD}])
    lines = [f"i0.png\t{good}", "i1.png no tab", "i2.png\t{not json", f"../i3.png\t{good}",
             f"i4.png\t{json.dumps([{'transcription': 't', 'points': [[0, 0], [1, 1]]}])}", f"i5.png\t{good}"]
    (data / "D.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with caplog.at_level("WARNING"):
        ds = SimpleDataSet(data_dir=str(data / "data"), label_file_list=str(data / "D.txt"), mode="eval",
                           transforms=[{"DecodeImage": {"img_mode": "BGR"}}, {"DetLabelEncode": None}])
    assert ds.label_kind == "det" and len(ds) == 2 and ds.stats["bad_lines"] == 4
    for n in (2, 3, 4, 5):
        assert f"D.txt:{n}:" in caplog.text
    assert ds[1]["polys"].shape == (1, 4, 2)


class _RejectLabels:
    """Rejects samples whose label is in ``bad``; raises DataError for ``boom``."""

    def __init__(self, bad: Optional[list[str]] = None) -> None:
        self.bad = set(bad or [])

    def __call__(self, data):
        if data["label"] == "boom":
            raise DataError("exploded")
        return None if data["label"] in self.bad else data


def test_retries_are_bounded_and_clear(data, monkeypatch):
    monkeypatch.setitem(TRANSFORMS._table, "_RejectLabels", _RejectLabels)
    (data / "R.txt").write_text("i0.png\tbad\ni1.png\tboom\ni2.png\tfine\n", encoding="utf-8")
    ev = SimpleDataSet(data_dir=str(data / "data"), label_file_list=str(data / "R.txt"), mode="eval",
                       transforms=[{"_RejectLabels": {"bad": ["bad"]}}])
    assert ev[0] is None and ev[1] is None  # eval: no stand-in (the next sample would count twice)
    assert ev[2]["label"] == "fine"
    assert ev.stats["rejected"] == 2
    every = [f"a{i}" for i in range(10)]
    tr = SimpleDataSet(data_dir=str(data / "data"), label_file_list=str(data / "A.txt"), mode="train",
                       transforms=[{"_RejectLabels": {"bad": every}}])
    with pytest.raises(DataError) as err:
        tr[3]
    msg = str(err.value)
    assert "21 samples in a row were rejected" in msg and "A.txt:" in msg and "rejected by _RejectLabels" in msg
    assert tr.stats["rejected"] == 21 and tr.stats["retries_exhausted"] == 1
    # a missing image is a rejection, not a crash
    (data / "X.txt").write_text("gone.png\tx\ni0.png\ty\n", encoding="utf-8")
    ds = SimpleDataSet(data_dir=str(data / "data"), label_file_list=str(data / "X.txt"), mode="eval")
    assert ds[0] is None and ds[1]["label"] == "y"
    tr = SimpleDataSet(data_dir=str(data / "data"), label_file_list=str(data / "X.txt"), mode="train")
    assert tr[0]["label"] == "y"  # training resamples


def test_evaluation_excludes_and_counts_unreadable_samples(data):
    """Issue #15 item 7: 2 eval samples, one unreadable -> scored on 1 (acc 0.5 before: 1 of 1, not
    the readable one twice), and ``skipped`` says 1."""
    from ocr_core.engine.loop import evaluate

    (data / "E.txt").write_text("gone.png\tx\ni3.png\ty\ni4.png\tz\n", encoding="utf-8")
    cfg = {"Eval": {"dataset": {"name": "SimpleDataSet", "data_dir": str(data / "data"),
                                "label_file_list": [str(data / "E.txt")],
                                "transforms": [{"DecodeImage": {"img_mode": "BGR"}},
                                               {"KeepKeys": {"keep_keys": ["image", "label"]}}]},
                    "loader": {"batch_size_per_card": 2, "shuffle": False, "num_workers": 0}}}
    _, loader, _ = build_dataloader(cfg, "Eval")

    class Model(torch.nn.Module):
        def forward(self, x):
            return {"maps": x.float().mean(dim=(1, 2, 3))}

    class Seen:
        main_indicator = "n"

        def reset(self):
            self.labels = []

        def __call__(self, post, batch):
            self.labels += list(batch[1])

        def counters(self):
            return {"n": float(len(self.labels))}

        def set_counters(self, c):
            self.total = c["n"]

        def get_metric(self):
            return {"n": self.total}

    metric = Seen()
    out = evaluate(Model(), loader, lambda preds, shapes: preds, metric, device=torch.device("cpu"),
                   model_type="rec", show_progress=False)
    assert metric.labels == ["y", "z"]  # each readable sample once
    assert out["n"] == 2 and out["skipped"] == 1


class _Marker:
    def __init__(self) -> None:
        pass

    def __call__(self, data):
        data["marked"] = True
        return data


class _WantsExt:
    def __init__(self, ext_data_num: int = 2) -> None:
        self.ext_data_num = ext_data_num
        self.seen: list = []

    def __call__(self, data):
        self.seen.append(data.pop("ext_data"))
        return data


def test_ext_data_goes_through_the_first_ops(data, monkeypatch):
    monkeypatch.setitem(TRANSFORMS._table, "_Marker", _Marker)
    monkeypatch.setitem(TRANSFORMS._table, "_WantsExt", _WantsExt)
    ds = SimpleDataSet(data_dir=str(data / "data"), label_file_list=str(data / "A.txt"), ext_op_transform_idx=1,
                       transforms=[{"DecodeImage": {"img_mode": "BGR"}}, {"_Marker": None}, {"_WantsExt": None}])
    out = ds[0]
    assert out["marked"] and "ext_data" not in out
    (ext,) = ds.ops[2].seen
    assert len(ext) == 2
    for e in ext:
        assert isinstance(e["image"], np.ndarray) and "marked" not in e and e["label"].startswith("a")


def test_build_dataloader_and_collate(data):
    cfg = {
        "Global": {"seed": 5},
        "Train": {
            "dataset": {"name": "SimpleDataSet", "data_dir": str(data / "data"),
                        "label_file_list": [str(data / "A.txt")], "ratio_list": [0.5],
                        "transforms": [{"DecodeImage": {"img_mode": "BGR"}}, {"ToCHWImage": None},
                                       {"KeepKeys": {"keep_keys": ["image", "label"]}}]},
            "loader": {"batch_size_per_card": 2, "shuffle": True, "drop_last": True, "num_workers": 0},
        },
    }
    ds, loader, sampler = build_dataloader(cfg, "Train")
    assert isinstance(sampler, EpochSampler) and len(ds) == 5 and ds.seed == 5
    batches = list(loader)
    assert len(batches) == 2
    img, labels = batches[0]
    assert isinstance(img, torch.Tensor) and img.shape == (2, 3, 8, 12) and img.dtype == torch.uint8
    assert isinstance(labels, list) and len(labels) == 2
    before = {e.label for e in ds.data_lines}
    sampler.set_epoch(1)  # reaches the dataset: a new subset
    assert {e.label for e in ds.data_lines} != before
    cfg["Train"]["dataset"]["bogus"] = 1
    with pytest.raises(ConfigError, match=r"Train.dataset.bogus"):
        build_dataloader(cfg, "Train")


def test_collate_keeps_ragged_fields_as_lists():
    batch = [[np.zeros((2, 3), np.float32), np.zeros((1, 4, 2)), 1, "a"],
             [np.ones((2, 3), np.float32), np.zeros((3, 4, 2)), 2, "b"]]
    img, polys, num, text = collate_batch(batch)
    assert img.shape == (2, 2, 3) and img[1].sum() == 6
    assert isinstance(polys, list) and [p.shape[0] for p in polys] == [1, 3]
    assert num.tolist() == [1, 2] and text == ["a", "b"]


def test_no_usable_lines_is_a_data_error(data):
    (data / "E.txt").write_text("no tab\n", encoding="utf-8")
    with pytest.raises(DataError, match="no usable lines"):
        SimpleDataSet(data_dir=str(data / "data"), label_file_list=str(data / "E.txt"))


@pytest.mark.timeout(120)  # the regression this guards against is a hang
def test_worker_loader_keeps_opencv_serial_in_the_main_process(data):
    """With workers, the parent switches OpenCV to serial before forking (workers inherit it); the
    parent's pool was used first, which is what hung when a child reconfigured it itself."""
    import cv2

    cfg = {"Global": {"seed": 1}, "Train": {
        "dataset": {"name": "SimpleDataSet", "data_dir": str(data / "data"), "label_file_list": [str(data / "A.txt")],
                    "transforms": [{"DecodeImage": {"img_mode": "BGR"}}, {"ToCHWImage": None},
                                   {"KeepKeys": {"keep_keys": ["image"]}}]},
        "loader": {"batch_size_per_card": 2, "num_workers": 0}}}
    before = cv2.getNumThreads()
    try:
        cv2.setNumThreads(2)
        big = np.zeros((1200, 1600, 3), np.uint8)
        for _ in range(3):  # run parallel OpenCV code in the parent, so its thread pool exists
            cv2.GaussianBlur(cv2.resize(big, (1400, 1000)), (5, 5), 0)
        build_dataloader(cfg, "Train")
        assert cv2.getNumThreads() == 2  # no workers: left alone
        cfg["Train"]["loader"]["num_workers"] = 1
        _, loader, _ = build_dataloader(cfg, "Train")
        assert cv2.getNumThreads() == 1  # setNumThreads(0): serial, reported as one thread
        assert len(list(loader)) >= 1  # and the worker loads
    finally:
        cv2.setNumThreads(before)
