"""``make demo``'s flow at CI size (``pipelines.demo.CI``): the default ``finetune`` recipe from the
imported PP-OCRv3 weights on synthetic receipts, the gate publishing because of the gain over the
start model, a second pass (retrain DAG, same data) that skips, and the self-contained report.

One kfp.local run of both DAGs (module fixture) against an embedded S3 server; the assertions
read its results, its artifacts and the HTML report.
"""

from __future__ import annotations

import json
import os
from html.parser import HTMLParser
from typing import Any

import pytest


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from ocr_core.weights.ppocr_weights import WeightsImportError, import_ppocrv3
    from pipelines.demo import CI, run_demo, write_html

    out = tmp_path_factory.mktemp("demo")
    try:
        for kind in ("det", "rec"):
            import_ppocrv3(kind, out / "weights" / kind / "model.pt")
    except WeightsImportError as exc:
        pytest.skip(f"official PP-OCRv3 weights unavailable (rapidocr wheel offline?): {exc}")
    env = dict(os.environ)
    os.environ["OCRFLOW_WORK_DIR"] = str(out / "work")
    try:
        res = run_demo(out, CI)
    finally:  # run_demo exports the embedded server's endpoint and keys into this process
        os.environ.clear()
        os.environ.update(env)
    res["out"], res["report"] = out, write_html(out / "report.html", res)
    return res


def test_finetuned_det_beats_off_the_shelf(demo: dict[str, Any]) -> None:
    assert demo["status"] == {"train": "SUCCESS", "retrain": "SUCCESS"}
    assert demo["det_finetuned"] >= demo["det_off_the_shelf"] + 0.1, demo
    train = {name: status for name, status, _ in demo["steps"]["train"]}
    assert train["fine-tune det"] == "SUCCESS" and train["det recipe cml (teacher, student, extracts)"] == "SKIPPED"
    assert "train det teacher (DML)" not in train


def test_gate_published_because_of_the_gain(demo: dict[str, Any]) -> None:
    from pipelines.demo import gate_sentence

    g = demo["gate"]
    assert g["champion"] == "start" and g["publish"] == 1.0  # no production model: the start pair is the champion
    assert g["candidate_hmean"] == pytest.approx(demo["e2e_candidate"])
    assert g["champion_hmean"] == pytest.approx(demo["e2e_start"])
    assert g["margin"] == pytest.approx(g["candidate_hmean"] - g["champion_hmean"]) and g["margin"] > 0
    assert demo["published_version"] and demo["production_version"] == demo["published_version"]
    assert gate_sentence(demo).startswith("PUBLISHED because of the gain")


def test_second_pass_on_the_same_data_skips(demo: dict[str, Any]) -> None:
    assert demo["retrain_is_new"] is False and demo["pointer_unchanged"]
    assert [(n, s) for n, s, _ in demo["steps"]["retrain"]] == [
        ("check new data", "SUCCESS"), ("ocr-train-pipeline + record trained data", "SKIPPED")]


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.pairs: list[list[str]] = []
        self.urls: list[str] = []
        self.text: list[str] = []
        self._in_pair = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "div" and a.get("class") == "pair":
            self.pairs.append([])
            self._in_pair = 1
        elif tag == "div" and self._in_pair:
            self._in_pair += 1
        self.urls += [v or "" for k, v in attrs if k in ("src", "href")]
        if tag == "img" and self._in_pair:
            self.pairs[-1].append(a.get("src") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "div" and self._in_pair:
            self._in_pair -= 1

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_report_is_self_contained_with_pairs_and_gate_numbers(demo: dict[str, Any]) -> None:
    page = _Page()
    page.feed(demo["report"].read_text(encoding="utf-8"))
    assert len(page.pairs) == 3 and all(len(p) == 2 for p in page.pairs)
    assert all(src.startswith("data:image/png;base64,") and len(src) > 1000 for p in page.pairs for src in p)
    assert not [u for u in page.urls if "://" in u or u.startswith("//")], "external URL in the report"
    for u in page.urls:  # every link is a data URI or a file the demo wrote beside the report
        assert u.startswith("data:") or (demo["out"] / u).is_file(), u
    # the gate numbers in the report are the gate step's own Metrics artifact
    gate_out = next(demo["out"].glob("kfp_root/ocr-train-pipeline-*/gate/executor_output.json"))
    meta = json.loads(gate_out.read_text())["artifacts"]["decision"]["artifacts"][0]["metadata"]
    text = " ".join(page.text)
    assert f"{meta['candidate_hmean']:.4f}" in text and f"{meta['champion_hmean']:.4f}" in text
    assert f"{meta['margin']:+.4f}" in text and meta["reason"] in text and "champion (start)" in text
    assert "PUBLISHED because of the gain" in text
    assert f"{demo['det_off_the_shelf']:.4f}" in text and f"{demo['det_finetuned']:.4f}" in text
