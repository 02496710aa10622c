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


_PROBE = """<script>
window.addEventListener("load", () => {
  const imgs = [...document.querySelectorAll("img")].map(i => {
    const r = i.getBoundingClientRect();
    return {pair: !!i.closest(".pair"), complete: i.complete, w: i.naturalWidth, h: i.naturalHeight,
            x: r.left + scrollX, y: r.top + scrollY, cw: r.width, ch: r.height};
  });
  const pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(imgs);
  document.body.appendChild(pre);
});
</script>
"""


def test_report_renders_in_a_headless_browser(demo: dict[str, Any]) -> None:
    """``make demo``'s report.html in Debian's chromium (the helper of test_ui_artifacts): the DOM holds the
    gate decision and both det hmeans, the before/after pictures decode (naturalWidth > 0, read by a probe
    script added to a copy of the page) and are drawn (pixel variance inside their boxes on the screenshot)."""
    import re

    from tests.pipeline.test_ui_artifacts import chromium, need_chromium

    need_chromium()
    import cv2

    report = demo["report"]
    width, height = 1000, 6000
    probe = report.with_name("report_probe.html")  # beside the report, so its relative links resolve the same
    probe.write_text(report.read_text(encoding="utf-8").replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    shot = report.with_name("report_shot.png")
    try:
        dom = chromium([f"--window-size={width},{height}", "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()])
        assert dom.returncode == 0, dom.stderr[-2000:]
        done = chromium([f"--screenshot={shot}", f"--window-size={width},{height}", report.as_uri()])
        assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
        img = cv2.imread(str(shot), cv2.IMREAD_GRAYSCALE)
    finally:
        probe.unlink(missing_ok=True)
        shot.unlink(missing_ok=True)

    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom.stdout.split('<pre id="probe">')[0]))
    assert "PUBLISHED because of the gain" in text and "publish" in text  # the gate sentence and its table row
    off, fine = f"{demo['det_off_the_shelf']:.4f}", f"{demo['det_finetuned']:.4f}"
    assert f"from det hmean {off} to {fine}" in text, (off, fine)
    assert f"det hmean, off-the-shelf PP-OCRv3 {off}" in text and f"det hmean, fine-tuned (det_recipe=finetune) {fine}" in text

    found = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert found, "the probe script did not run"
    imgs = json.loads(found.group(1).replace("&quot;", '"'))
    pairs = [i for i in imgs if i["pair"]]
    assert len(pairs) == 6, imgs  # 3 eval images, off-the-shelf | fine-tuned
    assert all(i["complete"] and i["w"] > 0 and i["h"] > 0 and i["cw"] > 50 and i["ch"] > 50 for i in imgs), imgs

    assert img.shape == (height, width)
    assert float(img.std()) > 10, img.std()  # not a blank page
    ink = float((img < 128).mean())
    assert 0.001 < ink < 0.9, ink
    for i in pairs:  # each picture's box on the screenshot holds a picture, not the page's white
        y0, x0 = int(i["y"]) + 2, int(i["x"]) + 2
        box = img[y0:int(i["y"] + i["ch"]) - 2, x0:int(i["x"] + i["cw"]) - 2]
        assert box.size and float(box.std()) > 5 and float((box < 250).mean()) > 0.2, (i, box.std())
    demo["browser"] = {"std": float(img.std()), "ink": ink, "pairs": [(i["w"], i["h"]) for i in pairs]}
    print("chromium:", demo["browser"], "off-the-shelf", off, "fine-tuned", fine)
