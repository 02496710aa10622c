"""#18 item 5: results land where PaddleOCR's guides put them.

``ocrflow infer`` writes PaddleOCR's ``predicts_db.txt`` (``image\\t[{"points": ...}]``) at
``Global.save_res_path`` with our JSON beside it; ``ocrflow eval -o Global.save_res_path=F`` writes
its metrics to F (a config file's own save_res_path, infer's result file, is left alone).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import torch

from ocr_core.cli import main as cli_main
from ocr_core.config import load_config
from ocr_core.engine.infer import paddle_line
from ocr_core.modeling import build_model
from ocr_core.weights.checkpoint import save_checkpoint

ROOT = Path(__file__).resolve().parents[2]
STUDENT = ROOT / "configs/det/ch_PP-OCRv3/ch_PP-OCRv3_det_student.yml"
LIMIT = "Eval.dataset.transforms.DetResizeForTest={limit_side_len: 128, limit_type: max}"


def _everything_is_text(path: Path) -> Path:
    """A student whose shrink map is sigmoid(+20) ~ 1 everywhere: one box, the whole image."""
    cfg = load_config(str(STUDENT))
    torch.manual_seed(0)
    model = build_model(cfg["Architecture"])
    state = model.state_dict()
    state["head.binarize.conv3.weight"].zero_()
    state["head.binarize.conv3.bias"].fill_(20.0)
    return save_checkpoint(path, {"model": state, "architecture": cfg["Architecture"], "model_type": "det",
                                  "config": cfg})


def _images(root: Path) -> Path:
    root.mkdir(parents=True)
    cv2.imwrite(str(root / "a.png"), np.full((60, 100, 3), 200, np.uint8))
    cv2.imwrite(str(root / "b.png"), np.full((90, 70, 3), 50, np.uint8))
    return root


def test_infer_writes_predicts_db_txt_at_save_res_path(tmp_path: Path) -> None:
    ck = _everything_is_text(tmp_path / "all.pt")
    images = _images(tmp_path / "imgs")
    res = tmp_path / "out" / "det_db" / "predicts_db.txt"
    rc = cli_main(["infer", "-c", str(STUDENT), "-o", f"Global.pretrained_model={ck}", f"Global.save_res_path={res}",
                   f"Global.save_model_dir={tmp_path / 'm'}", "Global.use_gpu=false", LIMIT,
                   "--image", str(images)])
    assert rc == 0
    lines = res.read_text(encoding="utf-8").splitlines()
    assert [ln.split("\t")[0] for ln in lines] == [str(images / "a.png"), str(images / "b.png")]
    boxes = [json.loads(ln.split("\t")[1]) for ln in lines]
    # the whole image (DB clips a box to [0, w] x [0, h] of the source image)
    assert boxes[0] == [{"points": [[0, 0], [100, 0], [100, 60], [0, 60]]}]
    assert boxes[1] == [{"points": [[0, 0], [70, 0], [70, 90], [0, 90]]}]
    ours = json.loads((res.parent / "predicts.json").read_text())
    assert [r["boxes"] for r in ours] == [[b["points"] for b in line] for line in boxes]
    assert sorted(p.name for p in res.parent.glob("det_res_*.png")) == ["det_res_a.png", "det_res_b.png"]
    # --out wins and gets the same file under PaddleOCR's default name
    assert cli_main(["infer", "-c", str(STUDENT), "-o", f"Global.pretrained_model={ck}", "Global.use_gpu=false",
                     f"Global.save_model_dir={tmp_path / 'm'}", LIMIT, "--image", str(images / "a.png"),
                     "--out", str(tmp_path / "o2")]) == 0
    assert (tmp_path / "o2" / "predicts_db.txt").read_text(encoding="utf-8") == lines[0] + "\n"


def test_paddle_line_formats() -> None:
    quad = np.array([[1, 2], [3, 2], [3, 4], [1, 4]])
    det = [{"points": [quad], "scores": [0.9]}]
    assert paddle_line(Path("x.png"), "det", det) == 'x.png\t[{"points": [[1, 2], [3, 2], [3, 4], [1, 4]]}]\n'
    assert paddle_line(Path("x.png"), "det", {"Student": det}) == (
        'x.png\t{"Student": [{"points": [[1, 2], [3, 2], [3, 4], [1, 4]]}]}\n')
    assert paddle_line(Path("w.png"), "rec", [("ab", 0.5)]) == "w.png\tab\t0.5\n"
    assert paddle_line(Path("w.png"), "rec", {"Student": [("ab", 0.25)]}) == (
        'w.png\t{"Student": {"label": "ab", "score": 0.25}}\n')


def test_eval_writes_save_res_path_given_with_o(tmp_path: Path, monkeypatch) -> None:
    ck = _everything_is_text(tmp_path / "all.pt")
    data = tmp_path / "data"
    _images(data / "images")
    label = [{"transcription": "x", "points": [[0, 0], [100, 0], [100, 60], [0, 60]]}]
    (data / "label.txt").write_text(f"images/a.png\t{json.dumps(label)}\n", encoding="utf-8")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    base = ["eval", "-c", str(STUDENT), "-o", f"Global.checkpoints={ck}", "Global.use_gpu=false", LIMIT,
            f"Global.save_model_dir={tmp_path / 'm'}", f"Eval.dataset.data_dir={data}",
            f"Eval.dataset.label_file_list=[{data / 'label.txt'}]", "Eval.loader.num_workers=0"]
    assert cli_main([*base, f"Global.save_res_path={tmp_path / 'res' / 'eval.json'}"]) == 0
    metrics = json.loads((tmp_path / "res" / "eval.json").read_text())
    assert metrics["hmean"] == 1.0 and metrics["precision"] == 1.0  # the whole-image box is the label
    assert cli_main(base) == 0
    assert list(work.iterdir()) == []  # the config's ./checkpoints/det_db/predicts_db.txt is not written
