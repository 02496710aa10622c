"""Issue #15 item 8: a truncated LMDB is a DataError naming data.mdb, not a SIGBUS."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import cv2
import lmdb
import numpy as np

from ocr_core.data.lmdb_build import build_lmdb


def _make_lmdb(tmp_path, n=40):
    rng = np.random.default_rng(0)
    lines = []
    for i in range(n):
        ok, buf = cv2.imencode(".png", rng.integers(0, 256, (32, 64, 3), dtype=np.uint8))
        (tmp_path / f"w{i}.png").write_bytes(buf.tobytes())
        lines.append(f"w{i}.png\tw{i}")
    (tmp_path / "l.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "lmdb" / "train"
    build_lmdb(str(tmp_path / "l.txt"), str(tmp_path), str(out), progress=False)
    return out


def test_truncated_lmdb_is_a_clear_error(tmp_path):
    out = _make_lmdb(tmp_path)
    data = out / "data.mdb"
    env = lmdb.open(str(out), readonly=True, lock=False)
    need = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    env.close()
    assert data.stat().st_size == need  # an intact build is accepted (checked below too)
    from ocr_core.data.lmdb_dataset import LMDBDataSet, close_lmdb_envs

    ds = LMDBDataSet(data_dir=str(out.parent), transforms=[{"DecodeImage": {"img_mode": "BGR"}}], mode="eval")
    assert len(ds) == 40 and all(ds[i] is not None for i in range(40))
    close_lmdb_envs()
    with open(data, "r+b") as fh:
        fh.truncate(need // 3)
    # in a child: on failure the old behaviour is SIGBUS (returncode -7), which must not kill pytest
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        from ocr_core.data.lmdb_dataset import LMDBDataSet
        from ocr_core.errors import DataError
        try:
            ds = LMDBDataSet(data_dir={str(out.parent)!r}, transforms=[{{"DecodeImage": {{"img_mode": "BGR"}}}}],
                             mode="eval")
            for i in range(len(ds)):
                ds.read_sample(i)
        except DataError as exc:
            print("DataError:", exc)
    """)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, (res.returncode, res.stderr[-2000:])
    assert res.stdout.strip() == (f"DataError: {data}: truncated LMDB ({need // 3} bytes, its pages need {need}); "
                                  "copy or rebuild the database")


def test_truncated_lmdb_through_the_cli(tmp_path):
    out = _make_lmdb(tmp_path, n=30)
    data = out / "data.mdb"
    with open(data, "r+b") as fh:
        fh.truncate(data.stat().st_size // 2)
    cfg = tmp_path / "c.yml"
    cfg.write_text(textwrap.dedent(f"""
        Global: {{use_gpu: false, character_dict_path: null}}
        Architecture: {{model_type: rec, algorithm: CRNN, Backbone: {{name: MobileNetV3, scale: 0.5,
                        model_name: small}}, Neck: {{name: SequenceEncoder, encoder_type: rnn, hidden_size: 8}},
                        Head: {{name: CTCHead}}}}
        Eval:
          dataset: {{name: LMDBDataSet, data_dir: {out.parent},
                     transforms: [{{DecodeImage: {{img_mode: BGR}}}}, {{CTCLabelEncode: {{}}}},
                                  {{RecResizeImg: {{image_shape: [3, 32, 100]}}}},
                                  {{KeepKeys: {{keep_keys: [image, label, length]}}}}]}}
          loader: {{batch_size_per_card: 4}}
    """), encoding="utf-8")
    code = subprocess.run([sys.executable, "-m", "ocr_core.cli", "eval", "-c", str(cfg), "-o", "Global.checkpoints=null"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert code.returncode == 2, (code.returncode, code.stderr[-2000:])
    assert f"{data}: truncated LMDB" in code.stderr and "Traceback" not in code.stderr
