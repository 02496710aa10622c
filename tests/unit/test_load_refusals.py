"""One-line refusals for files that are not what they claim (the bad-input sweep's pickle, ONNX and
port rows, held at the library level): a pickled checkpoint, garbage given as ONNX, an impossible
port, an opset below 17. Each names the file or setting, and refuses before anything is written."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from ocr_core.errors import OCRFlowError
from ocr_core.weights.checkpoint import CheckpointError, load_checkpoint


class _Open:
    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):  # noqa: ANN204
        return (open, (self.path, "w"))


@pytest.mark.parametrize("protocol", [2, pickle.DEFAULT_PROTOCOL])
def test_pickled_checkpoint_is_one_line_and_never_runs(tmp_path: Path, protocol: int, recwarn) -> None:
    p = tmp_path / "evil.pt"
    p.write_bytes(pickle.dumps({"model": _Open(tmp_path / "PWNED")}, protocol=protocol))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(p)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"cannot read checkpoint {p}: ")
    assert "weights_only=True" in msg and "so it was not loaded" in msg
    if protocol == 2:
        assert "pickled objects other than tensors and plain containers (unsupported global io.open)" in msg
    assert "weights_only` set to `False`" not in msg  # torch's advice is not repeated
    assert not (tmp_path / "PWNED").exists()
    assert not [w for w in recwarn if "pickle protocol" in str(w.message)]


def test_garbage_checkpoint_is_one_line(tmp_path: Path) -> None:
    p = tmp_path / "junk.pt"
    p.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(p)
    assert "\n" not in str(err.value) and str(p) in str(err.value)


def test_garbage_onnx_is_refused_naming_the_file(tmp_path: Path) -> None:
    from ocr_core.inference.metadata import MetadataError, read_metadata
    from ocr_core.inference.predictors import make_session

    p = tmp_path / "m.onnx"
    p.write_bytes(b"garbage")
    with pytest.raises(MetadataError, match="not an ONNX model") as err:
        read_metadata(p)
    assert str(p) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(MetadataError, match="not an ONNX model") as err:
        make_session(p)
    assert str(p) in str(err.value)


@pytest.mark.parametrize("port", [70000, 65536, -1])
def test_storage_port_out_of_range(port: int) -> None:
    from ocr_core.storage.embedded import EmbeddedS3

    with pytest.raises(OCRFlowError, match=f"--port must be 1-65535.*got {port}"):
        EmbeddedS3(None, port=port)


def test_low_opset_is_refused_before_the_output_dir_exists(tmp_path: Path) -> None:
    from ocr_core.errors import ConfigError
    from ocr_core.export.onnx_export import export_onnx

    with pytest.raises(ConfigError, match="opset must be >= 17"):
        export_onnx({"Architecture": {"model_type": "det"}}, tmp_path / "exp", opset=10)
    assert not (tmp_path / "exp").exists()
