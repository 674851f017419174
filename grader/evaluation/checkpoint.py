"""Reading a student's checkpoint file into a flat name → tensor dict, weights only, never running its code."""

from __future__ import annotations

import hashlib
import io
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from grader.errors import InfrastructureError
from grader.evaluation import structure
from grader.evaluation.checkpoint_format import (
    SAVE_HINT,
    CheckpointRejected,
    check_size,
    first_line,
    holds_python_objects,
    sniff_format,
    state_dict_of,
    unreadable,
)


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


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> LoadedCheckpoint:
    """Load `path` onto `device`; CheckpointRejected with a student-facing message when it is unusable."""
    data, sha256 = read_file(path)
    return parse_checkpoint(data, sha256=sha256, device=torch.device(device))


def parse_checkpoint(data: bytes, *, sha256: str, device: torch.device) -> LoadedCheckpoint:
    file_format = sniff_format(data)
    raw = _load_safetensors(data, device) if file_format == "safetensors" else _load_torch(data, device)
    tensors, container, prefix, ignored = state_dict_of(raw, torch.Tensor)
    tensors = {name: tensor.detach() for name, tensor in tensors.items()}
    return LoadedCheckpoint(tensors, sha256, len(data), file_format, container, prefix, ignored)


def read_safetensors_header(data: bytes, *, size: int | None = None) -> dict[str, torch.Tensor]:
    """The header's tensors as shape-only meta tensors (grader.evaluation.structure validates the header)."""
    return {
        name: torch.empty(info.shape, dtype=getattr(torch, info.dtype.removeprefix("torch.")), device="meta")
        for name, info in structure.read_safetensors_header(data, size=size).items()
    }


def _load_torch(data: bytes, device: torch.device) -> Any:
    try:
        return torch.load(io.BytesIO(data), map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        raise holds_python_objects(found.group(1) if found else None) from exc
    except Exception as exc:  # torch raises many types (RuntimeError, EOFError, KeyError...) for broken files
        raise unreadable(first_line(exc)) from exc


def _load_safetensors(data: bytes, device: torch.device) -> dict[str, torch.Tensor]:
    from safetensors.torch import load as load_safetensors

    try:
        tensors = load_safetensors(data)
    except Exception as exc:  # SafetensorError and friends: a malformed header or truncated data
        raise CheckpointRejected(f"safetensors file cannot be read ({first_line(exc)}); {SAVE_HINT}") from exc
    return {name: tensor.to(device) for name, tensor in tensors.items()}
