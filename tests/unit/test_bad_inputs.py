"""Issue #15 "Done means": the bad-input list, re-run as a recorded, scripted sweep.

Every case is what a new user or a reviewer would try: a missing file, a directory where a file is
expected (and the reverse), an output below a plain file, malformed or hostile YAML, a malformed
``-o``, unknown sections and keys, bad enum values, zero/negative sizes, broken label files, a
pickle given as a checkpoint, a manifest whose entry escapes its prefix. Each goes through
``main([...])`` in process, in a fresh tmp dir holding tiny synthetic inputs, and must give:

- return code 2;
- exactly one line on stderr (progress lines aside), ``ocrflow <verb>: error: ...``, naming the
  file / key / flag it is about, and no traceback;
- nothing deleted, changed or half-written: a snapshot of the tmp dir (every file with its size and
  mtime_ns, every directory) is the same afterwards, except for paths a case declares.

A case that does not hold today stays in the table as a strict xfail naming what happens instead
(docs/security.md, "Bad-input sweep"): it is a bug to fix, not an expectation to relax.

Argument-parser refusals (a bad ``choices`` value, a missing required flag) are argparse's: usage
plus one ``error:`` line, ``SystemExit(2)``; :func:`test_parser_refusals` holds those to that.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from ocr_core.cli import main

REC_CONFIG = "configs/rec/PP-OCRv3/ch_PP-OCRv3_rec.yml"
DET_CONFIG = "configs/det/det_mv3_db.yml"


# ---------------------------------------------------------------------------------------- fixtures


class _Open:
    """A pickle payload: unpickling it calls ``open(path, "w")``, creating a marker file."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _png(path: Path, h: int = 32, w: int = 100) -> None:
    ok, buf = cv2.imencode(".png", np.full((h, w, 3), 200, np.uint8))
    assert ok
    path.write_bytes(buf.tobytes())


class Tree:
    """The synthetic inputs every case starts from (all under ``t``, the tmp dir)."""

    def __init__(self, t: Path, repo_root: Path) -> None:
        self.t = t
        self.rec = str(repo_root / REC_CONFIG)
        self.det = str(repo_root / DET_CONFIG)
        self.d = t / "data"  # a rec dataset: a.png + l.txt
        self.d.mkdir()
        _png(self.d / "a.png")
        (self.d / "l.txt").write_text("a.png\tab\n", encoding="utf-8")
        self.plain = t / "plain"  # a regular file where a directory is expected
        self.plain.write_text("x", encoding="utf-8")
        self.gt, self.imgs = t / "gt", t / "imgs"  # an ICDAR det set of 3 images
        self.gt.mkdir()
        self.imgs.mkdir()
        for i in (1, 2, 3):
            _png(self.imgs / f"img_{i}.png", 100, 100)
            (self.gt / f"gt_img_{i}.txt").write_text("10,10,50,10,50,30,10,30,hello\n", encoding="utf-8")
        self.raw = t / "raw"  # the pipeline's raw layout (rec ground truth only)
        (self.raw / "rec" / "train").mkdir(parents=True)
        (self.raw / "rec" / "train" / "gt.txt").write_text('w.png, "a"\n', encoding="utf-8")

    def write(self, name: str, data: str | bytes) -> Path:
        p = self.t / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            p.write_bytes(data)
        else:
            p.write_text(data, encoding="utf-8")
        return p

    def evil_pickle(self, name: str) -> Path:
        return self.write(name, pickle.dumps({"model": _Open(self.t / "PWNED")}, protocol=2))

    def train(self, *extra: str) -> list[str]:
        """``train`` on the tiny rec set; refused before the first step by ``extra``."""
        d, t = self.d, self.t
        return ["train", "-c", self.rec, "-o", f"Train.dataset.data_dir={d}",
                f"Train.dataset.label_file_list=[{d / 'l.txt'}]", "Train.loader.num_workers=0",
                "Train.loader.batch_size_per_card=1", f"Eval.dataset.data_dir={d}",
                f"Eval.dataset.label_file_list=[{d / 'l.txt'}]", "Eval.loader.num_workers=0",
                "Eval.loader.batch_size_per_card=1", "Global.epoch_num=1", f"Global.save_model_dir={t / 'out'}",
                *extra]

    def eval(self, *extra: str) -> list[str]:
        d = self.d
        return ["eval", "-c", self.rec, "-o", f"Eval.dataset.data_dir={d}",
                f"Eval.dataset.label_file_list=[{d / 'l.txt'}]", "Eval.loader.num_workers=0", *extra]

    def vd(self, *extra: str, label: str = "data/l.txt") -> list[str]:
        return ["validate-data", "--mode", "rec", "--label-file", str(self.t / label), "--data-dir", str(self.d),
                *extra]

    def lmdb(self, *extra: str, label: str = "data/l.txt", out: str = "lmdb") -> list[str]:
        return ["build-lmdb", "--label-file", str(self.t / label), "--data-dir", str(self.d),
                "--out", str(self.t / out), *extra]

    def shards(self, *extra: str, out: str = "shards") -> list[str]:
        return ["build-shards", "--mode", "rec", "--label-file", str(self.d / "l.txt"), "--data-dir", str(self.d),
                "--out", str(self.t / out), "--quiet", *extra]

    def crop(self, out: str, *extra: str, images: str = "imgs") -> list[str]:
        return ["crop-words", "--gt-dir", str(self.gt), "--image-dir", str(self.t / images),
                "--out", str(self.t / out), *extra]

    def split(self, *extra: str, images: str = "imgs", out: str = "split_out") -> list[str]:
        return ["split-icdar", "--images", str(self.t / images), "--gt", str(self.gt), "--out", str(self.t / out),
                "--test-count", "1", *extra]

    def pipeline(self, *extra: str, raw: str = "raw") -> list[str]:
        return ["pipeline", "run", "--local", "--raw-data", str(self.t / raw),
                "--pipeline-root", str(self.t / "root"), *extra]


def _manifest(tree: Tree, files: list[dict]) -> Path:
    """A published local prefix whose manifest.json lists ``files``."""
    return tree.write("pub/manifest.json", json.dumps({
        "version": 1, "kind": "dataset", "prefix": str(tree.t / "pub"), "files": files,
        "counts": {"files": len(files), "bytes": 0}, "created": "2026-01-01T00:00:00+00:00", "extra": {}})).parent


# ------------------------------------------------------------------------------------------- cases

Build = Callable[[Tree], list[str]]


def _case(case_id: str, build: Build, expect: str, *, allowed: tuple[str, ...] = (),
          xfail: str | None = None):
    """One row: ``build`` sets up what it needs and returns argv; ``expect`` (``{t}`` = the tmp dir,
    ``{d}`` = its data dir) must appear in the error line; ``allowed``: paths the run may touch."""
    marks = [pytest.mark.xfail(strict=True, reason=xfail)] if xfail else []
    return pytest.param(build, expect, allowed, id=case_id, marks=marks)


CASES = [
    # ---- train: config file and -o
    _case("train-missing-config", lambda f: ["train", "-c", str(f.t / "nope.yml")], "{t}/nope.yml"),
    _case("train-config-is-a-dir", lambda f: ["train", "-c", str(f.d)], "{d}"),
    _case("train-malformed-yaml", lambda f: ["train", "-c", str(f.write("bad.yml", "Global: [1, 2\n"))],
          "{t}/bad.yml:2: invalid YAML"),
    _case("train-python-object-tag",
          lambda f: ["train", "-c", str(f.write("evil.yml", "Global: !!python/object/apply:builtins.open "
                                                            f"['{f.t / 'PWNED'}', 'w']\n"))],
          "{t}/evil.yml:1"),
    _case("train-empty-config", lambda f: ["train", "-c", str(f.write("empty.yml", ""))], "{t}/empty.yml"),
    _case("train-override-without-equals", lambda f: ["train", "-c", f.rec, "-o", "Global.epoch_num"],
          "-o Global.epoch_num"),
    _case("train-override-section-not-a-mapping", lambda f: ["train", "-c", f.rec, "-o", "Global=3"],
          "-o Global=3"),
    _case("train-unknown-section-in-file",
          lambda f: ["train", "-c", str(f.write("extra.yml", Path(f.rec).read_text(encoding="utf-8")
                                                + "\nExtra:\n  a: 1\n"))],
          "Extra: unknown section"),
    _case("train-unknown-key", lambda f: ["train", "-c", f.rec, "-o", "Architecture.foo=1"], "Architecture.foo"),
    _case("train-bad-model-type", lambda f: ["train", "-c", f.rec, "-o", "Architecture.model_type=cls"],
          "Architecture.model_type"),
    _case("train-bad-optimizer", lambda f: f.train("Optimizer.name=Foo"), "Optimizer.name"),
    _case("train-batch-size-zero", lambda f: f.train("Train.loader.batch_size_per_card=0"),
          "Train.loader.batch_size_per_card"),
    # ---- train: data
    _case("train-empty-label-file", lambda f: f.train(f"Train.dataset.label_file_list=[{f.write('e.txt', '')}]"),
          "{t}/e.txt"),
    _case("train-label-file-is-a-dir", lambda f: f.train(f"Train.dataset.label_file_list=[{f.d}]"), "{d}"),
    _case("train-non-utf8-dict",
          lambda f: f.train(f"Global.character_dict_path={f.write('dict.txt', b'a' + bytes([10, 255, 10]))}"),
          "{t}/dict.txt:2: not UTF-8"),
    _case("train-label-line-without-tab",
          lambda f: f.train(f"Train.dataset.label_file_list=[{f.write('data/nt.txt', 'a.png ab' + chr(10))}]"),
          "{d}/nt.txt:1: no tab"),
    _case("train-data-dir-is-a-file", lambda f: f.train(f"Train.dataset.data_dir={f.plain}"), "{t}/plain"),
    _case("train-negative-epochs", lambda f: f.train("Global.epoch_num=-1"), "Global.epoch_num"),
    # ---- eval / infer / export: checkpoints
    _case("eval-missing-checkpoint", lambda f: f.eval(f"Global.checkpoints={f.t / 'none.pt'}"), "{t}/none.pt"),
    _case("eval-pickle-checkpoint", lambda f: f.eval(f"Global.checkpoints={f.evil_pickle('evil.pt')}"),
          "{t}/evil.pt"),
    _case("infer-no-checkpoint", lambda f: ["infer", "-c", f.rec, "--image", str(f.d / "a.png"),
                                            "--out", str(f.t / "res")], "Global.pretrained_model"),
    _case("infer-garbage-checkpoint",
          lambda f: ["infer", "-c", f.rec, "-o", f"Global.pretrained_model={f.write('g.pt', bytes([128, 4]) + b'junk')}",
                     "--image", str(f.d / "a.png"), "--out", str(f.t / "res")],
          "{t}/g.pt"),
    _case("export-no-checkpoint", lambda f: ["export", "-c", f.rec, "--out", str(f.t / "exp")], "--random"),
    _case("export-opset-too-low", lambda f: ["export", "-c", f.rec, "--random", "--opset", "10",
                                             "--out", str(f.t / "exp")], "opset"),
    _case("export-out-below-a-file", lambda f: ["export", "-c", f.rec, "--random", "--out", str(f.plain / "exp")],
          "{t}/plain"),
    _case("export-pickle-pdparams",
          lambda f: ["export", "-c", f.rec, "-o", f"Global.pretrained_model={f.evil_pickle('evil.pdparams')}",
                     "--out", str(f.t / "exp")], "refused to load {t}/evil.pdparams"),
    _case("export-pickle-pt",
          lambda f: ["export", "-c", f.rec, "-o", f"Global.pretrained_model={f.evil_pickle('evil.pt')}",
                     "--out", str(f.t / "exp")], "{t}/evil.pt"),
    # ---- predict
    _case("predict-missing-model", lambda f: ["predict", "--model", str(f.t / "nope.onnx"),
                                              "--image", str(f.d / "a.png")], "{t}/nope.onnx"),
    _case("predict-dir-without-model", lambda f: ["predict", "--model", str(f.d), "--image", str(f.d / "a.png")],
          "{d}/model.onnx"),
    _case("predict-garbage-onnx", lambda f: ["predict", "--model", str(f.write("m.onnx", b"garbage")),
                                             "--image", str(f.d / "a.png")], "{t}/m.onnx"),
    # ---- validate-data
    _case("validate-label-file-is-a-dir", lambda f: f.vd(label="data"), "{d}"),
    _case("validate-json-below-a-file", lambda f: f.vd("--json", str(f.plain / "r.json")), "{t}/plain"),
    _case("validate-missing-dict", lambda f: f.vd("--dict", str(f.t / "nodict.txt")), "{t}/nodict.txt"),
    _case("validate-data-dir-missing",
          lambda f: ["validate-data", "--mode", "rec", "--label-file", str(f.d / "l.txt"),
                     "--data-dir", str(f.t / "nodir")], "{t}/nodir"),
    _case("validate-empty-delimiter", lambda f: f.vd("--delimiter", ""), "--delimiter"),
    # ---- convert-labels
    _case("convert-missing-gt-dir", lambda f: ["convert-labels", "--mode", "det", "--gt-dir", str(f.t / "nogt"),
                                               "--image-dir", str(f.imgs), "--out", str(f.t / "o.txt")],
          "{t}/nogt"),
    _case("convert-non-utf8-gt",
          lambda f: ["convert-labels", "--mode", "det",
                     "--gt-dir", str(f.write("gt2/gt_img_1.txt", b"10,10,50,10,50,30,10,30,\xff\xfe\n").parent),
                     "--image-dir", str(f.imgs), "--out", str(f.t / "o.txt")],
          "{t}/gt2/gt_img_1.txt:1"),
    _case("convert-out-is-a-dir", lambda f: ["convert-labels", "--mode", "det", "--gt-dir", str(f.gt),
                                             "--image-dir", str(f.imgs), "--out", str(f.d)], "{d}"),
    # ---- build-lmdb
    _case("lmdb-out-is-the-dataset", lambda f: f.lmdb("--overwrite", out="data"), "{d}: holds the inputs"),
    _case("lmdb-out-exists", lambda f: (f.write("ex/keep", "k"), f.lmdb(out="ex"))[1], "{t}/ex"),
    _case("lmdb-non-utf8-label-file", lambda f: (f.write("data/nu.txt", b"a.png\t\xff\n"), f.lmdb(label="data/nu.txt"))[1],
          "{d}/nu.txt"),
    _case("lmdb-max-text-length-zero", lambda f: f.lmdb("--max-text-length", "0"), "--max-text-length"),
    _case("lmdb-negative-map-size", lambda f: f.lmdb("--map-size-mb=-3"), "--map-size-mb"),
    # ---- build-shards
    _case("shards-size-zero", lambda f: f.shards("--shard-size", "0"), "--shard-size"),
    _case("shards-out-below-a-file", lambda f: f.shards(out="plain/shards"), "{t}/plain"),
    _case("shards-out-is-the-dataset", lambda f: f.shards("--overwrite", out="data"), "{d} is not empty"),
    # ---- crop-words
    _case("crop-out-not-empty", lambda f: f.crop("data"), "{d}: output directory is not empty"),
    _case("crop-out-is-the-gt", lambda f: f.crop("gt", "--overwrite"), "{t}/gt: output directory is or contains"),
    _case("crop-image-dir-is-a-file", lambda f: f.crop("crops", images="plain"), "{t}/plain"),
    # ---- split-icdar
    _case("split-missing-images", lambda f: f.split(images="noimg"), "{t}/noimg"),
    _case("split-negative-test-count", lambda f: f.split("--test-count", "-1"), "test count"),
    _case("split-out-is-the-input", lambda f: f.split("--overwrite", out="imgs"),
          "{t}/imgs: output directory is or contains the input"),
    # ---- weights
    _case("weights-paddle-pickle", lambda f: ["weights", "import-paddle", "--in", str(f.evil_pickle("e.pdparams")),
                                              "-c", f.rec, "--out", str(f.t / "w.pt")],
          "refused to load {t}/e.pdparams"),
    _case("weights-paddle-garbage", lambda f: ["weights", "import-paddle", "--in", str(f.write("g.pdparams", b"junk")),
                                               "-c", f.rec, "--out", str(f.t / "w.pt")], "{t}/g.pdparams"),
    _case("weights-openocr-missing", lambda f: ["weights", "import-openocr", "--in", str(f.t / "nope.pth"),
                                                "-c", f.det, "--out", str(f.t / "w.pt")], "{t}/nope.pth"),
    _case("weights-openocr-pickle", lambda f: ["weights", "import-openocr", "--in", str(f.evil_pickle("e.pth")),
                                               "-c", f.det, "--out", str(f.t / "w.pt")], "{t}/e.pth"),
    _case("weights-ppocrv3-garbage-wheel",
          lambda f: ["weights", "import-ppocrv3", "--kind", "rec", "--wheel", str(f.write("r.whl", b"notazip")),
                     "--out", str(f.t / "w.pt")], "{t}/r.whl"),
    # ---- storage (local prefixes only: nothing contacts a server)
    _case("storage-upload-a-file", lambda f: ["storage", "upload", str(f.plain), str(f.t / "dest")], "{t}/plain"),
    _case("storage-upload-extra-without-equals",
          lambda f: ["storage", "upload", "--extra", "noequals", str(f.d), str(f.t / "dest")], "--extra"),
    _case("storage-download-path-escape",
          lambda f: ["storage", "download", str(_manifest(f, [{"path": "../evil.txt", "size": 1,
                                                                 "sha256": "0" * 64}])), str(f.t / "dl")],
          "'../evil.txt' escapes the prefix"),
    _case("storage-download-not-published", lambda f: ["storage", "download", str(f.d), str(f.t / "dl")],
          "{d}: not published"),
    _case("storage-serve-port-out-of-range",
          lambda f: ["storage", "serve", "--port", "70000", "--data-dir", str(f.t / "s3")], "--port"),
    # ---- pipeline run --local (refused before the object store or kfp.local start)
    _case("pipeline-missing-raw-dir", lambda f: f.pipeline(raw="noraw"), "{t}/noraw"),
    _case("pipeline-param-without-equals", lambda f: f.pipeline("-p", "noequals"), "noequals"),
    _case("pipeline-bad-export-format", lambda f: f.pipeline("-p", "export_format=pdf"), "export_format"),
    _case("pipeline-negative-min-workers", lambda f: f.pipeline("-p", "min_workers=-1"), "min_workers"),
    _case("pipeline-zero-workers", lambda f: f.pipeline("-p", "workers=0"), "workers"),
    _case("pipeline-unknown-param", lambda f: f.pipeline("-p", "bogus_key=1"), "bogus_key"),
]


# ------------------------------------------------------------------------------------------- tests


def _snapshot(root: Path) -> dict[str, tuple]:
    """Every path below ``root``: files with (size, mtime_ns); directories as present (a directory's own
    mtime moves when a temporary file comes and goes, which deletes or half-writes nothing)."""
    snap: dict[str, tuple] = {}
    for p in root.rglob("*"):
        st = p.lstat()
        rel = p.relative_to(root).as_posix()
        snap[rel] = ("dir",) if p.is_dir() and not p.is_symlink() else (st.st_size, st.st_mtime_ns)
    return snap


def _changes(before: dict, after: dict, allowed: tuple[str, ...]) -> list[str]:
    def ok(rel: str) -> bool:
        return any(rel == a or rel.startswith(a + "/") for a in allowed)

    out = [f"deleted {k}" for k in before if k not in after and not ok(k)]
    out += [f"created {k}" for k in after if k not in before and not ok(k)]
    out += [f"changed {k}" for k in before if k in after and before[k] != after[k] and not ok(k)]
    return sorted(out)


def _isolate_logging(monkeypatch) -> None:
    """In process, a verb's log handler outlives main() bound to the previous case's captured stderr;
    restore the ``ocrflow`` logger's handlers after each case so one case's log does not land in the next."""
    import logging

    log = logging.getLogger("ocrflow")
    monkeypatch.setattr(log, "handlers", list(log.handlers))


class _NoObjectStore:
    def __init__(self, *a, **k):
        raise AssertionError("the object store was started")


@pytest.mark.parametrize("build, expect, allowed", CASES)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(build: Build, expect: str, allowed: tuple[str, ...],
                                                            tmp_path, repo_root, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _isolate_logging(monkeypatch)
    tree = Tree(tmp_path, repo_root)
    argv = build(tree)
    if argv[0] == "pipeline":
        pytest.importorskip("kfp")
        import ocr_core.storage.embedded as embedded

        monkeypatch.setattr(embedded, "EmbeddedS3", _NoObjectStore)
    before = _snapshot(tmp_path)
    capsys.readouterr()

    rc = main(argv)

    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.strip().splitlines() if " eta " not in ln]  # progress lines
    assert rc == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith(f"ocrflow {argv[0]}: error: "), lines[0]
    assert expect.format(t=tmp_path, d=tree.d) in lines[0]
    assert _changes(before, _snapshot(tmp_path), allowed) == []
    assert not (tmp_path / "PWNED").exists()  # no payload ran


@pytest.mark.parametrize("verb, argv", [
    ("train", ["train", "-c", "{rec}", "--max-image-pixels", "-5"]),
    ("predict", ["predict", "--model", "{t}/m.onnx", "--image", "{t}/data/a.png", "--det_box_type", "hex"]),
    ("predict", ["predict", "--image", "{t}/data/a.png"]),
    ("validate-data", ["validate-data", "--mode", "cls", "--label-file", "{t}/data/l.txt"]),
    ("pipeline compile", ["pipeline", "compile", "--pipeline", "nope"]),
], ids=["train-negative-max-pixels", "predict-bad-box-type", "predict-without-model", "validate-bad-mode",
        "pipeline-bad-name"])
def test_parser_refusals(verb, argv, tmp_path, repo_root, monkeypatch, capsys):
    """argparse's own refusals: usage, then one ``ocrflow VERB: error:`` line; exit 2; nothing written."""
    monkeypatch.chdir(tmp_path)
    tree = Tree(tmp_path, repo_root)
    before = _snapshot(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main([a.format(t=tmp_path, rec=tree.rec) for a in argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(f"ocrflow {verb}: error: ")
    assert _changes(before, _snapshot(tmp_path), ()) == []


def test_pickled_checkpoints_are_refused_without_running(tmp_path, repo_root, monkeypatch, capsys):
    """Beyond the one-line message (the cases above), a pickle given as a checkpoint is
    never unpickled: its payload would create ``PWNED``."""
    monkeypatch.chdir(tmp_path)
    tree = Tree(tmp_path, repo_root)
    pt, pdparams, pth = tree.evil_pickle("evil.pt"), tree.evil_pickle("evil.pdparams"), tree.evil_pickle("evil.pth")
    runs = [
        tree.train(f"Global.pretrained_model={pt}"),
        tree.eval(f"Global.checkpoints={pt}"),
        ["export", "-c", tree.rec, "-o", f"Global.pretrained_model={pt}", "--out", str(tmp_path / "exp")],
        ["export", "-c", tree.rec, "-o", f"Global.pretrained_model={pdparams}", "--out", str(tmp_path / "exp")],
        ["weights", "import-openocr", "--in", str(pth), "-c", tree.det, "--out", str(tmp_path / "w.pt")],
        ["weights", "import-paddle", "--in", str(pdparams), "-c", tree.rec, "--out", str(tmp_path / "w.pt")],
    ]
    for argv in runs:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "Traceback (most recent call last)" not in err
        assert any(ln.startswith(f"ocrflow {argv[0]}: error: ") for ln in err.splitlines()), err
        assert not (tmp_path / "PWNED").exists(), argv
    assert not (tmp_path / "w.pt").exists()
