"""``ocrflow pipeline run --local`` takes local weights for the weight parameters: each file (or folder
holding model.pt) is published once under ``<store_root>/weights/<digest>``; published URIs pass through."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ocr_core.errors import DataError
from ocr_core.storage.manifest import read_manifest
from pipelines.local_run import publish_local_weights


def test_local_weights_are_published_once(tmp_path: Path) -> None:
    ck = tmp_path / "w" / "ppocrv3_det.pt"
    ck.parent.mkdir()
    torch.save({"model": {"a": torch.ones(2)}}, ck)
    store = str(tmp_path / "store")
    out = publish_local_weights({"det_pretrained_uri": str(ck), "rec_pretrained_uri": "", "epochs": 1}, store)
    uri = out["det_pretrained_uri"]
    assert uri.startswith(str(tmp_path / "store" / "weights")) and out["rec_pretrained_uri"] == "" and out["epochs"] == 1
    m = read_manifest(uri)
    assert m.kind == "model" and m.extra["checkpoint"] == "model.pt" and (Path(uri) / "model.pt").read_bytes() == ck.read_bytes()
    again = publish_local_weights({"det_pretrained_uri": str(ck)}, store)["det_pretrained_uri"]
    assert again == uri  # content-addressed: the same file maps to the same prefix
    assert publish_local_weights({"det_pretrained_uri": uri}, store)["det_pretrained_uri"] == uri  # published: as is
    with pytest.raises(DataError, match="det_teacher_init_uri"):
        publish_local_weights({"det_teacher_init_uri": str(tmp_path / "nope.pt")}, store)
