"""RecMetric on hand-worked pairs (PaddleOCR rec_metric semantics)."""

from __future__ import annotations

import pytest

from ocr_core.metrics import METRICS
from ocr_core.metrics.rec_metric import RecMetric
from ocr_core.registry import check_kwargs

EPS = 1e-5


def _pairs(preds: list[str], gts: list[str]):
    return [(p, 0.9) for p in preds], [(g, 1.0) for g in gts]


PREDS = ["hello world", "Abc", "x", "a-b!"]
GTS = ["helloworld", "abc", "xyz", "AB"]


def test_ignore_space_true_default() -> None:
    m = RecMetric()
    batch = m(_pairs(PREDS, GTS))
    # "helloworld"=="helloworld" (0); "Abc" vs "abc": 1 substitution / 3; "x" vs "xyz": 2 / 3;
    # "a-b!" vs "AB": 4 edits (a->A, delete '-', b->B, delete '!') / 4 = 1
    dist = 0 + 1 / 3 + 2 / 3 + 1
    assert batch["acc"] == pytest.approx(1 / (4 + EPS))
    assert batch["norm_edit_dis"] == pytest.approx(1 - dist / (4 + EPS))
    assert m.get_metric() == pytest.approx({"acc": 1 / (4 + EPS), "norm_edit_dis": 1 - dist / (4 + EPS)})


def test_ignore_space_false_counts_the_space() -> None:
    m = RecMetric(ignore_space=False)
    m(_pairs(PREDS, GTS))
    # "hello world" (11) vs "helloworld": one deletion / 11
    dist = 1 / 11 + 1 / 3 + 2 / 3 + 1
    assert m.get_metric() == pytest.approx({"acc": 0.0, "norm_edit_dis": 1 - dist / (4 + EPS)})


def test_is_filter_drops_punctuation_and_case() -> None:
    m = RecMetric(is_filter=True)
    m(_pairs(PREDS, GTS))
    # only "x" vs "xyz" differs
    assert m.get_metric() == pytest.approx({"acc": 3 / (4 + EPS), "norm_edit_dis": 1 - (2 / 3) / (4 + EPS)})


def test_accumulates_across_batches_and_resets() -> None:
    m = RecMetric(ignore_space=False)
    m(_pairs(["abcd", ""], ["abcd", "ab"]))  # 0 and 2/2
    m(_pairs(["kitten"], ["sitting"]))  # classic: 3 edits / 7
    assert m.samples() == [("abcd", "abcd", True), ("", "ab", False), ("kitten", "sitting", False)]
    got = m.get_metric()
    assert got["acc"] == pytest.approx(1 / (3 + EPS))
    assert got["norm_edit_dis"] == pytest.approx(1 - (1 + 3 / 7) / (3 + EPS))
    assert m.samples() == []
    assert m.get_metric() == {"acc": 0.0, "norm_edit_dis": 1.0}


def test_counters_round_trip_equals_single_pass() -> None:
    a, b, whole, merged = RecMetric(), RecMetric(), RecMetric(), RecMetric()
    part1, part2 = _pairs(PREDS[:2], GTS[:2]), _pairs(PREDS[2:], GTS[2:])
    a(part1)
    b(part2)
    whole(part1)
    whole(part2)
    ca, cb = a.counters(), b.counters()
    assert set(ca) == {"correct", "all", "norm_edit_dis_sum"}
    assert ca == pytest.approx({"correct": 1.0, "all": 2.0, "norm_edit_dis_sum": 1 / 3})
    merged.set_counters({k: ca[k] + cb[k] for k in ca})
    assert merged.counters() == pytest.approx(whole.counters())
    assert merged.get_metric() == pytest.approx(whole.get_metric())


def test_registered_with_config_keys() -> None:
    assert METRICS._table["RecMetric"] is RecMetric
    check_kwargs(RecMetric, {"main_indicator": "acc", "ignore_space": False}, "Metric")
    assert RecMetric(main_indicator="norm_edit_dis").main_indicator == "norm_edit_dis"
