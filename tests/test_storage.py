"""Uploads are stored once by content, size limits are enforced while streaming, and nothing half-written stays."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from grader.errors import UploadTooLarge
from grader.storage import ArtifactStore


def test_identical_uploads_share_one_blob_named_by_sha256(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    first = store.save([b"hello ", b"world"], max_bytes=100, field="answers")
    second = store.save([b"hello world"], max_bytes=100, field="answers")
    assert first == second
    assert first.sha256 == hashlib.sha256(b"hello world").hexdigest() and first.size == 11
    assert store.read_bytes(first.sha256) == b"hello world"
    blobs = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert blobs == [store.path_for(first.sha256)]


def test_an_oversized_stream_is_refused_and_leaves_no_file(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    consumed: list[int] = []

    def chunks():  # type: ignore[no-untyped-def]
        for index in range(100):
            consumed.append(index)
            yield b"x" * 10

    with pytest.raises(UploadTooLarge, match="limit of 25 bytes") as info:
        store.save(chunks(), max_bytes=25, field="v1")
    assert info.value.field == "v1"
    assert len(consumed) == 3  # stopped reading as soon as the limit was passed
    assert not [path for path in tmp_path.rglob("*") if path.is_file()]


def test_path_for_accepts_only_hex_digests(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        ArtifactStore(tmp_path).path_for("../../etc/passwd")


def test_a_derived_file_is_kept_apart_from_the_blobs_and_replaced_whole(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    blob = store.save([b"checkpoint"], max_bytes=100, field="v1")
    assert store.read_derived(blob.sha256, "weights-v1.json") is None
    store.write_derived(blob.sha256, "weights-v1.json", b"first")
    store.write_derived(blob.sha256, "weights-v1.json", b"second")
    assert store.read_derived(blob.sha256, "weights-v1.json") == b"second"
    assert store.derived_path(blob.sha256, "weights-v1.json").is_relative_to(tmp_path / "derived")
    assert sorted(path.name for path in tmp_path.rglob("*") if path.is_file()) == sorted(
        [blob.sha256, f"{blob.sha256}.weights-v1.json"]
    )
    with pytest.raises(ValueError):
        store.derived_path(blob.sha256, "../escape")
