"""Content-addressed file storage: uploads are written once, named by the sha256 of their bytes."""

from __future__ import annotations

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
        tmp_dir = self.root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(dir=tmp_dir)
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
            blob = StoredBlob(sha256=digest.hexdigest(), size=size)
            final = self.path_for(blob.sha256)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp_name, final)
            return blob
        except OSError as exc:
            raise InfrastructureError(f"cannot store upload '{field}': {exc.strerror}") from exc
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)

    def read_bytes(self, sha256: str) -> bytes:
        try:
            return self.path_for(sha256).read_bytes()
        except FileNotFoundError as exc:
            raise InfrastructureError(f"stored file {sha256} is missing from {self.root}") from exc
