"""Code uploads: hostile zips are refused before extraction with messages naming the entry and the limit."""

from __future__ import annotations

import io
import stat
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import pytest

from grader.errors import InputError
from grader.evaluation.cache_key import student_code_sha256
from grader.sandbox import ArchiveLimits, InvalidUpload, UnsafeUpload, materialise_code
from tests.conftest import REPO_ROOT

NETWORK = b"class ResNet:\n    pass\n"


def make_zip(*entries: tuple[str, bytes] | zipfile.ZipInfo, data: bytes = b"") -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about the duplicate names tested here
        for entry in entries:
            if isinstance(entry, zipfile.ZipInfo):
                archive.writestr(entry, data)
            else:
                archive.writestr(entry[0], entry[1])
    return buffer.getvalue()


def symlink_entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def test_a_starter_zip_in_a_folder_is_flattened_and_only_python_kept(tmp_path: Path) -> None:
    upload = make_zip(
        ("hw3/code/NetWork.py", NETWORK),
        ("hw3/code/ImageUtils.py", b"def parse_record(r, t): return r\n"),
        ("hw3/code/utils/helpers.py", b"X = 1\n"),
        ("hw3/code/report.md", b"# report"),
        ("hw3/code/model-10.ckpt", b"\x80weights"),
        ("__MACOSX/hw3/code/._NetWork.py", b"\x00\x05\x16\x07"),
        ("hw3/code/__pycache__/NetWork.cpython-311.pyc", b"\x00"),
    )
    code = materialise_code(upload, tmp_path / "code")
    assert code.files == ("ImageUtils.py", "NetWork.py", "utils/helpers.py")
    assert (tmp_path / "code" / "NetWork.py").read_bytes() == NETWORK
    assert "hw3/code/report.md" in code.ignored and "hw3/code/model-10.ckpt" in code.ignored
    assert sorted(p.name for p in (tmp_path / "code").rglob("*") if p.is_file()) == [
        "ImageUtils.py",
        "NetWork.py",
        "helpers.py",
    ]
    assert stat.S_IMODE((tmp_path / "code" / "NetWork.py").stat().st_mode) == 0o644
    assert code.sha256 == student_code_sha256(tmp_path / "code")


def test_a_list_of_files_gives_the_same_folder_and_hash_as_a_zip(tmp_path: Path) -> None:
    files = [("NetWork.py", NETWORK), ("ImageUtils.py", b"pass\n")]
    from_list = materialise_code(files, tmp_path / "a")
    from_zip = materialise_code(make_zip(*files), tmp_path / "b")
    assert from_list.files == from_zip.files and from_list.sha256 == from_zip.sha256


def test_the_code_hash_changes_with_any_byte(tmp_path: Path) -> None:
    first = materialise_code([("NetWork.py", NETWORK)], tmp_path / "a").sha256
    second = materialise_code([("NetWork.py", NETWORK + b"# tweak\n")], tmp_path / "b").sha256
    assert first != second


BOMB = ("bomb.py", b"0" * (4 * 1024 * 1024))


@pytest.mark.parametrize(
    ("upload", "limits", "error", "message"),
    [
        (make_zip(("../evil.py", b"x")), None, UnsafeUpload, r"entry '\.\./evil\.py' has a '\.\.' or '\.' component"),
        (make_zip(("hw3/../../evil.py", b"x")), None, UnsafeUpload, r"'hw3/\.\./\.\./evil\.py'.*traversal"),
        (make_zip(("/etc/cron.d/evil.py", b"x")), None, UnsafeUpload, r"entry '/etc/cron\.d/evil\.py' has an absolute"),
        (make_zip(("C:\\evil.py", b"x")), None, UnsafeUpload, r"backslashes, colons"),
        (
            make_zip(symlink_entry("NetWork.py"), data=b"/etc/passwd"),
            None,
            UnsafeUpload,
            r"'NetWork\.py' is a symbolic",
        ),
        (make_zip(BOMB), None, UnsafeUpload, r"entry 'bomb\.py' expands \d+× .*the limit is 100× \(zip bomb"),
        (
            make_zip(*((f"m{i}.py", b"x") for i in range(12))),
            ArchiveLimits(max_entries=10),
            UnsafeUpload,
            r"the zip has 12 entries; the limit is 10",
        ),
        (
            make_zip(("NetWork.py", b"x" * 5000)),
            ArchiveLimits(max_total_bytes=4000),
            UnsafeUpload,
            r"unpacks to 5000 bytes; the limit is 4000",
        ),
        (
            make_zip(("NetWork.py", b"x" * 5000)),
            ArchiveLimits(max_file_bytes=4000),
            UnsafeUpload,
            r"file 'NetWork\.py' is 5000 bytes; the limit is 4000",
        ),
        (b"x" * 5000, ArchiveLimits(max_upload_bytes=4000), UnsafeUpload, r"the zip is 5000 bytes; the limit is 4000"),
        (make_zip(("NetWork.py", b"x"), ("NetWork.py", b"y")), None, UnsafeUpload, r"'NetWork\.py' appears twice"),
        (make_zip(("nëtwork.py", b"x")), None, UnsafeUpload, r"name part 'nëtwork\.py' may only use"),
        (b"not a zip at all", None, InvalidUpload, r"not a readable zip file"),
        (make_zip(("README.md", b"# hi")), None, InvalidUpload, r"holds no \.py files"),
        ([("../NetWork.py", NETWORK)], None, UnsafeUpload, r"traversal"),
        ([("a.py", b"x"), ("A.py", b"y")], None, UnsafeUpload, r"two files would be written as 'A\.py'"),
    ],
    ids=[
        "traversal",
        "nested-traversal",
        "absolute",
        "windows-drive",
        "symlink",
        "bomb-ratio",
        "too-many-entries",
        "too-large-total",
        "too-large-file",
        "upload-too-large",
        "duplicate",
        "non-ascii-name",
        "not-a-zip",
        "no-python",
        "list-traversal",
        "case-clash",
    ],
)
def test_hostile_uploads_are_refused_before_anything_is_written(
    tmp_path: Path, upload: bytes | list[tuple[str, bytes]], limits: ArchiveLimits | None, error: type, message: str
) -> None:
    with pytest.raises(error, match=message) as caught:
        materialise_code(upload, tmp_path / "code", limits=limits, field="code_zip")
    assert isinstance(caught.value, InputError) and caught.value.field == "code_zip"
    assert not (tmp_path / "code").exists()


def test_a_folder_with_a_symlink_is_refused_when_read_back(tmp_path: Path) -> None:
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "NetWork.py").write_bytes(NETWORK)
    (folder / "ImageUtils.py").symlink_to("/etc/passwd")
    with pytest.raises(UnsafeUpload, match=r"'ImageUtils\.py' in the code folder is a symbolic link"):
        student_code_sha256(folder)


def test_importing_the_sandbox_package_imports_no_torch_or_service_framework() -> None:
    code = "import sys, grader.sandbox; print(sorted({'torch', 'fastapi', 'sqlalchemy', 'celery'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
