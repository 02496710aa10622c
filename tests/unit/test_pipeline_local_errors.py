"""Issue #15 item 9: ``pipeline run --local`` fails in one line, before starting anything it can.

A raw folder without the ground-truth layout used to start the object store and kfp.local and fail
35 s later in the convert-labels task, with a traceback whose message carried ANSI colour codes
(kfp.local colours task names whether or not it writes to a terminal).
"""

from __future__ import annotations

import pytest

pytest.importorskip("kfp")

from ocr_core.cli import main  # noqa: E402


@pytest.fixture
def no_object_store(monkeypatch):
    import ocr_core.storage.embedded as embedded

    class _NoStart:
        def __init__(self, *a, **k):
            raise AssertionError("the object store was started")

    monkeypatch.setattr(embedded, "EmbeddedS3", _NoStart)


def test_raw_dir_without_ground_truth_fails_before_starting(tmp_path, capsys, no_object_store):
    raw = tmp_path / "raw"
    (raw / "det" / "train" / "images").mkdir(parents=True)  # images, but no gt/ beside them
    (raw / "rec" / "train").mkdir(parents=True)
    assert main(["pipeline", "run", "--local", "--raw-data", str(raw), "--pipeline-root", str(tmp_path / "root")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "\x1b[" not in err
    assert err.strip() == (f"ocrflow pipeline: error: {raw}: no det/<split>/gt/ or rec/<split>/gt.txt ground truth "
                           "(splits: train, test; `ocrflow split-icdar` writes this layout)")
    assert not (tmp_path / "root").exists()


def test_raw_dir_with_either_layout_passes_the_check(tmp_path):
    from pipelines.local_run import check_local_raw_data

    (tmp_path / "a" / "det" / "test" / "gt").mkdir(parents=True)
    check_local_raw_data({"raw_data_uri": str(tmp_path / "a")})
    (tmp_path / "b" / "rec" / "train").mkdir(parents=True)
    (tmp_path / "b" / "rec" / "train" / "gt.txt").write_text("w.png, \"a\"\n", encoding="utf-8")
    check_local_raw_data({"raw_data_uri": str(tmp_path / "b")})
    check_local_raw_data({"raw_data_uri": "s3://bucket/raw"})  # published: the ingest step checks it


def test_a_failed_task_is_one_plain_line(tmp_path, monkeypatch):
    from kfp.local import logging_utils

    from pipelines import local_run

    seen = {}

    def failing_pipeline(**params):
        # what kfp.local raises, built with its own colours as they are during the run
        seen["cyan"] = logging_utils.Color.CYAN
        name = logging_utils.color_text("'convert-labels'", logging_utils.Color.CYAN)
        status = logging_utils.color_text("FAILURE", logging_utils.Color.RED)
        raise RuntimeError(f"Pipeline 'ocr-train-pipeline' finished with status {status}. Inner task failed: {name}.")

    monkeypatch.setattr(local_run, "check_arguments", lambda params: None)
    with pytest.raises(local_run.PipelineFailed) as err:
        local_run.run_pipeline_locally({}, tmp_path / "root", pipeline=failing_pipeline)
    assert seen["cyan"] == ""  # pytest captures stdout: not a terminal, so no colour codes
    assert logging_utils.Color.CYAN == "\033[96m"  # restored afterwards
    assert isinstance(err.value, RuntimeError)  # what kfp.local raised: callers catching that still do
    assert str(err.value) == ("Pipeline 'ocr-train-pipeline' finished with status FAILURE. Inner task failed: "
                              "'convert-labels'. (its log is above)")


def test_other_runtime_errors_pass_through(tmp_path, monkeypatch):
    from pipelines import local_run

    def broken(**params):
        raise RuntimeError("something else")

    monkeypatch.setattr(local_run, "check_arguments", lambda params: None)
    with pytest.raises(RuntimeError, match="something else") as err:
        local_run.run_pipeline_locally({}, tmp_path / "root", pipeline=broken)
    assert not isinstance(err.value, local_run.PipelineFailed)
