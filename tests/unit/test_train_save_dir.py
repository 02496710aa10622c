"""Issue #15 item 12: ``train`` into a save_model_dir holding checkpoints refuses unless resuming."""

from __future__ import annotations

import pytest

from ocr_core.cli import main
from ocr_core.commands.train import check_save_dir
from ocr_core.errors import ConfigError

REC_CONFIG = "configs/rec/PP-OCRv3/ch_PP-OCRv3_rec.yml"


def test_cli_refuses_a_dir_with_checkpoints(tmp_path, capsys, repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    out = tmp_path / "run"
    out.mkdir()
    (out / "latest.pt").write_bytes(b"previous run")
    (out / "best_accuracy.pt").write_bytes(b"previous best")
    assert main(["train", "-c", REC_CONFIG, "-o", f"Global.save_model_dir={out}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
    assert f"Global.save_model_dir: {out} already holds checkpoints (best_accuracy.pt, latest.pt)" in err[0]
    assert (out / "latest.pt").read_bytes() == b"previous run"  # nothing touched
    assert sorted(p.name for p in out.iterdir()) == ["best_accuracy.pt", "latest.pt"]


def _cfg(save_dir, **glob):
    return {"Global": {"save_model_dir": str(save_dir), **glob}}


def test_resume_overwrite_and_fresh_dirs(tmp_path, monkeypatch):
    out = tmp_path / "run"
    check_save_dir(_cfg(out))  # missing dir: fine
    out.mkdir()
    (out / "train.log").write_text("a run that stopped before its first checkpoint\n", encoding="utf-8")
    check_save_dir(_cfg(out))  # no checkpoint: fine (a log alone blocks nothing)
    (out / "latest.pt").write_bytes(b"x")
    with pytest.raises(ConfigError, match="already holds checkpoints"):
        check_save_dir(_cfg(out))
    check_save_dir(_cfg(out), overwrite=True)
    explicit = _cfg(out, checkpoints=str(out / "iter_epoch_3"))
    check_save_dir(explicit)  # Global.checkpoints: resuming on purpose
    assert explicit["Global"]["checkpoints"] == str(out / "iter_epoch_3")
    resumed = _cfg(out)
    check_save_dir(resumed, resume=True)
    assert resumed["Global"]["checkpoints"] == str(out / "latest.pt")
    restarted = _cfg(out)
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")  # torchrun restarted this worker: same argv
    check_save_dir(restarted)
    monkeypatch.delenv("TORCHELASTIC_RESTART_COUNT")
    assert restarted["Global"]["checkpoints"] == str(out / "latest.pt")
    fresh = _cfg(tmp_path / "new")
    check_save_dir(fresh, resume=True)  # --resume with nothing to resume starts fresh
    assert "checkpoints" not in fresh["Global"]


def test_resume_and_overwrite_are_exclusive(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "-c", REC_CONFIG, "--resume", "--overwrite"])
    assert exc.value.code == 2
