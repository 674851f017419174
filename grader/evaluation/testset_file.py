"""The test images as one raw file that sandboxed runs are shown read-only, written once per machine and user.

A fixed place, not a temporary folder per process: Celery's pool processes end without running atexit
handlers, so per-process copies (30 MB each) would pile up. The folder must belong to this user and be
writable by nobody else, or another local user could swap the images the grader scores against.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import threading
from pathlib import Path

from grader.errors import InfrastructureError
from grader.evaluation.cifar import Cifar10TestSet

RECORD_BYTES = 3 * 32 * 32
_LOCK = threading.Lock()


def images_file(testset: Cifar10TestSet) -> Path:
    """The test images as raw uint8 records (3072 bytes each, in test-set order, no labels)."""
    folder = _private_folder(Path(tempfile.gettempdir()) / f"grader-testset-{os.getuid()}")
    path = folder / f"{testset.pixels_sha256[:32]}.u8"
    with _LOCK:
        if not _complete(path, len(testset)):
            partial = folder / f"{path.name}.{os.getpid()}.partial"
            with open(partial, "wb") as handle:
                handle.write(testset.images.reshape(len(testset), -1).numpy().tobytes())
            partial.chmod(0o644)
            os.replace(partial, path)  # atomic: a concurrent reader sees the old file or the whole new one
    return path


def _private_folder(folder: Path) -> Path:
    """`folder`, created 0711 (runs can traverse it, not list it), after checking nobody else controls it."""
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o711)
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise InfrastructureError(
            f"{folder} exists but is not a folder of this user writable only by it; remove it so the grader can "
            "keep the test images there"
        )
    return folder


def _complete(path: Path, count: int) -> bool:
    try:
        return path.stat().st_size == count * RECORD_BYTES
    except FileNotFoundError:
        return False
