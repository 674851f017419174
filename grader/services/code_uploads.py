"""Student code uploads: checked like the sandbox will see them, then kept as one normalised zip per label."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence

from grader.errors import InputError

FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def normalise_code_upload(files: Sequence[tuple[str, bytes]], *, field: str) -> bytes:
    """One zip, or several .py files, as a deterministic zip of the kept .py files (same code, same bytes).

    Raises InputError (UnsafeUpload / InvalidUpload) naming the entry and the limit that was broken.
    """
    from grader.sandbox.archive import ArchiveLimits, read_files, read_zip, select_code

    limits = ArchiveLimits()
    if not files:
        raise InputError("no code files were uploaded", field=field)
    if len(files) == 1 and files[0][0].lower().endswith(".zip"):
        entries = read_zip(files[0][1], limits, field)
    elif any(name.lower().endswith(".zip") for name, _ in files):
        raise InputError("send either one .zip or several .py files, not a mix", field=field)
    else:
        entries = read_files(files, limits, field)
    kept, _ = select_code(entries, limits, field)
    return _deterministic_zip(kept)


def _deterministic_zip(files: Sequence[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in sorted(files):
            info = zipfile.ZipInfo(name, date_time=FIXED_ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buffer.getvalue()
