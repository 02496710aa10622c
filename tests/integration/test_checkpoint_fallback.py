"""#18 item 1, chosen as a difference on purpose: the guides say a ``Global.checkpoints`` that does
not load falls back to ``Global.pretrained_model``; PaddleOCR's own ``load_model`` asserts instead,
and so do we: a resume that cannot load is an error naming both keys, never a silent restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocr_core.config import load_config
from ocr_core.engine.run import train
from ocr_core.modeling import build_model
from ocr_core.weights.checkpoint import CheckpointError, save_checkpoint
from tests.integration.det_fixtures import det_config, make_det_split

ROOT = Path(__file__).resolve().parents[2]


def test_bad_checkpoints_never_fall_back_to_pretrained(tmp_path: Path) -> None:
    make_det_split(tmp_path / "d", 2, seed=3, size=(128, 128))
    arch = load_config(str(ROOT / "configs/det/det_mv3_db.yml"))["Architecture"]
    pre = save_checkpoint(tmp_path / "pre.pt", {"model": build_model(arch).state_dict()})
    out = tmp_path / "out"
    missing = tmp_path / "no_such" / "latest"
    cfg = det_config(tmp_path / "d", tmp_path / "d", out, f"Global.checkpoints={missing}",
                     f"Global.pretrained_model={pre}", "Global.num_threads=1", crop=96, batch=2)
    with pytest.raises(CheckpointError) as err:
        train(cfg)
    msg = str(err.value)
    assert f"checkpoint not found: {missing}" in msg
    assert f"Global.pretrained_model ({pre}) is not used in its place" in msg
    assert "drop Global.checkpoints" in msg
    assert not list(out.glob("*.pt"))  # nothing trained
    # an unreadable (not just missing) checkpoints file: the same refusal
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    cfg = det_config(tmp_path / "d", tmp_path / "d", out, f"Global.checkpoints={tmp_path / 'junk.pt'}",
                     f"Global.pretrained_model={pre}", "Global.num_threads=1", crop=96, batch=2)
    with pytest.raises(CheckpointError, match="(?s)cannot read checkpoint .*is not used in its place"):
        train(cfg)
    # without pretrained_model the error is the plain one
    cfg = det_config(tmp_path / "d", tmp_path / "d", out, f"Global.checkpoints={missing}", crop=96, batch=2)
    with pytest.raises(CheckpointError) as err:
        train(cfg)
    assert "pretrained_model" not in str(err.value)
