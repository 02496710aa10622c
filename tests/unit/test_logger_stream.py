"""The ``ocrflow`` console handler follows ``sys.stdout``: in-process ``main()`` calls under a capturing
test runner (or a notebook) replace and close the stream between calls; a handler bound to the old one
printed '--- Logging error --- ValueError: I/O operation on closed file' (a CI failure of stop 24)."""

from __future__ import annotations

import io
import logging
import sys

from ocr_core.observability.logging import setup_logger


def test_console_handler_writes_to_the_current_stdout_not_a_closed_one(monkeypatch):
    first = io.StringIO()
    monkeypatch.setattr(sys, "stdout", first)
    log = setup_logger()
    log.info("one")
    assert "one" in first.getvalue()
    first.close()
    second, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", second)
    monkeypatch.setattr(sys, "stderr", err)
    logging.getLogger("ocrflow.storage").info("two %d", 2)
    assert "two 2" in second.getvalue()
    assert err.getvalue() == ""  # no '--- Logging error ---' block


def test_a_finished_verbs_log_file_is_detached(tmp_path, monkeypatch):
    """A verb's eval.log in a directory since deleted (the export parity gate evaluates in a temporary
    directory) must not be re-opened by the next verb in the same process: that raised
    FileNotFoundError inside `ocrflow export` (stop 25's clean-clone run)."""
    from ocr_core.cli import main
    from ocr_core.observability.logging import close_log_files, setup_logger

    run_dir = tmp_path / "gone"
    log = setup_logger(run_dir / "eval.log")
    log.info("in the run")
    assert "in the run" in (run_dir / "eval.log").read_text(encoding="utf-8")
    close_log_files()
    assert not any(isinstance(h, logging.FileHandler) for h in log.handlers)
    assert any(isinstance(h, logging.StreamHandler) for h in log.handlers)  # the console stays

    setup_logger(run_dir / "eval.log")
    assert main(["validate-data", "--mode", "rec", "--label-file", str(tmp_path / "none.txt")]) == 2
    assert not any(isinstance(h, logging.FileHandler) for h in logging.getLogger("ocrflow").handlers)
