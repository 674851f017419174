"""The CIFAR-10 test set: read from the python-batch pickle with inert stand-ins, checked, cached per process.

The pickle names numpy functions to rebuild its array. The reader never calls them: `find_class` maps the
few allowed names to stand-ins that only record their arguments, and the array is then built with
`numpy.frombuffer` after its dtype, shape and size are checked. Any other global is refused.
"""

from __future__ import annotations

import hashlib
import pickle
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from grader.errors import InfrastructureError

BATCHES_FOLDER = "cifar-10-batches-py"
TEST_IMAGES = 10_000
ROW_BYTES = 3 * 32 * 32
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
TEST_PIXELS_SHA256 = "177777c33ba79825320efa646ad04a94bdc3c80e4ebe3bd21724f8cdfd4b9d56"
"""sha256 of the official test_batch's `data.tobytes()`: a copy with other pixels would grade wrongly."""
TEST_LABELS_SHA256 = "cec8a24a1e92aa2ecaa0bbd3dbfa86bf6cd8759fbd209a832824c8cf0afca9d5"
"""sha256 of the 10,000 labels as one byte each, in test-set order (computed from the PROVENANCE-verified copy)."""


@dataclass(frozen=True, slots=True)
class Cifar10TestSet:
    """The test set on one device: images uint8 [N, 3, 32, 32] (RGB), labels int64 [N]."""

    images: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]
    pixels_sha256: str
    source: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])


_LOCK = threading.Lock()
_HOST: dict[str, Cifar10TestSet] = {}
_ON_DEVICE: dict[tuple[str, str], Cifar10TestSet] = {}


def load_cifar10_test(root: str | Path, device: torch.device | str = "cpu") -> Cifar10TestSet:
    """The test set under `root` (the folder holding cifar-10-batches-py/) on `device`, read once per process."""
    batch_path = test_batch_path(root)
    target = torch.device(device)
    key = (str(batch_path), str(target))
    with _LOCK:
        if key not in _ON_DEVICE:
            if str(batch_path) not in _HOST:
                _HOST[str(batch_path)] = read_test_batch(batch_path)
            _ON_DEVICE[key] = _to_device(_HOST[str(batch_path)], target)
        return _ON_DEVICE[key]


def test_batch_path(root: str | Path) -> Path:
    """`root/cifar-10-batches-py/test_batch` (or `root/test_batch`); InfrastructureError naming it if absent."""
    base = Path(root)
    for candidate in (base / BATCHES_FOLDER / "test_batch", base / "test_batch"):
        if candidate.is_file():
            return candidate.resolve()
    raise InfrastructureError(
        f"CIFAR-10 test set not found: expected {base / BATCHES_FOLDER / 'test_batch'} "
        "(GRADER_CIFAR10_ROOT must be the folder holding cifar-10-batches-py/)"
    )


def read_python_batch(path: Path, what: str = "batch") -> tuple[np.ndarray, list[int]]:
    """One python-batch file (test_batch, data_batch_N) as (uint8 rows [N, 3072], labels), unverified."""
    try:
        with path.open("rb") as handle:
            batch = _BatchUnpickler(handle).load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as exc:
        raise InfrastructureError(f"cannot read the CIFAR-10 {what} {path}: {exc}") from exc
    return _images_and_labels(batch, path)


def read_test_batch(path: Path) -> Cifar10TestSet:
    """Parse and verify one python-batch file on the CPU."""
    images, labels = read_python_batch(path, "test batch")
    pixels_sha256 = hashlib.sha256(images.tobytes()).hexdigest()
    _verify(path, pixels_sha256, labels)
    return Cifar10TestSet(
        images=torch.from_numpy(images.reshape(-1, 3, 32, 32)),
        labels=torch.tensor(labels, dtype=torch.int64),
        class_names=_class_names(path.parent / "batches.meta"),
        pixels_sha256=pixels_sha256,
        source=str(path),
    )


def _to_device(host: Cifar10TestSet, device: torch.device) -> Cifar10TestSet:
    if device.type == "cpu":
        return host
    return Cifar10TestSet(
        images=host.images.to(device),
        labels=host.labels.to(device),
        class_names=host.class_names,
        pixels_sha256=host.pixels_sha256,
        source=host.source,
    )


def _images_and_labels(batch: Any, path: Path) -> tuple[np.ndarray, list[int]]:
    if not isinstance(batch, dict):
        raise InfrastructureError(f"{path}: expected a dict, found {type(batch).__name__}")
    entries = {_text(key): value for key, value in batch.items()}
    if not isinstance(entries.get("data"), _ArrayRecord) or not isinstance(entries.get("labels"), list):
        raise InfrastructureError(f"{path}: expected 'data' (a uint8 array) and 'labels' (a list)")
    images = entries["data"].to_uint8_rows(path)
    labels = entries["labels"]
    if len(labels) != images.shape[0] or not all(type(x) is int and 0 <= x < 10 for x in labels):
        raise InfrastructureError(f"{path}: expected {images.shape[0]} integer labels in 0..9")
    return images, labels


def _verify(path: Path, pixels_sha256: str, labels: list[int]) -> None:
    if pixels_sha256 != TEST_PIXELS_SHA256:
        raise InfrastructureError(
            f"{path} is not the CIFAR-10 test set: pixel sha256 {pixels_sha256}, expected {TEST_PIXELS_SHA256}"
        )
    labels_sha256 = hashlib.sha256(bytes(labels)).hexdigest()
    if labels_sha256 != TEST_LABELS_SHA256:
        raise InfrastructureError(
            f"{path}: labels differ from the CIFAR-10 test labels (sha256 {labels_sha256}, "
            f"expected {TEST_LABELS_SHA256})"
        )


def _class_names(meta_path: Path) -> tuple[str, ...]:
    """Names from batches.meta when present and sane; the official order otherwise."""
    try:
        with meta_path.open("rb") as handle:
            meta = _BatchUnpickler(handle).load()
        names = tuple(_text(name) for name in {_text(k): v for k, v in meta.items()}["label_names"])
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, KeyError, AttributeError):
        return CLASS_NAMES
    return names if len(names) == 10 else CLASS_NAMES


def _text(value: Any) -> str:
    return value.decode("latin1") if isinstance(value, bytes) else str(value)


class _ArrayRecord:
    """What the pickle says about an ndarray: filled in by `_reconstruct`/`__setstate__` or `_frombuffer`."""

    def __init__(self) -> None:
        self.shape: Any = None
        self.dtype: Any = None
        self.fortran: Any = False
        self.raw: Any = None

    def __setstate__(self, state: Any) -> None:
        # numpy's ndarray state: (version, shape, dtype, is_fortran, raw bytes).
        if not isinstance(state, tuple) or len(state) != 5:
            raise pickle.UnpicklingError("unexpected ndarray state in the pickle")
        _, self.shape, self.dtype, self.fortran, self.raw = state

    def to_uint8_rows(self, path: Path) -> np.ndarray:
        raw = self.raw.encode("latin1") if isinstance(self.raw, str) else self.raw
        dtype_name = self.dtype.name if isinstance(self.dtype, _DtypeRecord) else None
        shape = tuple(self.shape) if isinstance(self.shape, tuple | list) else ()
        if dtype_name != "u1" or len(shape) != 2 or shape[1] != ROW_BYTES or self.fortran:
            raise InfrastructureError(f"{path}: 'data' must be uint8 [N, 3072] in C order, got {shape} {dtype_name}")
        if not isinstance(raw, bytes | bytearray) or len(raw) != shape[0] * ROW_BYTES:
            raise InfrastructureError(f"{path}: 'data' holds the wrong number of bytes for shape {shape}")
        return np.frombuffer(raw, dtype=np.uint8).reshape(shape).copy()


class _DtypeRecord:
    """Stand-in for numpy.dtype: keeps the type code only (e.g. 'u1')."""

    def __init__(self, name: Any, align: Any = 0, copy: Any = 0) -> None:
        self.name = _text(name).lstrip("|<>=")

    def __setstate__(self, state: Any) -> None:
        """Byte order and field information are irrelevant for single-byte pixels."""


def _reconstruct(cls: Any, shape: Any, code: Any) -> _ArrayRecord:
    return _ArrayRecord()


def _frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> _ArrayRecord:
    # Pickle protocol 5 form of an ndarray (numpy >= 1.16 writing with protocol 5).
    record = _ArrayRecord()
    record.__setstate__((1, tuple(shape), dtype, order == "F", bytes(buffer)))
    return record


def _encode(text: Any, encoding: Any = "latin1") -> bytes:
    # Python 3 writes bytes in protocol 2 as _codecs.encode(str, "latin1").
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError("only latin1 text may be encoded in a CIFAR batch")
    return text.encode("latin1")


_ALLOWED_GLOBALS: dict[tuple[str, str], Callable[..., Any] | type] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): _ArrayRecord,
    ("numpy", "dtype"): _DtypeRecord,
    ("_codecs", "encode"): _encode,
}


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler whose only globals are inert stand-ins; keys and Python-2 strings come back as bytes."""

    def __init__(self, handle: Any) -> None:
        super().__init__(handle, encoding="bytes")

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch") from None
