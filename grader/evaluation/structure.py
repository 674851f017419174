"""A checkpoint's tensor names, dtypes and shapes, read without torch and without reading a tensor's values.

This is what the intake pre-check (grader.evaluation.precheck) reads in the API process, where nothing from an
upload may run and no number in it may size an allocation:
- safetensors: the JSON header only, validated entry by entry;
- torch.save files, the zip format (torch >= 1.6) and the legacy one before it: their pickles only, through
  `StructureUnpickler`. It accepts the opcodes torch's weights-only loader accepts (protocol 2, no more),
  runs each with the Python implementation of pickle (the C one sizes its memo from an index in the file, so
  ten bytes can make it allocate gigabytes), resolves globals from an allow-list of what a state dict
  refers to, to this module's inert stand-ins (never importing anything), and turns storages into records of
  their dtype and length. The work is bounded: the pickle's size, its opcode count and the number of tensors.
  Each tensor is checked against its storage, and each storage against the bytes the file holds for it.

The evaluator still loads the file with torch in a sandboxed child, and may refuse what passes here (NaN weights,
data that does not decode). A refusal here is one it would make too, except for the limits on work above and what
torch reads but no CIFAR checkpoint holds (see ALLOWED_GLOBALS and DICT_KEY_TYPES).
"""

from __future__ import annotations

import _compat_pickle
import io
import json
import math
import pickle
import pickletools
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from grader.errors import InfrastructureError
from grader.evaluation.checkpoint_format import (
    MAX_CHECKPOINT_BYTES,
    MAX_PICKLE_BYTES,
    SAVE_HINT,
    SNIFF_BYTES,
    CheckpointRejected,
    check_size,
    first_line,
    holds_python_objects,
    sniff_format,
    state_dict_of,
    unreadable,
)

ITEMSIZES = {
    "torch.float64": 8,
    "torch.float32": 4,
    "torch.float16": 2,
    "torch.bfloat16": 2,
    "torch.int64": 8,
    "torch.int32": 4,
    "torch.int16": 2,
    "torch.int8": 1,
    "torch.uint8": 1,
    "torch.bool": 1,
    "torch.complex64": 8,
    "torch.complex128": 16,
}
"""Bytes per element of each dtype a checkpoint may hold, named as torch prints the dtype."""
FLOATING_DTYPES = frozenset({"torch.float64", "torch.float32", "torch.float16", "torch.bfloat16"})
SAFETENSORS_DTYPES = {
    "F64": "torch.float64",
    "F32": "torch.float32",
    "F16": "torch.float16",
    "BF16": "torch.bfloat16",
    "I64": "torch.int64",
    "I32": "torch.int32",
    "U8": "torch.uint8",
}
STORAGE_DTYPES = {
    "DoubleStorage": "torch.float64",
    "FloatStorage": "torch.float32",
    "HalfStorage": "torch.float16",
    "BFloat16Storage": "torch.bfloat16",
    "LongStorage": "torch.int64",
    "IntStorage": "torch.int32",
    "ShortStorage": "torch.int16",
    "CharStorage": "torch.int8",
    "ByteStorage": "torch.uint8",
    "BoolStorage": "torch.bool",
    "ComplexFloatStorage": "torch.complex64",
    "ComplexDoubleStorage": "torch.complex128",
}
"""The typed storage classes torch.save names (as torch.X, or torch.cuda.X in old files saved from a GPU)."""
MAX_HEADER_BYTES = 16 * 1024 * 1024
MAX_ELEMENTS = 200_000_000
"""Far above any CIFAR ResNet (ResNet-164 has 1.7 M parameters); a header claiming more is hostile or wrong."""
MAX_PICKLE_OPS = 500_000
"""Opcodes in one pickle, which bound its time and memory (at worst ~0.2 s and ~40 MB): a tensor takes ~30
(ResNet-20's file: 2,794 in all), a number in a training log 1."""
MAX_FILE_TENSORS = 20_000
"""Tensors (and references to storages) anywhere in the file: the model's, an optimizer's, EMA copies. A ResNet-110
has ~600."""
MAX_DIMS = 32
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
"""torch.serialization's MAGIC_NUMBER and PROTOCOL_VERSION: the first two pickles of a legacy file."""


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """A tensor as the file describes it: what architecture inference reads of a torch.Tensor, and no data."""

    dtype: str
    """As torch prints it, e.g. "torch.float32"."""
    shape: tuple[int, ...]

    def dim(self) -> int:
        return len(self.shape)

    def is_floating_point(self) -> bool:
        return self.dtype in FLOATING_DTYPES


def read_structure(path: Path, limit: int = MAX_CHECKPOINT_BYTES) -> dict[str, TensorInfo]:
    """The tensors the evaluator would map, by prefix-stripped name, read as cheaply as the format allows and
    without torch: a safetensors header; a torch.save zip's directory and pickle; a legacy torch file's
    pickles and one 8-byte length per storage. CheckpointRejected says why the file is unusable."""
    try:
        size = path.stat().st_size
        check_size(size, limit)
        with path.open("rb") as handle:
            file_format = sniff_format(handle.read(SNIFF_BYTES))
            handle.seek(0)
            if file_format == "safetensors":
                length = int.from_bytes(handle.read(8), "little")
                handle.seek(0)
                raw: Any = read_safetensors_header(handle.read(8 + min(length, MAX_HEADER_BYTES)), size=size)
            elif file_format == "torch-legacy":
                raw = _read_legacy(handle, size)
            else:
                raw = _read_zip(handle, size)
        return state_dict_of(raw, TensorInfo)[0]
    except OSError as exc:  # the file went away while it was read: not the student's doing
        raise InfrastructureError(f"cannot read checkpoint file {path}: {exc.strerror or exc}") from exc


def read_safetensors_header(data: bytes, *, size: int | None = None) -> dict[str, TensorInfo]:
    """The header's tensors, validated before any tensor data is touched. `data` may be the file's start only
    (the length and the header) when `size` gives the whole file's size."""
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
    tensors: dict[str, TensorInfo] = {}
    elements = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        tensors[name] = _header_entry(name, entry, body)
        elements += math.prod(tensors[name].shape)
        if elements > MAX_ELEMENTS:
            raise CheckpointRejected(f"safetensors header declares more than {MAX_ELEMENTS} values in all")
    return tensors


def _header_entry(name: str, entry: Any, body: int) -> TensorInfo:
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
    if offsets[1] - offsets[0] != math.prod(shape) * ITEMSIZES[dtype]:
        raise CheckpointRejected(f"safetensors entry {name!r}: its byte range does not match shape {shape}")
    return TensorInfo(dtype, tuple(shape))


# torch.save's zip format: archive/data.pkl refers to each storage by key; its bytes are the record archive/data/KEY.


def _read_zip(handle: IO[bytes], size: int) -> Any:
    """The object data.pkl describes, its storages checked against the zip directory (no tensor data read)."""
    try:
        with zipfile.ZipFile(handle) as archive:
            entries = archive.infolist()
            entry = _data_pkl(entries)
            with archive.open(entry) as stream:
                data = stream.read(MAX_PICKLE_BYTES + 1)
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        ValueError,
        OSError,
        EOFError,
        NotImplementedError,
        RuntimeError,
    ) as exc:  # RuntimeError: an encrypted entry
        raise CheckpointRejected(
            f"checkpoint is a damaged or truncated zip archive, the format torch.save writes ({exc}); "
            f"upload the complete file again, or {SAVE_HINT}"
        ) from None
    if len(data) > MAX_PICKLE_BYTES:
        raise _structure_too_large(len(data))
    prefix = entry.filename.removesuffix("data.pkl")
    records = {item.filename: item for item in entries}

    def storage(pid: Any) -> _Storage:
        kind, key, _location, numel = _storage_id(pid, 5)
        record = records.get(f"{prefix}data/{key}")
        if record is None:
            raise unreadable(f"the data of storage {key[:40]!r} is missing")
        if record.header_offset + record.compress_size > size or (
            record.compress_type == zipfile.ZIP_STORED and record.compress_size != record.file_size
        ):
            raise unreadable(f"the zip directory places storage {key[:40]!r} outside the file")
        if numel * kind.itemsize > record.file_size:
            raise unreadable(f"storage {key[:40]!r} holds {record.file_size} bytes, not {numel} {kind.dtype} values")
        return _Storage(kind.dtype, kind.itemsize, numel)

    return StructureUnpickler(data, storage).load()


def _data_pkl(entries: list[zipfile.ZipInfo]) -> zipfile.ZipInfo:
    """The archive's one data.pkl, when the archive is a torch.save file and its pickle no larger than a state
    dict's; a hostile one never reaches the unpickler."""
    names = [entry.filename.rsplit("/", 1)[-1] for entry in entries]
    if "constants.pkl" in names:
        raise CheckpointRejected(f"checkpoint is a TorchScript archive (torch.jit.save), not weights; {SAVE_HINT}")
    pickles = [entry for entry, name in zip(entries, names, strict=True) if name == "data.pkl"]
    if len(pickles) != 1:
        listed = ", ".join(entry.filename for entry in entries[:5]) or "nothing"
        raise CheckpointRejected(
            f"file is a zip archive but not a torch.save checkpoint (it holds {listed}); if you zipped your "
            f"checkpoint, upload the .pt file itself; {SAVE_HINT}"
        )
    if pickles[0].file_size > MAX_PICKLE_BYTES:
        raise _structure_too_large(pickles[0].file_size)
    return pickles[0]


# The legacy format (torch.save before torch 1.6, or _use_new_zipfile_serialization=False): five pickles in a row
# (magic number, protocol version, system info, the object, the storage keys in file order), then each storage
# as an 8-byte little-endian element count and its bytes. See torch.serialization._legacy_load.


def _read_legacy(handle: IO[bytes], size: int) -> Any:
    """The object the main pickle describes, each storage checked against its length in the file (no data read)."""
    # The pickles come first; more than a state dict's worth of them is refused, so only that much is read.
    head = handle.read(MAX_PICKLE_BYTES + 1024 * 1024)
    stream = io.BytesIO(head)
    roots: dict[str, _Storage] = {}

    def storage(pid: Any) -> _Storage:
        kind, key, _location, numel, view = _storage_id(pid, 6)
        root = roots.get(key)
        if root is None:
            root = roots[key] = _Storage(kind.dtype, kind.itemsize, numel, growable=True)
        if view is None:
            return root
        if type(view) is not tuple or len(view) != 3 or not all(_is_count(n) for n in view[1:]):
            raise unreadable("a storage view is malformed")
        _view_key, offset, length = view
        if offset + length > root.numel:
            raise unreadable(f"a view of {length} values at {offset} into a storage of {root.numel}")
        return _Storage(root.dtype, root.itemsize, length)

    def pickle_at(persistent: Callable[[Any], _Storage] | None = None) -> Any:
        try:
            return StructureUnpickler(stream, persistent).load()
        except CheckpointRejected:
            if stream.tell() >= len(head) and len(head) < size:  # the pickles run on past what was read
                raise _structure_too_large(len(head)) from None
            raise

    if pickle_at() != LEGACY_MAGIC:
        raise CheckpointRejected(f"file is a Python pickle, but not a checkpoint torch.save wrote; {SAVE_HINT}")
    if pickle_at() != LEGACY_PROTOCOL:
        raise unreadable("an unknown version of torch's legacy format")
    pickle_at()  # system information (byte order, C type sizes), which torch does not use either
    result = pickle_at(storage)
    keys = pickle_at()
    if type(keys) is list and len(keys) > MAX_FILE_TENSORS:
        raise _too_many_tensors()
    if type(keys) is not list or not all(type(key) is str and key in roots for key in keys):
        raise unreadable("its list of storages names storages its tensors do not use")
    _check_legacy_storages(handle, stream.tell(), size, [roots[key] for key in keys])
    return result


def _check_legacy_storages(handle: IO[bytes], offset: int, size: int, storages: list[_Storage]) -> None:
    """Each storage's element count, read from the file, against what its tensors read (torch requires them equal),
    and its bytes within the file."""
    for index, storage in enumerate(storages):
        handle.seek(offset)
        count = int.from_bytes(handle.read(8).ljust(8, b"\xff"), "little", signed=True)
        if count != storage.numel:
            raise unreadable(
                f"storage {index + 1} of {len(storages)} holds {count} values where its tensors expect {storage.numel}"
                if offset + 8 <= size
                else f"the file ends before storage {index + 1} of {len(storages)}"
            )
        offset += 8 + count * storage.itemsize
        if offset > size:
            raise unreadable(f"the file ends {offset - size} bytes before the data of storage {index + 1}")


@dataclass(slots=True)
class _Storage:
    """A storage (or a view into one) as a persistent id names it: its dtype and length in elements."""

    dtype: str
    itemsize: int
    numel: int
    growable: bool = False
    """A legacy file's storage, which torch allocates at the persistent id's length and `set_` then grows to what
    its tensors read; the file must hold that many values (checked after the pickles)."""


@dataclass(frozen=True, slots=True)
class _StorageType:
    """Stands in for torch.FloatStorage and its kin: only ever read inside a persistent id."""

    dtype: str

    @property
    def itemsize(self) -> int:
        return ITEMSIZES[self.dtype]


@dataclass(frozen=True, slots=True)
class _TypeName:
    """Stands in for torch.Tensor or torch.nn.Parameter, which a pickle names only as _rebuild_from_type_v2's type."""

    name: str


@dataclass(frozen=True, slots=True)
class _Builder:
    """An allowed callable global: REDUCE calls `build`, this module's stand-in, which makes only inert records."""

    name: str
    build: Callable[..., Any]


class _OrderedDict(dict):  # type: ignore[type-arg]
    """collections.OrderedDict as a plain dict; the state torch adds (`_metadata`, module versions) is ignored."""


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0


def _storage_id(pid: Any, length: int) -> tuple[Any, ...]:
    """A persistent id's fields after "storage", checked: (storage type, key, location, element count, ...)."""
    if type(pid) is not tuple or len(pid) != length or pid[0] not in ("storage", b"storage"):
        raise unreadable("a persistent id is not a storage's")
    kind, key, location, numel = pid[1:5]
    if type(kind) is not _StorageType or type(key) is not str or not _is_count(numel):
        raise unreadable("a storage's persistent id is malformed")
    return (kind, key, location, numel, *pid[5:])


def _counts(value: Any, what: str) -> tuple[int, ...]:
    if type(value) not in (tuple, list) or len(value) > MAX_DIMS or not all(_is_count(n) for n in value):
        raise unreadable(f"a tensor's {what} is malformed")
    return tuple(value)


def _tensor(storage: Any, offset: Any, size: Any, stride: Any) -> TensorInfo:
    """What torch's Tensor.set_(storage, offset, size, stride) would make, once it fits inside the storage."""
    if type(storage) is not _Storage or not _is_count(offset):
        raise unreadable("a tensor is not built on a storage")
    shape, strides = _counts(size, "shape"), _counts(stride, "stride")
    if len(shape) != len(strides):
        raise unreadable(f"a tensor of shape {shape} has strides {strides}")
    if all(shape):  # an empty tensor reads nothing
        needed = offset + 1 + sum((n - 1) * step for n, step in zip(shape, strides, strict=True))
        if needed > storage.numel and storage.growable:
            storage.numel = needed
        elif needed > storage.numel:
            raise unreadable(f"a tensor of shape {shape} reads {needed} values of a storage holding {storage.numel}")
    return TensorInfo(storage.dtype, shape)


def _arguments(name: str, args: tuple[Any, ...], counts: tuple[int, ...]) -> tuple[Any, ...]:
    if len(args) not in counts:
        raise unreadable(f"{name} is called with {len(args)} arguments")
    return args


def _rebuild_tensor(*args: Any) -> TensorInfo:  # (storage, storage_offset, size, stride)
    return _tensor(*_arguments("_rebuild_tensor", args, (4,)))


def _rebuild_tensor_v2(*args: Any) -> TensorInfo:  # (... stride, requires_grad, backward_hooks[, metadata])
    return _tensor(*_arguments("_rebuild_tensor_v2", args, (6, 7))[:4])


def _rebuild_parameter(*args: Any) -> TensorInfo:  # (data, requires_grad, backward_hooks[, state])
    data = _arguments("_rebuild_parameter", args, (3, 4))[0]
    if type(data) is not TensorInfo:
        raise unreadable("a parameter is not built on a tensor")
    return data


def _rebuild_from_type_v2(*args: Any) -> TensorInfo:  # (func, new_type, args, state): a tensor with attributes
    func, new_type, inner, _state = _arguments("_rebuild_from_type_v2", args, (4,))
    if type(func) is not _Builder or func.build not in TENSOR_BUILDERS or type(new_type) is not _TypeName:
        raise unreadable("a tensor is rebuilt by something other than torch's tensor rebuild functions")
    if type(inner) is not tuple:
        raise unreadable("a tensor's rebuild arguments are malformed")
    return func.build(*inner)


def _size(*args: Any) -> tuple[int, ...]:  # torch.Size((2, 3))
    return _counts(_arguments("torch.Size", args, (1,))[0], "size")


def _ordered_dict(*args: Any) -> _OrderedDict:  # collections.OrderedDict(); its items follow as SETITEMS
    _arguments("collections.OrderedDict", args, (0,))
    return _OrderedDict()


TENSOR_BUILDERS = (_rebuild_tensor, _rebuild_tensor_v2, _rebuild_parameter)
ALLOWED_GLOBALS: dict[str, object] = {
    "collections.OrderedDict": _Builder("collections.OrderedDict", _ordered_dict),
    "torch._utils._rebuild_tensor": _Builder("torch._utils._rebuild_tensor", _rebuild_tensor),
    "torch._utils._rebuild_tensor_v2": _Builder("torch._utils._rebuild_tensor_v2", _rebuild_tensor_v2),
    "torch._utils._rebuild_parameter": _Builder("torch._utils._rebuild_parameter", _rebuild_parameter),
    "torch._utils._rebuild_parameter_with_state": _Builder(
        "torch._utils._rebuild_parameter_with_state", _rebuild_parameter
    ),
    "torch._tensor._rebuild_from_type_v2": _Builder("torch._tensor._rebuild_from_type_v2", _rebuild_from_type_v2),
    "torch.Size": _Builder("torch.Size", _size),
    "torch.Tensor": _TypeName("torch.Tensor"),
    "torch.nn.parameter.Parameter": _TypeName("torch.nn.parameter.Parameter"),
    **{
        f"{module}.{name}": _StorageType(dtype)
        for module in ("torch", "torch.cuda")
        for name, dtype in STORAGE_DTYPES.items()
    },
}
"""Everything a state dict's pickle may name (what torch's weights-only loader allows, less what no CIFAR
checkpoint needs: sparse, quantized and nested tensors, new dtypes, sets, bytearrays, devices), each mapped to
an inert stand-in. Any other global is refused by name; nothing is ever imported."""
DICT_KEY_TYPES = (str, int, float, bool, bytes, type(None))
"""Keys a state dict or an optimizer's state uses; hashing anything else could recurse through the file's nesting."""


class _Opcodes(dict):  # type: ignore[type-arg]
    """The dispatch table: an opcode outside it is refused by name."""

    def __missing__(self, code: int) -> Any:
        opcode = pickletools.code2op.get(chr(code))
        if opcode is None:
            raise unreadable(f"its pickle holds the byte {code:#04x} where an instruction should be")
        raise CheckpointRejected(
            f"checkpoint's pickle uses the instruction {opcode.name}, which torch's weights-only loader does not read "
            f"(save with torch.save's default pickle protocol); {SAVE_HINT}"
        )


class _Done(Exception):
    def __init__(self, value: Any) -> None:
        super().__init__()
        self.value = value


class StructureUnpickler(pickle._Unpickler):
    """Reads one pickle of a torch.save file into dicts, lists, scalars and the inert records above.

    The Python unpickler with a smaller dispatch table (the opcodes of protocol 2 that torch's weights-only loader
    reads, none of which sizes an allocation from a number in the file), `find_class` limited to
    ALLOWED_GLOBALS, REDUCE to their builders, BUILD to OrderedDict, SETITEM(S)/APPEND(S) to dicts and lists, and
    `persistent_load` to `storage` (none: a persistent id is refused). At most MAX_PICKLE_OPS opcodes and
    MAX_FILE_TENSORS tensors.
    """

    def __init__(self, source: bytes | io.BytesIO, storage: Callable[[Any], _Storage] | None = None) -> None:
        self._stream = source if isinstance(source, io.BytesIO) else io.BytesIO(source)
        super().__init__(self._stream, encoding="utf-8")
        self._storage = storage
        self._tensors = self._storages = 0

    def load(self) -> Any:
        """The pickle's object; CheckpointRejected for anything but a pickle of allowed content."""
        try:
            return self._run()
        except CheckpointRejected:
            raise
        except EOFError:
            raise unreadable("the file ends inside its pickle") from None
        except Exception as exc:  # the Python unpickler raises many types for a malformed pickle
            raise unreadable(f"its pickle is malformed: {first_line(exc)}") from None

    def _run(self) -> Any:
        # What the inherited opcode handlers read from: the stream itself (none of its opcodes uses frames).
        self.read, self.readline = self._stream.read, self._stream.readline
        self.metastack: list[list[Any]] = []
        self.stack: list[Any] = []
        self.append = self.stack.append
        self.proto = 0
        read, dispatch = self.read, self.dispatch
        try:
            for _ in range(MAX_PICKLE_OPS):
                code = read(1)
                if not code:
                    raise EOFError
                dispatch[code[0]](self)
        except _Done as done:
            return done.value
        raise CheckpointRejected(
            f"checkpoint's object structure takes more than {MAX_PICKLE_OPS} pickle instructions; a state dict's "
            f"takes a few thousand: {SAVE_HINT}"
        )

    def find_class(self, module: str, name: str) -> Any:
        # As torch's weights-only loader does: Python 2 names (__builtin__) read as their Python 3 ones.
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        found = ALLOWED_GLOBALS.get(f"{module}.{name}")
        if found is None:
            raise holds_python_objects(f"{module}.{name}"[:200])
        return found

    def persistent_load(self, pid: Any) -> Any:
        if self._storage is None:
            raise unreadable("a tensor's storage where none belongs")
        self._storages += 1
        if self._storages > MAX_FILE_TENSORS:
            raise _too_many_tensors()
        return self._storage(pid)

    def _reduce(self) -> None:
        args = self.stack.pop()
        func = self.stack[-1]
        if type(func) is not _Builder:
            raise unreadable(f"its pickle calls a {type(func).__name__}")
        if type(args) is not tuple:
            raise unreadable("a call's arguments are not a tuple")
        result = func.build(*args)
        if type(result) is TensorInfo and not any(result is arg for arg in args):
            self._tensors += 1
            if self._tensors > MAX_FILE_TENSORS:
                raise _too_many_tensors()
        self.stack[-1] = result

    def _build(self) -> None:
        self.stack.pop()  # the state: ignored, as _OrderedDict says
        if type(self.stack[-1]) is not _OrderedDict:
            raise unreadable(f"its pickle sets the state of a {type(self.stack[-1]).__name__}")

    def _append(self) -> None:
        item = self.stack.pop()
        _list(self.stack[-1]).append(item)

    def _appends(self) -> None:
        items = self.pop_mark()
        _list(self.stack[-1]).extend(items)

    def _setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        _dict(self.stack[-1])[_key(key)] = value

    def _setitems(self) -> None:
        items = self.pop_mark()
        target = _dict(self.stack[-1])
        if len(items) % 2:
            raise unreadable("a dict's items are not key-value pairs")
        for index in range(0, len(items), 2):
            target[_key(items[index])] = items[index + 1]

    def _stop(self) -> None:
        raise _Done(self.stack.pop())

    def _proto(self) -> None:
        self.read(1)  # the protocol version, which nothing here depends on; torch's loader takes any, so does this

    dispatch = _Opcodes(
        {
            **{
                opcode[0]: pickle._Unpickler.dispatch[opcode[0]]
                for opcode in (
                    pickle.GLOBAL,
                    pickle.BINPERSID,
                    pickle.MARK,
                    pickle.TUPLE,
                    pickle.TUPLE1,
                    pickle.TUPLE2,
                    pickle.TUPLE3,
                    pickle.EMPTY_TUPLE,
                    pickle.EMPTY_LIST,
                    pickle.EMPTY_DICT,
                    pickle.EMPTY_SET,
                    pickle.NONE,
                    pickle.NEWTRUE,
                    pickle.NEWFALSE,
                    pickle.BININT,
                    pickle.BININT1,
                    pickle.BININT2,
                    pickle.LONG1,
                    pickle.BINFLOAT,
                    pickle.BINUNICODE,
                    pickle.SHORT_BINSTRING,
                    pickle.BINGET,
                    pickle.LONG_BINGET,
                    pickle.BINPUT,
                    pickle.LONG_BINPUT,
                )
            },
            pickle.REDUCE[0]: _reduce,
            pickle.BUILD[0]: _build,
            pickle.APPEND[0]: _append,
            pickle.APPENDS[0]: _appends,
            pickle.SETITEM[0]: _setitem,
            pickle.SETITEMS[0]: _setitems,
            pickle.STOP[0]: _stop,
            pickle.PROTO[0]: _proto,
        }
    )


def _list(target: Any) -> list[Any]:
    if type(target) is not list:
        raise unreadable(f"it appends to a {type(target).__name__}")
    return target


def _dict(target: Any) -> dict[Any, Any]:
    if type(target) not in (dict, _OrderedDict):
        raise unreadable(f"it sets an item of a {type(target).__name__}")
    return target


def _key(key: Any) -> Any:
    if type(key) not in DICT_KEY_TYPES:
        raise unreadable(f"a dict key is a {type(key).__name__}")
    return key


def _too_many_tensors() -> CheckpointRejected:
    return CheckpointRejected(
        f"checkpoint holds more than {MAX_FILE_TENSORS} tensors; a CIFAR ResNet has a few hundred: {SAVE_HINT}"
    )


def _structure_too_large(size: int) -> CheckpointRejected:
    return CheckpointRejected(
        f"checkpoint's object structure (its pickle) is {size} bytes or more; a state dict's is a few KB: {SAVE_HINT}"
    )
