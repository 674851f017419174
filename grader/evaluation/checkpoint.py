"""Reading a student's checkpoint file into a flat name → tensor dict, weights only, never running its code."""

from __future__ import annotations

import hashlib
import io
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
