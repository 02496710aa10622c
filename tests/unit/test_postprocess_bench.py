"""bench/postprocess.py runs: ours only (no peer, says so), and against a stand-in PaddleOCR tree
whose files have PaddleOCR's imports (relative ``locality_aware_nms``, ``paddle``,
``ppocr.utils.utility.check_install``) and delegate to ours, so the loader, the lanms switch, the
identity checks and the tables are exercised without PaddleOCR."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

FAKE_EAST = '''
import paddle
from ppocr.utils.utility import check_install
from .locality_aware_nms import nms_locality
from ocr_core.postprocess.east_postprocess import EASTPostProcess as _Ours


class EASTPostProcess(_Ours):
    def __init__(self, score_thresh=0.8, cover_thresh=0.1, nms_thresh=0.2, **kwargs):
        super().__init__(score_thresh, cover_thresh, nms_thresh)

    def __call__(self, outs_dict, shape_list):
        assert nms_locality == "python fallback" and isinstance(paddle.Tensor, type)
        try:
            check_install("lanms", "lanms-nova")
            raise AssertionError("the bench has no lanms here: check_install must fail")
        except ImportError:
            print("You should install lanms")
        return super().__call__(outs_dict, shape_list)
'''


def _run(*args: str) -> str:
    proc = subprocess.run([sys.executable, str(ROOT / "bench/postprocess.py"), "--repeats", "1", "--batch", "1",
                           "--sizes", "640x640", *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_ours_only() -> None:
    out = _run()
    assert "No --paddleocr-src: printing OCRFlow's times only" in out
    rows = [line for line in out.splitlines() if line.startswith("| 640x640 |")]
    assert len(rows) == 5 + 2  # DB variants, EAST geometries
    assert all(len(r.split("|")) == len(rows[0].split("|")) for r in rows[:5])
    assert "PaddleOCR" not in out


def test_against_a_stand_in_peer(tmp_path: Path) -> None:
    post = tmp_path / "ppocr" / "postprocess"
    post.mkdir(parents=True)
    (post / "db_postprocess.py").write_text("from ocr_core.postprocess.db_postprocess import DBPostProcess\n")
    (post / "locality_aware_nms.py").write_text('nms_locality = "python fallback"\n')
    (post / "east_postprocess.py").write_text(FAKE_EAST)
    out = _run("--which", "east", "--paddleocr-src", str(tmp_path))
    assert "lanms not importable" in out
    assert "EAST vs PaddleOCR, shapely fallback: points identical in every row" in out
    assert "You should install lanms" not in out  # the peer's prints stay off the table
    assert len([line for line in out.splitlines() if line.startswith("| 640x640 |")]) == 2
    assert "DB:" not in out
