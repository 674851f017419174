"""Reading a student's checkpoint file into a flat name → tensor dict, weights only, never running its code."""

from __future__ import annotations

import hashlib
import io
import json
import math
import pickle
import re
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
        size = file.stat().st_size
        if size > MAX_CHECKPOINT_BYTES:
            raise CheckpointRejected(
                f"checkpoint is {size} bytes; the limit is {MAX_CHECKPOINT_BYTES} bytes (a CIFAR ResNet is a few MB)"
            )
        data = file.read_bytes()
    except OSError as exc:  # the upload store lost the file: not the student's doing
        raise InfrastructureError(f"cannot read checkpoint file {file}: {exc.strerror or exc}") from exc
    return data, hashlib.sha256(data).hexdigest()


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> LoadedCheckpoint:
    """Load `path` onto `device`; CheckpointRejected with a student-facing message when it is unusable."""
    data, sha256 = read_file(path)
    return parse_checkpoint(data, sha256=sha256, device=torch.device(device))


def parse_checkpoint(data: bytes, *, sha256: str, device: torch.device) -> LoadedCheckpoint:
    file_format = sniff_format(data)
    raw = _load_safetensors(data, device) if file_format == "safetensors" else _load_torch(data, device)
    mapping, container = _unwrap(raw)
    tensors, ignored = _split_tensors(mapping)
    tensors, prefix = _strip_prefixes(tensors)
    return LoadedCheckpoint(tensors, sha256, len(data), file_format, container, prefix, ignored)


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
    raise CheckpointRejected(
        f"file is not a PyTorch checkpoint or a safetensors file (starts with {data[:8]!r}); {SAVE_HINT}"
    )


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
MAX_ELEMENTS = 200_000_000
"""Far above any CIFAR ResNet (ResNet-164 has 1.7 M parameters); a header claiming more is hostile or wrong."""


def read_safetensors_header(data: bytes) -> dict[str, torch.Tensor]:
    """The header's tensors as shape-only meta tensors, validated before any tensor data is touched."""
    if len(data) < 8:
        raise CheckpointRejected(f"safetensors file is truncated (no header); {SAVE_HINT}")
    length = int.from_bytes(data[:8], "little")
    if length > min(MAX_HEADER_BYTES, len(data) - 8):
        raise CheckpointRejected(f"safetensors header claims {length} bytes, more than the file holds; {SAVE_HINT}")
    try:
        header = json.loads(data[8 : 8 + length])
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointRejected(f"safetensors header is not valid JSON; {SAVE_HINT}") from exc
    if not isinstance(header, dict):
        raise CheckpointRejected(f"safetensors header is not a mapping of tensor names; {SAVE_HINT}")
    body = len(data) - 8 - length
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


def _load_torch(data: bytes, device: torch.device) -> Any:
    try:
        return torch.load(io.BytesIO(data), map_location=device, weights_only=True)
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
