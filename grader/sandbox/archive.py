"""Checking a student's code upload (one zip, or a list of files) and writing its Python files to a fresh folder.

Every zip entry is checked before anything is extracted: entry count, declared sizes, compression ratio,
names (no `..`, no absolute or drive paths, no odd characters), type (no symlinks, no encryption). Only `.py`
files are written; `.txt`/`.md` and anything else are left out and listed. A single top-level folder (how most
zips are made) is flattened away, so `hw3/NetWork.py` becomes `NetWork.py`.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from grader.errors import InputError

MIB = 1024 * 1024
KEPT_SUFFIXES = (".py",)
SKIPPED_PARTS = frozenset({"__MACOSX", "__pycache__", ".ipynb_checkpoints", ".git", ".DS_Store"})
"""Folders and files that zip tools and editors add: never the student's code."""
SAFE_COMPONENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_ .()+,@=-]*$")


class UnsafeUpload(InputError):
    """The upload is refused as unsafe to unpack (traversal, symlink, zip bomb, too large or too many files)."""


class InvalidUpload(InputError):
    """The upload is not usable code (not a zip, no Python files)."""


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    """What one code upload may hold; the course starter code is 5 small files."""

    max_upload_bytes: int = 20 * MIB
    """The zip file itself."""
    max_entries: int = 500
    """Zip entries of any kind, folders included."""
    max_total_bytes: int = 50 * MIB
    """Sum of the declared uncompressed sizes of all entries (left-out ones included: they are still inflated)."""
    max_file_bytes: int = 2 * MIB
    """One kept (.py) file; model code is a few KB."""
    max_kept_files: int = 100
    max_compression_ratio: float = 100.0
    """Uncompressed ÷ compressed size of one entry; source code compresses 3–6×, zip bombs 1000×."""
    ratio_checked_above_bytes: int = 64 * 1024
    """Tiny entries may compress well without harm (an empty __init__.py is 0 bytes)."""
    max_depth: int = 8
    max_name_chars: int = 255


@dataclass(frozen=True, slots=True)
class MaterialisedCode:
    """The folder written, with the files kept (relative POSIX paths) and those left out."""

    directory: Path
    files: tuple[str, ...]
    ignored: tuple[str, ...]
    sha256: str
    """`code_sha256` over the kept files: the same value `student_code_sha256(directory)` gives."""


def materialise_code(
    upload: bytes | Sequence[tuple[str, bytes]],
    destination: Path,
    *,
    limits: ArchiveLimits | None = None,
    field: str = "code",
) -> MaterialisedCode:
    """Check `upload` (zip bytes, or (filename, bytes) pairs) and write its .py files under `destination`.

    `destination` must not exist yet. Raises UnsafeUpload or InvalidUpload (both InputError) naming the entry
    and the limit; nothing is written then.
    """
    limits = limits or ArchiveLimits()
    files = (
        read_zip(upload, limits, field) if isinstance(upload, bytes | bytearray) else read_files(upload, limits, field)
    )
    kept, ignored = select_code(files, limits, field)
    write_files(kept, destination)
    return MaterialisedCode(destination, tuple(name for name, _ in kept), tuple(ignored), code_sha256(kept))


def read_zip(data: bytes, limits: ArchiveLimits, field: str = "code") -> list[tuple[str, bytes | None]]:
    """(name, bytes) per file entry; left-out names get None and are never inflated."""
    if len(data) > limits.max_upload_bytes:
        raise UnsafeUpload(f"the zip is {len(data)} bytes; the limit is {limits.max_upload_bytes} bytes", field=field)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as exc:
        raise InvalidUpload(f"the upload is not a readable zip file ({exc})", field=field) from None
    with archive:
        entries = archive.infolist()
        check_entries(entries, limits, field)
        return [(entry.filename, _inflate(archive, entry, limits, field)) for entry in entries if not entry.is_dir()]


def check_entries(entries: Sequence[zipfile.ZipInfo], limits: ArchiveLimits, field: str = "code") -> None:
    """All the checks that need no decompression; raises UnsafeUpload on the first entry that fails one."""
    if len(entries) > limits.max_entries:
        raise UnsafeUpload(f"the zip has {len(entries)} entries; the limit is {limits.max_entries}", field=field)
    total = sum(entry.file_size for entry in entries)
    if total > limits.max_total_bytes:
        raise UnsafeUpload(
            f"the zip unpacks to {total} bytes; the limit is {limits.max_total_bytes} bytes", field=field
        )
    seen: set[str] = set()
    for entry in entries:
        check_name(entry.filename, limits, field)
        _check_entry_type(entry, field)
        _check_ratio(entry, limits, field)
        if entry.filename in seen:
            raise UnsafeUpload(f"zip entry {entry.filename!r} appears twice", field=field)
        seen.add(entry.filename)


def check_name(name: str, limits: ArchiveLimits, field: str = "code") -> PurePosixPath:
    """The entry name as a safe relative path; UnsafeUpload for absolute, drive, `..` or odd names."""
    shown = repr(name[:200])
    if "\\" in name or ":" in name or "\x00" in name:
        raise UnsafeUpload(f"entry {shown}: backslashes, colons and NUL are not allowed in names", field=field)
    if name.startswith("/"):
        raise UnsafeUpload(f"entry {shown} has an absolute path", field=field)
    parts = [part for part in name.rstrip("/").split("/")]
    if any(part in ("..", ".") for part in parts):
        raise UnsafeUpload(f"entry {shown} has a '..' or '.' component (path traversal)", field=field)
    if len(parts) > limits.max_depth or len(name) > limits.max_name_chars:
        raise UnsafeUpload(f"entry {shown} is nested too deeply or its name is too long", field=field)
    for part in parts:
        if not SAFE_COMPONENT.match(part) and part not in SKIPPED_PARTS and not part.startswith("._"):
            raise UnsafeUpload(
                f"entry {shown}: name part {part!r} may only use letters, digits, spaces and _ . ( ) + , @ = -",
                field=field,
            )
    return PurePosixPath(*parts)


def _check_entry_type(entry: zipfile.ZipInfo, field: str) -> None:
    mode = entry.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise UnsafeUpload(f"entry {entry.filename!r} is a symbolic link; links are not allowed", field=field)
    # Zips made by Python and Windows tools carry permission bits without a file type: those are files.
    if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise UnsafeUpload(f"entry {entry.filename!r} is not a regular file (mode {oct(mode)})", field=field)
    if entry.flag_bits & 0x1:
        raise UnsafeUpload(f"entry {entry.filename!r} is encrypted; upload an unencrypted zip", field=field)
    if entry.is_dir() and entry.file_size:
        raise UnsafeUpload(f"folder entry {entry.filename!r} holds data", field=field)


def _check_ratio(entry: zipfile.ZipInfo, limits: ArchiveLimits, field: str) -> None:
    if entry.file_size <= limits.ratio_checked_above_bytes:
        return
    ratio = entry.file_size / max(entry.compress_size, 1)
    if ratio > limits.max_compression_ratio:
        raise UnsafeUpload(
            f"entry {entry.filename!r} expands {ratio:.0f}× ({entry.compress_size} → {entry.file_size} bytes); "
            f"the limit is {limits.max_compression_ratio:g}× (zip bomb protection)",
            field=field,
        )


def _inflate(archive: zipfile.ZipFile, entry: zipfile.ZipInfo, limits: ArchiveLimits, field: str) -> bytes | None:
    if not _is_kept(entry.filename):
        return None
    if entry.file_size > limits.max_file_bytes:
        raise UnsafeUpload(
            f"file {entry.filename!r} is {entry.file_size} bytes; the limit is {limits.max_file_bytes}", field=field
        )
    try:
        with archive.open(entry) as handle:
            # Read one byte past the limit: the declared size is the zip's claim, this is the fact.
            data = handle.read(limits.max_file_bytes + 1)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
        raise InvalidUpload(f"zip entry {entry.filename!r} cannot be read ({exc})", field=field) from None
    if len(data) > limits.max_file_bytes:
        raise UnsafeUpload(f"file {entry.filename!r} is over {limits.max_file_bytes} bytes", field=field)
    return data


def read_files(
    files: Sequence[tuple[str, bytes]], limits: ArchiveLimits, field: str = "code"
) -> list[tuple[str, bytes | None]]:
    """Uploaded (filename, bytes) pairs with the same name and size checks as zip entries."""
    if len(files) > limits.max_entries:
        raise UnsafeUpload(f"{len(files)} files uploaded; the limit is {limits.max_entries}", field=field)
    total = sum(len(data) for _, data in files)
    if total > limits.max_total_bytes:
        raise UnsafeUpload(f"the files hold {total} bytes; the limit is {limits.max_total_bytes} bytes", field=field)
    result: list[tuple[str, bytes | None]] = []
    for name, data in files:
        check_name(name, limits, field)
        if _is_kept(name) and len(data) > limits.max_file_bytes:
            raise UnsafeUpload(f"file {name!r} is {len(data)} bytes; the limit is {limits.max_file_bytes}", field=field)
        result.append((name, bytes(data) if _is_kept(name) else None))
    return result


def select_code(
    files: Iterable[tuple[str, bytes | None]], limits: ArchiveLimits, field: str = "code"
) -> tuple[list[tuple[str, bytes]], list[str]]:
    """(kept .py files with the shared top folder removed, names left out), sorted; refuses clashes and empties."""
    entries = [(name, data) for name, data in files if not _skipped(name)]
    left_out = sorted(name for name, data in files if data is None or _skipped(name))
    prefix = _shared_folder([name for name, _ in entries])
    kept: dict[str, bytes] = {}
    for name, data in entries:
        if data is None:
            continue
        relative = name[len(prefix) :]
        if relative.casefold() in {k.casefold() for k in kept}:
            raise UnsafeUpload(f"two files would be written as {relative!r}", field=field)
        kept[relative] = data
    if not kept:
        raise InvalidUpload("the upload holds no .py files (expected NetWork.py, ImageUtils.py, Model.py)", field=field)
    if len(kept) > limits.max_kept_files:
        raise UnsafeUpload(f"{len(kept)} .py files; the limit is {limits.max_kept_files}", field=field)
    return sorted(kept.items()), left_out


def _is_kept(name: str) -> bool:
    return name.endswith(KEPT_SUFFIXES) and not _skipped(name)


def _skipped(name: str) -> bool:
    parts = name.rstrip("/").split("/")
    # AppleDouble files (._NetWork.py) hold Finder metadata, not code; importing one would fail.
    return any(part in SKIPPED_PARTS or part.startswith("._") for part in parts)


def _shared_folder(names: Sequence[str]) -> str:
    """The folder prefix ("hw3/", "hw3/code/") every name shares, so it can be removed."""
    prefix = ""
    while names and all("/" in name[len(prefix) :] for name in names):
        firsts = {name[len(prefix) :].split("/", 1)[0] for name in names}
        if len(firsts) != 1:
            break
        prefix += firsts.pop() + "/"
    return prefix


def write_files(files: Sequence[tuple[str, bytes]], destination: Path) -> None:
    """Write into a new folder: folders 0755 and files 0644 so the sandbox user can read them, never following
    a link (exclusive create)."""
    destination.mkdir(mode=0o755)
    os.chmod(destination, 0o755)  # mkdir's mode is filtered by the umask
    for name, data in files:
        target = destination.joinpath(*name.split("/"))
        for folder in reversed(target.relative_to(destination).parents[:-1]):
            (destination / folder).mkdir(mode=0o755, exist_ok=True)
            os.chmod(destination / folder, 0o755)
        with open(target, "xb") as handle:
            handle.write(data)
        os.chmod(target, 0o644)


def code_sha256(files: Iterable[tuple[str, bytes]]) -> str:
    """sha256 over the sorted (path, content) pairs, each length-prefixed so no two sets hash alike."""
    digest = hashlib.sha256()
    for name, data in sorted(files):
        encoded = name.encode("utf-8")
        digest.update(len(encoded).to_bytes(8, "big") + encoded + len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


def read_code_dir(code_dir: Path, limits: ArchiveLimits | None = None, field: str = "code") -> list[tuple[str, bytes]]:
    """The .py files under `code_dir` as (relative path, bytes), checked like an upload; links are refused."""
    limits = limits or ArchiveLimits()
    found: list[tuple[str, bytes | None]] = []
    for root, folders, names in os.walk(code_dir, followlinks=False):
        folders[:] = sorted(f for f in folders if f not in SKIPPED_PARTS)
        for entry in [*folders, *names]:
            if os.path.islink(os.path.join(root, entry)):
                raise UnsafeUpload(f"{entry!r} in the code folder is a symbolic link", field=field)
        for name in sorted(names):
            relative = Path(root, name).relative_to(code_dir).as_posix()
            found.append((relative, _read_capped(Path(root, name), limits, field) if _is_kept(relative) else None))
        if len(found) > limits.max_entries:
            raise UnsafeUpload(f"the code folder has over {limits.max_entries} files", field=field)
    kept, _ = select_code([(check_name(n, limits, field).as_posix(), d) for n, d in found], limits, field)
    return kept


def _read_capped(path: Path, limits: ArchiveLimits, field: str) -> bytes:
    with open(path, "rb") as handle:
        data = handle.read(limits.max_file_bytes + 1)
    if len(data) > limits.max_file_bytes:
        raise UnsafeUpload(f"file {path.name!r} is over {limits.max_file_bytes} bytes", field=field)
    return data


FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def normalise_code_upload(files: Sequence[tuple[str, bytes]], *, field: str) -> bytes:
    """One zip, or several .py files, as a deterministic zip of the kept .py files (same code, same bytes).

    Raises InputError (UnsafeUpload / InvalidUpload) naming the entry and the limit that was broken.
    """
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
