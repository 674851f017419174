"""What every reader of a student's checkpoint shares, without torch: recognising the file, its limits, finding
the state dict inside its containers, and the refusals a student reads.

grader.evaluation.checkpoint loads a file with torch (in a sandboxed child); grader.evaluation.structure reads
only its names, dtypes and shapes without torch (the intake pre-check, in the API process). Both decide with
these functions, so a file is described the same way by both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

MAX_CHECKPOINT_BYTES = 512 * 1024 * 1024
CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "model_state", "weights")
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
"""Added by DataParallel/DistributedDataParallel and by torch.compile."""
SAVE_HINT = (
    "save the weights with torch.save(model.state_dict(), 'model-v1.pt') (or as .safetensors) and upload that file"
)
MAX_PICKLE_BYTES = 16 * 1024 * 1024
"""A torch.save file's pickle (names, shapes, storage keys: ~100 bytes a tensor); larger is not a state dict."""

T = TypeVar("T")


class CheckpointRejected(Exception):
    """The file is not a usable checkpoint; the message is written for the student."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def check_size(size: int, limit: int = MAX_CHECKPOINT_BYTES) -> None:
    if size > limit:
        raise CheckpointRejected(f"checkpoint is {size} bytes; the limit is {limit} bytes (a CIFAR ResNet is a few MB)")


def holds_python_objects(global_name: str | None) -> CheckpointRejected:
    """The refusal of a pickle that names a class or function outside a state dict's (`global_name`, if known)."""
    what = f" (it refers to {global_name})" if global_name else ""
    return CheckpointRejected(
        "checkpoint holds Python objects, not only tensors" + what + "; the grader loads weights only and "
        f"never runs code from a file, so a whole model saved with torch.save(model) cannot be used: {SAVE_HINT}"
    )


def unreadable(detail: str) -> CheckpointRejected:
    """The refusal of a file in a checkpoint format whose content is cut short or inconsistent."""
    return CheckpointRejected(
        f"checkpoint cannot be read, the file looks truncated or corrupted ({detail}); {SAVE_HINT}"
    )


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


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


def state_dict_of(raw: Any, tensor_type: type[T]) -> tuple[dict[str, T], list[str], str, list[str]]:
    """(tensors by prefix-stripped name, container keys walked, prefix stripped, non-tensor entries left out);
    tensors are the values of type `tensor_type` (torch.Tensor, or the pre-check's shape records)."""
    mapping, container = _unwrap(raw, tensor_type)
    tensors, ignored = _split_tensors(mapping, tensor_type)
    tensors, prefix = _strip_prefixes(tensors)
    return tensors, container, prefix, ignored


def _unwrap(obj: Any, tensor_type: type) -> tuple[Mapping[str, Any], list[str]]:
    """Walk into common containers ({'state_dict': ...}, {'model': ...}) until tensors appear."""
    path: list[str] = []
    for _ in range(4):
        if not isinstance(obj, Mapping):
            break
        if any(isinstance(value, tensor_type) for value in obj.values()):
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


def _split_tensors(mapping: Mapping[Any, Any], tensor_type: type[T]) -> tuple[dict[str, T], list[str]]:
    tensors: dict[str, T] = {}
    ignored: list[str] = []
    for key, value in mapping.items():
        if isinstance(value, tensor_type) and isinstance(key, str):
            tensors[key] = value
        else:
            ignored.append(str(key))
    return tensors, ignored


def _strip_prefixes(tensors: dict[str, T]) -> tuple[dict[str, T], str]:
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
