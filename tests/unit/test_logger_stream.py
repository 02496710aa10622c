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
