"""Reading a student's checkpoint file into a flat name → tensor dict, weights only, never running its code."""

from __future__ import annotations

import hashlib
import io
import json
import math
import pickle
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from grader.errors import InfrastructureError

MAX_CHECKPOINT_BYTES = 512 * 1024 * 1024
CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "model_state", "weights")
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
"""Added by DataParallel/DistributedDataParallel and by torch.compile."""
CPU = torch.device("cpu")
SAVE_HINT = (
    "save the weights with torch.save(model.state_dict(), 'model-v1.pt') (or as .safetensors) and upload that file"
)


class CheckpointRejected(Exception):
    """The file is not a usable checkpoint; the message is written for the student."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(slots=True)
class LoadedCheckpoint:
    """A checkpoint's tensors by (prefix-stripped) name, and how they were found."""

    tensors: dict[str, torch.Tensor]
    sha256: str
    size_bytes: int
    file_format: str
    """"safetensors", "torch-zip" (torch.save since 1.6) or "torch-legacy"."""
    container: list[str] = field(default_factory=list)
    """Keys walked to reach the state dict, e.g. ["state_dict"]."""
    stripped_prefix: str = ""
    ignored_entries: list[str] = field(default_factory=list)
    """Non-tensor values next to the tensors (e.g. an epoch number), left out."""

    def describe(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "bytes": self.size_bytes,
            "format": self.file_format,
            "container": self.container,
            "stripped_prefix": self.stripped_prefix,
            "tensors": len(self.tensors),
            "ignored_entries": self.ignored_entries[:20],
        }


def read_file(path: str | Path) -> tuple[bytes, str]:
    """The file's bytes and sha256, read once so the hash and the load see the same content."""
    file = Path(path)
    try:
        check_size(file.stat().st_size)
        data = file.read_bytes()
    except OSError as exc:  # the upload store lost the file: not the student's doing
        raise InfrastructureError(f"cannot read checkpoint file {file}: {exc.strerror or exc}") from exc
    return data, hashlib.sha256(data).hexdigest()


def check_size(size: int, limit: int = MAX_CHECKPOINT_BYTES) -> None:
    if size > limit:
        raise CheckpointRejected(f"checkpoint is {size} bytes; the limit is {limit} bytes (a CIFAR ResNet is a few MB)")


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> LoadedCheckpoint:
    """Load `path` onto `device`; CheckpointRejected with a student-facing message when it is unusable."""
    data, sha256 = read_file(path)
    return parse_checkpoint(data, sha256=sha256, device=torch.device(device))


def parse_checkpoint(data: bytes, *, sha256: str, device: torch.device) -> LoadedCheckpoint:
    file_format = sniff_format(data)
    raw = _load_safetensors(data, device) if file_format == "safetensors" else _load_torch(data, device)
    tensors, container, prefix, ignored = state_dict_of(raw)
    return LoadedCheckpoint(tensors, sha256, len(data), file_format, container, prefix, ignored)


def state_dict_of(raw: Any) -> tuple[dict[str, torch.Tensor], list[str], str, list[str]]:
    """(tensors by prefix-stripped name, container keys walked, prefix stripped, non-tensor entries left out)."""
    mapping, container = _unwrap(raw)
    tensors, ignored = _split_tensors(mapping)
    tensors, prefix = _strip_prefixes(tensors)
    return tensors, container, prefix, ignored


def read_structure(path: Path, limit: int = MAX_CHECKPOINT_BYTES) -> dict[str, torch.Tensor]:
    """The tensors the evaluator would map, by name, for checking names, shapes and dtypes without the values
    (a cheap check at intake; the evaluation itself loads the file in a sandboxed child). Reads as little as
    the format allows: a safetensors file's header only (meta tensors); a torch.save zip's directory, then the
    file weights-only and memory-mapped (values stay on disk); a legacy torch file, which cannot be mapped,
    whole and weights-only (at most `limit` bytes). CheckpointRejected says why the file is unusable."""
    try:
        size = path.stat().st_size
        check_size(size, limit)
        with path.open("rb") as handle:
            file_format = sniff_format(handle.read(SNIFF_BYTES))
            if file_format == "safetensors":
                handle.seek(0)
                length = int.from_bytes(handle.read(8), "little")
                handle.seek(0)
                header = handle.read(8 + min(length, MAX_HEADER_BYTES))
                return state_dict_of(read_safetensors_header(header, size=size))[0]
        if file_format == "torch-legacy":
            return state_dict_of(_load_torch(path.read_bytes(), CPU))[0]
        _check_torch_zip(path)
        try:
            raw = _load_torch(path, CPU, mmap=True)
        except CheckpointRejected:  # a zip torch cannot map (e.g. unaligned records): the plain load decides
            raw = _load_torch(path.read_bytes(), CPU)
        return state_dict_of(raw)[0]
    except OSError as exc:  # the file went away while it was checked: not the student's doing
        raise InfrastructureError(f"cannot read checkpoint file {path}: {exc.strerror or exc}") from exc


def _check_torch_zip(path: Path) -> None:
    """The zip directory (no data read): readable, written by torch.save, and its pickle no larger than a
    state dict's, so a hostile one never reaches the unpickler."""
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as exc:
        raise CheckpointRejected(
            f"checkpoint is a damaged or truncated zip archive, the format torch.save writes ({exc}); "
            f"upload the complete file again, or {SAVE_HINT}"
        ) from None
    pickles = [entry for entry in entries if entry.filename.rsplit("/", 1)[-1] == "data.pkl"]
    if len(pickles) != 1:
        names = ", ".join(entry.filename for entry in entries[:5]) or "nothing"
        raise CheckpointRejected(
            f"file is a zip archive but not a torch.save checkpoint (it holds {names}); if you zipped your "
            f"checkpoint, upload the .pt file itself; {SAVE_HINT}"
        )
    if pickles[0].file_size > MAX_PICKLE_BYTES:
        raise CheckpointRejected(
            f"checkpoint's object structure (data.pkl) is {pickles[0].file_size} bytes; a state dict's is a few KB: "
            f"{SAVE_HINT}"
        )


SNIFF_BYTES = 512
"""What `sniff_format` looks at; callers holding a file need read no more to call it."""


def sniff_format(data: bytes) -> str:
    """Which reader applies, from the first bytes (the file name is only a hint students get wrong)."""
    if not data:
        raise CheckpointRejected(f"checkpoint file is empty; {SAVE_HINT}")
    if data[:4] == b"PK\x03\x04":
        return "torch-zip"
    if data[:1] == b"\x80":
        return "torch-legacy"
    if data[8:9] == b"{":  # an 8-byte header length, then the JSON header; safetensors checks the rest
        return "safetensors"
    what = _foreign_format(data)
    raise CheckpointRejected(
        f"file is not a PyTorch checkpoint or a safetensors file{f': it is {what}' if what else ''} "
        f"(starts with {data[:8]!r}); {SAVE_HINT}"
    )


FOREIGN_FORMATS = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\x89HDF", "an HDF5 file (Keras or TensorFlow weights?)"),
    (b"\x93NUMPY", "a NumPy array (.npy)"),
    (b"version https://git-lfs", "a Git LFS pointer, not the file itself (run git lfs pull)"),
)
"""Files students upload by mistake, named so the message says what they sent."""


def _foreign_format(data: bytes) -> str | None:
    found = next((what for magic, what in FOREIGN_FORMATS if data.startswith(magic)), None)
    if found is None and all(32 <= byte < 127 or byte in b"\t\r\n" for byte in data[:SNIFF_BYTES]):
        return "a text file"
    return found


SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "U8": torch.uint8,
}
MAX_HEADER_BYTES = 16 * 1024 * 1024
MAX_PICKLE_BYTES = 16 * 1024 * 1024
"""A torch.save zip's data.pkl (names, shapes, storage keys: ~100 bytes a tensor); larger is not a state dict."""
MAX_ELEMENTS = 200_000_000
"""Far above any CIFAR ResNet (ResNet-164 has 1.7 M parameters); a header claiming more is hostile or wrong."""


def read_safetensors_header(data: bytes, *, size: int | None = None) -> dict[str, torch.Tensor]:
    """The header's tensors as shape-only meta tensors, validated before any tensor data is touched. `data` may
    be the file's start only (the length and the header) when `size` gives the whole file's size."""
    size = len(data) if size is None else size
    if len(data) < 8:
        raise CheckpointRejected(f"safetensors file is truncated (no header); {SAVE_HINT}")
    length = int.from_bytes(data[:8], "little")
    if length > min(MAX_HEADER_BYTES, size - 8, len(data) - 8):
        raise CheckpointRejected(f"safetensors header claims {length} bytes, more than the file holds; {SAVE_HINT}")
    try:
        header = json.loads(data[8 : 8 + length])
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointRejected(f"safetensors header is not valid JSON; {SAVE_HINT}") from exc
    if not isinstance(header, dict):
        raise CheckpointRejected(f"safetensors header is not a mapping of tensor names; {SAVE_HINT}")
    body = size - 8 - length
    meta: dict[str, torch.Tensor] = {}
    elements = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype, shape = _header_entry(name, entry, body)
        elements += math.prod(shape)
        if elements > MAX_ELEMENTS:
            raise CheckpointRejected(f"safetensors header declares more than {MAX_ELEMENTS} values in all")
        meta[name] = torch.empty(shape, dtype=dtype, device="meta")
    return meta


def _header_entry(name: str, entry: Any, body: int) -> tuple[torch.dtype, list[int]]:
    if not isinstance(entry, dict) or entry.get("dtype") not in SAFETENSORS_DTYPES:
        raise CheckpointRejected(f"safetensors entry {name!r} has no supported dtype ({sorted(SAFETENSORS_DTYPES)})")
    shape, offsets = entry.get("shape"), entry.get("data_offsets")
    if not isinstance(shape, list) or len(shape) > 8 or not all(isinstance(n, int) and 0 <= n < 2**31 for n in shape):
        raise CheckpointRejected(f"safetensors entry {name!r} has an invalid shape {shape!r}")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(n, int) for n in offsets)
        or not 0 <= offsets[0] <= offsets[1] <= body
    ):
        raise CheckpointRejected(f"safetensors entry {name!r} points outside the file ({offsets!r})")
    dtype = SAFETENSORS_DTYPES[entry["dtype"]]
    if offsets[1] - offsets[0] != math.prod(shape) * dtype.itemsize:
        raise CheckpointRejected(f"safetensors entry {name!r}: its byte range does not match shape {shape}")
    return dtype, shape


def _load_torch(source: bytes | Path, device: torch.device, *, mmap: bool = False) -> Any:
    try:
        file = io.BytesIO(source) if isinstance(source, bytes) else source
        return torch.load(file, map_location=device, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        what = f" (it refers to {found.group(1)})" if found else ""
        raise CheckpointRejected(
            "checkpoint holds Python objects, not only tensors" + what + "; the grader loads weights only and "
            f"never runs code from a file, so a whole model saved with torch.save(model) cannot be used: {SAVE_HINT}"
        ) from exc
    except Exception as exc:  # torch raises many types (RuntimeError, EOFError, KeyError...) for broken files
        raise CheckpointRejected(
            f"checkpoint cannot be read, the file looks truncated or corrupted ({_first_line(exc)}); {SAVE_HINT}"
        ) from exc


def _load_safetensors(data: bytes, device: torch.device) -> dict[str, torch.Tensor]:
    from safetensors.torch import load as load_safetensors

    try:
        tensors = load_safetensors(data)
    except Exception as exc:  # SafetensorError and friends: a malformed header or truncated data
        raise CheckpointRejected(f"safetensors file cannot be read ({_first_line(exc)}); {SAVE_HINT}") from exc
    return {name: tensor.to(device) for name, tensor in tensors.items()}


def _unwrap(obj: Any) -> tuple[Mapping[str, Any], list[str]]:
    """Walk into common containers ({'state_dict': ...}, {'model': ...}) until tensors appear."""
    path: list[str] = []
    for _ in range(4):
        if not isinstance(obj, Mapping):
            break
        if any(isinstance(value, torch.Tensor) for value in obj.values()):
            return obj, path
        inner = _container_key(obj)
        if inner is None:
            break
        path.append(inner)
        obj = obj[inner]
    kind = type(obj).__name__
    raise CheckpointRejected(f"no state_dict found in the checkpoint (found a {kind} without tensors); {SAVE_HINT}")


def _container_key(obj: Mapping[Any, Any]) -> str | None:
    for key in CONTAINER_KEYS:
        if isinstance(obj.get(key), Mapping):
            return key
    nested = [key for key, value in obj.items() if isinstance(value, Mapping)]
    return nested[0] if len(nested) == 1 and isinstance(nested[0], str) else None


def _split_tensors(mapping: Mapping[Any, Any]) -> tuple[dict[str, torch.Tensor], list[str]]:
    tensors: dict[str, torch.Tensor] = {}
    ignored: list[str] = []
    for key, value in mapping.items():
        if isinstance(value, torch.Tensor) and isinstance(key, str):
            tensors[key] = value.detach()
        else:
            ignored.append(str(key))
    return tensors, ignored


def _strip_prefixes(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    """Drop wrapper prefixes and any first component every name shares ('model.', 'net.')."""
    stripped = ""
    while tensors:
        first = {name.split(".", 1)[0] for name in tensors}
        shared = next(iter(first)) + "." if len(first) == 1 else None
        wrapper = next((p for p in WRAPPER_PREFIXES if all(n.startswith(p) for n in tensors)), None)
        prefix = wrapper or (shared if shared and all("." in n for n in tensors) else None)
        if prefix is None:
            break
        tensors = {name[len(prefix) :]: tensor for name, tensor in tensors.items()}
        stripped += prefix
    return tensors, stripped


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__
