"""Content-addressed file storage: uploads are written once, named by the sha256 of their bytes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from grader.errors import InfrastructureError, UploadTooLarge


@dataclass(frozen=True, slots=True)
class StoredBlob:
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class StagedBlob:
    """An upload written to a temporary file, not yet in the store."""

    sha256: str
    size: int
    path: Path


class ArtifactStore:
    """Blobs under root/ab/cd/<sha256>; writes go through a temp file and an atomic rename."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def save(self, chunks: Iterable[bytes], *, max_bytes: int, field: str) -> StoredBlob:
        """Stream chunks to disk, refusing (413) as soon as more than max_bytes arrive."""
        return self.keep(self.stage(chunks, max_bytes=max_bytes, field=field))

    def stage(self, chunks: Iterable[bytes], *, max_bytes: int, field: str) -> StagedBlob:
        """Stream chunks into a temporary file (413 as soon as more than max_bytes arrive); nothing is in the store
        until `keep`, so a request refused later leaves nothing behind once its staged files are discarded."""
        tmp_dir = self.root / "tmp"
        digest = hashlib.sha256()
        size = 0
        try:
            tmp_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=tmp_dir)
        except OSError as exc:
            raise InfrastructureError(f"cannot store upload '{field}': {exc.strerror}") from exc
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise UploadTooLarge(
                            f"file '{field}' is larger than the limit of {max_bytes} bytes", field=field
                        )
                    digest.update(chunk)
                    out.write(chunk)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp_name)
            if isinstance(exc, OSError):
                raise InfrastructureError(f"cannot store upload '{field}': {exc.strerror}") from exc
            raise
        return StagedBlob(sha256=digest.hexdigest(), size=size, path=Path(tmp_name))

    def keep(self, staged: StagedBlob) -> StoredBlob:
        """Move a staged file to its content address (atomic; the same bytes stored twice are one file)."""
        final = self.path_for(staged.sha256)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged.path, final)
        except OSError as exc:
            raise InfrastructureError(f"cannot store upload {staged.sha256[:12]}: {exc.strerror}") from exc
        return StoredBlob(sha256=staged.sha256, size=staged.size)

    @staticmethod
    def discard(staged: StagedBlob) -> None:
        with contextlib.suppress(OSError):
            staged.path.unlink()

    def read_bytes(self, sha256: str) -> bytes:
        try:
            return self.path_for(sha256).read_bytes()
        except FileNotFoundError as exc:
            raise InfrastructureError(f"stored file {sha256} is missing from {self.root}") from exc

    def derived_path(self, sha256: str, kind: str) -> Path:
        """Where something computed from a blob is kept (e.g. a checkpoint's weight summary), apart from the blobs:
        root/derived/ab/cd/<sha256>.<kind>."""
        if not kind.replace("-", "").replace(".", "").isalnum():
            raise ValueError(f"not a derived-file kind: {kind!r}")
        return self.root / "derived" / self.path_for(sha256).relative_to(self.root).with_name(f"{sha256}.{kind}")

    def read_derived(self, sha256: str, kind: str) -> bytes | None:
        """What write_derived stored for this blob, or None."""
        try:
            return self.derived_path(sha256, kind).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise InfrastructureError(f"cannot read {kind} of stored file {sha256}: {exc.strerror}") from exc

    def write_derived(self, sha256: str, kind: str, data: bytes) -> None:
        """Atomically (a temp file and a rename): concurrent writers of the same result leave one whole file."""
        final = self.derived_path(sha256, kind)
        tmp_name = ""
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=final.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp_name, final)
        except OSError as exc:
            raise InfrastructureError(f"cannot store {kind} of stored file {sha256}: {exc.strerror}") from exc
        finally:
            if tmp_name and os.path.exists(tmp_name):
                os.unlink(tmp_name)
