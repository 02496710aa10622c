"""Storage URI parsing and joining (``ocr_core.storage.uri``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ocr_core.errors import OCRFlowError
from ocr_core.storage.uri import StorageError, StorageURI, is_s3_uri, join_uri, normalize_relpath, parse_uri


@pytest.mark.parametrize("text, bucket, key", [
    ("s3://bucket", "bucket", ""),
    ("s3://bucket/", "bucket", ""),
    ("s3://bucket/a/b.txt", "bucket", "a/b.txt"),
    ("s3://bucket/a/b/", "bucket", "a/b/"),
    ("s3://bucket//a//b", "bucket", "a/b"),
    ("S3://my.bucket-1/x", "my.bucket-1", "x"),
])
def test_parse_s3(text: str, bucket: str, key: str) -> None:
    u = parse_uri(text)
    assert (u.scheme, u.bucket, u.key) == ("s3", bucket, key)
    assert u.is_s3 and not u.is_local
    assert is_s3_uri(text)


def test_s3_str_round_trip() -> None:
    for text in ("s3://b12/data/v1", "s3://b12", "s3://b12/data/v1/"):
        assert str(parse_uri(text)) == text
        assert parse_uri(str(parse_uri(text))) == parse_uri(text)


@pytest.mark.parametrize("text", ["s3://", "s3:///key", "s3://Bad_Bucket/k", "s3://ab/k", "s3://a..b/k",
                                  "gs://bucket/k", "", "   ", "file://remotehost/x"])
def test_parse_rejects(text: str) -> None:
    with pytest.raises(StorageError) as ei:
        parse_uri(text)
    assert isinstance(ei.value, OCRFlowError)


def test_local_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    rel = parse_uri("data/train")
    assert rel.is_local and rel.key == str(tmp_path / "data" / "train")
    assert rel.path == tmp_path / "data" / "train"
    assert parse_uri(tmp_path / "x").key == str(tmp_path / "x")  # PathLike
    assert parse_uri(f"file://{tmp_path}/a b").key == str(tmp_path / "a b")
    assert parse_uri(f"file://localhost{tmp_path}/c").key == str(tmp_path / "c")
    assert parse_uri("file:///tmp/a%20b").key == "/tmp/a b"
    assert parse_uri("~/x").key == os.path.join(os.path.expanduser("~"), "x")
    assert not is_s3_uri("/tmp/x")


def test_join_and_relative() -> None:
    assert join_uri("s3://bkt/data", "train", "x.jpg") == "s3://bkt/data/train/x.jpg"
    assert join_uri("s3://bkt/data/", "/train/", "x.jpg") == "s3://bkt/data/train/x.jpg"
    assert join_uri("s3://bkt", "x") == "s3://bkt/x"
    assert join_uri("/root/d", "a/b.txt") == "/root/d/a/b.txt"
    assert join_uri("s3://bkt/p", "") == "s3://bkt/p"
    u = parse_uri("s3://bkt/data/train/x.jpg")
    assert u.relative_to(parse_uri("s3://bkt/data")) == "train/x.jpg"
    assert u.name == "x.jpg"
    assert parse_uri("/root/d/a/b.txt").relative_to(parse_uri("/root/d")) == "a/b.txt"
    with pytest.raises(StorageError):
        u.relative_to(parse_uri("s3://bkt/dat"))  # a prefix is a directory, not a string prefix
    with pytest.raises(StorageError):
        parse_uri("/root/x").relative_to(parse_uri("/root/d"))


@pytest.mark.parametrize("part", ["../x", "a/../../x", "..", "a\\..\\b"])
def test_join_refuses_escape(part: str) -> None:
    with pytest.raises(StorageError, match=r"\.\."):
        join_uri("s3://bkt/data", part)
    with pytest.raises(StorageError):
        join_uri("/root/data", part)


def test_normalize_relpath() -> None:
    assert normalize_relpath("./a//b/./c") == "a/b/c"
    assert normalize_relpath("a\\b") == "a/b"
    assert normalize_relpath("") == ""


def test_dir_key_and_frozen() -> None:
    assert parse_uri("s3://bkt/p").dir_key == "p/"
    assert parse_uri("s3://bkt/p/").dir_key == "p/"
    assert parse_uri("s3://bkt").dir_key == ""
    u = StorageURI("s3", "bkt", "k")
    with pytest.raises(AttributeError):
        u.key = "other"  # type: ignore[misc]
    with pytest.raises(StorageError):
        _ = u.path  # only local URIs have a path
