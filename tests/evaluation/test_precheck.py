"""The intake pre-check: files that are no usable checkpoint are refused with the reason, good ones pass."""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import subprocess
import sys
import tracemalloc
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from grader.errors import InputError, InvalidCheckpoint, UploadTooLarge
from grader.evaluation.precheck import precheck_checkpoint
from grader.evaluation.structure import read_structure
from tests.conftest import REPO_ROOT
from tests.evaluation.nets import AkamasterResNet, StarterResNet


def _state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {name: tensor.contiguous() for name, tensor in StarterResNet(2, 1).state_dict().items()}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _torch_file(path: Path, obj: Any, **kwargs: Any) -> Path:
    torch.save(obj, path, **kwargs)
    return path


def _safetensors_file(path: Path, header: Any, body: bytes = b"") -> Path:
    text = json.dumps(header).encode()
    return _write(path, struct.pack("<Q", len(text)) + text + body)


def _cut(path: Path, keep: float) -> Path:
    data = path.read_bytes()
    return _write(path, data[: int(len(data) * keep)])


def _code_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("hw3/NetWork.py", "import torch\n")
    return path


def _with_classes(classes: int) -> dict[str, torch.Tensor]:
    """A v1 net whose classifier has `classes` outputs."""
    state = dict(StarterResNet(1, 1).state_dict())
    fc = next(name.removesuffix(".weight") for name, tensor in state.items() if tensor.dim() == 2)
    state[f"{fc}.weight"] = torch.zeros(classes, state[f"{fc}.weight"].shape[1])
    state[f"{fc}.bias"] = torch.zeros(classes)
    return state


def _grayscale() -> dict[str, torch.Tensor]:
    """A v2 net whose first convolution takes one channel."""
    state = _state()
    state["start_layer.weight"] = torch.zeros(8, 1, 3, 3)
    return state


class _Marker:
    """Unpickling this would create `path`: the pre-check must refuse the file before anything runs."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


class _WholeModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2)


BAD = [
    # (case, how the file is made in a folder, what the message says)
    ("a PNG renamed .pt", lambda d: _write(d / "v1.pt", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8), "a PNG image"),
    ("an empty file", lambda d: _write(d / "v1.pt", b""), "empty"),
    ("text named .safetensors", lambda d: _write(d / "v1.safetensors", b"weights: see Model.py\n"), "a text file"),
    (
        "a Git LFS pointer",
        lambda d: _write(d / "v1.pt", b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 9\n"),
        "Git LFS pointer",
    ),
    ("a truncated torch.save zip", lambda d: _cut(_torch_file(d / "v1.pt", _state()), 0.6), "truncated zip"),
    ("a zip of code named .pt", lambda d: _code_zip(d / "v1.pt"), "not a torch.save checkpoint"),
    (
        "a truncated legacy torch file",
        lambda d: _cut(_torch_file(d / "v1.pth", _state(), _use_new_zipfile_serialization=False), 0.3),
        "truncated or corrupted",
    ),
    (
        "a safetensors header that is not JSON",
        lambda d: _write(d / "v1.safetensors", struct.pack("<Q", 12) + b"{not: json}!"),
        "not valid JSON",
    ),
    (
        "a safetensors header longer than the file",
        lambda d: _write(d / "v1.safetensors", struct.pack("<Q", 4096) + b'{"w": 1}'),
        "more than the file holds",
    ),
    (
        "a safetensors file cut short",
        lambda d: _safetensors_file(
            d / "v1.safetensors", {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}
        ),
        "points outside the file",
    ),
    ("a whole pickled model", lambda d: _torch_file(d / "v1.pt", _WholeModel()), "torch.save(model)"),
    ("no tensors", lambda d: _torch_file(d / "v1.pt", {"epoch": 3, "acc": 91.2}), "no state_dict found"),
    (
        "an MLP, not a ResNet",
        lambda d: _torch_file(d / "v1.pt", {"fc1.weight": torch.zeros(64, 3072), "fc2.weight": torch.zeros(10, 64)}),
        "no residual blocks",
    ),
    (
        "a ResNet for 100 classes",
        lambda d: _torch_file(d / "v1.pt", _with_classes(100)),
        "10 CIFAR-10 classes",
    ),
    (
        "safetensors of a ResNet for grayscale images",
        lambda d: (save_file(_grayscale(), d / "v1.safetensors"), d / "v1.safetensors")[1],
        "takes 1 channels, not 3 (RGB)",
    ),
    # torch's weights-only loader, which the evaluation uses, reads pickle protocol 2 (torch.save's default) only.
    (
        "a torch.save zip in pickle protocol 4",
        lambda d: _torch_file(d / "v1.pt", _state(), pickle_protocol=4),
        "default pickle protocol",
    ),
    ("a torch.save zip missing a tensor's data", lambda d: _without_first_storage(d / "v1.pt"), "is missing"),
    (
        "a plain pickle.dump of a dict",
        lambda d: _write(d / "v1.pkl", pickle.dumps({"epoch": 3}, protocol=2)),
        "not a checkpoint torch.save wrote",
    ),
]


def _without_first_storage(path: Path) -> Path:
    data = _torch_file(path, _state()).read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(path, "w") as target:
        for entry in source.infolist():
            if not entry.filename.endswith("/data/0"):
                target.writestr(entry, source.read(entry))
    return path


@pytest.mark.parametrize(("case", "make", "says"), BAD, ids=[b[0] for b in BAD])
def test_a_file_that_is_no_usable_checkpoint_is_refused_with_the_reason(
    case: str, make: Any, says: str, tmp_path: Path
) -> None:
    with pytest.raises(InvalidCheckpoint) as refused:
        precheck_checkpoint(make(tmp_path), label="v1")
    assert refused.value.field == "v1" and refused.value.status_code == 422
    assert refused.value.message.startswith("the v1 checkpoint cannot be evaluated: ")
    assert says in refused.value.message


def _real(path: Path, resnet20_checkpoint: Path) -> Path:
    return _write(path, resnet20_checkpoint.read_bytes())


GOOD = [
    # (case, how the file is made from the real checkpoint's path)
    ("the real ResNet-20 (legacy format, {'state_dict'}, module. prefix)", lambda d, real: real),
    ("the real ResNet-20 under another name", lambda d, real: _real(d / "model-v1.pt", real)),
    ("a v2 net as safetensors", lambda d, real: (save_file(_state(), d / "v2.safetensors"), d / "v2.safetensors")[1]),
    ("a v2 net as a torch.save zip", lambda d, real: _torch_file(d / "v2.ckpt", {"model": _state(), "epoch": 9})),
    ("an option-A v1 net, DataParallel names", lambda d, real: _torch_file(d / "v1.th", _wrapped(AkamasterResNet(1)))),
]


def _wrapped(model: nn.Module) -> dict[str, Any]:
    return {"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}, "best_prec1": 50.0}


@pytest.mark.parametrize(("case", "make"), GOOD, ids=[g[0] for g in GOOD])
def test_a_usable_checkpoint_passes(case: str, make: Any, resnet20_checkpoint: Path, tmp_path: Path) -> None:
    precheck_checkpoint(make(tmp_path, resnet20_checkpoint), label="v1")


def test_with_the_students_code_only_the_file_itself_is_checked(tmp_path: Path) -> None:
    # In student-code mode the network is the student's own: any state dict may fit it.
    mlp = _torch_file(tmp_path / "mlp.pt", {"fc1.weight": torch.zeros(64, 3072), "fc2.weight": torch.zeros(10, 64)})
    precheck_checkpoint(mlp, label="v2", code_uploaded=True)
    with pytest.raises(InvalidCheckpoint, match="a PNG image") as refused:
        precheck_checkpoint(
            _write(tmp_path / "v2.pt", b"\x89PNG\r\n\x1a\n" + bytes(64)), label="v2", code_uploaded=True
        )
    assert refused.value.field == "v2"


class _Call:
    """Pickles as a call of `func` with `args`: what a hostile file makes the unpickler do."""

    def __init__(self, func: Callable[..., Any], *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.func, self.args)


HOSTILE_CALLS = [
    # (case, the object pickled in place of a tensor, given the path whose creation would show code ran, the name)
    ("open() a file", lambda marker: _Marker(marker), f"{open.__module__}.open"),
    ("os.system", lambda marker: _Call(os.system, f"touch {marker}"), f"{os.system.__module__}.system"),
    ("eval of source text", lambda marker: _Call(eval, f"open({str(marker)!r}, 'w')"), "builtins.eval"),
]
FORMS = [
    ("raw pickle", lambda path, obj: _write(path, pickle.dumps(obj, protocol=2))),
    ("torch zip", lambda path, obj: _torch_file(path, obj)),
    ("legacy torch file", lambda path, obj: _torch_file(path, obj, _use_new_zipfile_serialization=False)),
]


@pytest.mark.parametrize(("case", "payload", "name"), HOSTILE_CALLS, ids=[h[0] for h in HOSTILE_CALLS])
@pytest.mark.parametrize(("form", "save"), FORMS, ids=[f[0] for f in FORMS])
def test_a_pickle_that_would_run_code_is_refused_naming_the_global_and_nothing_runs(
    case: str, payload: Any, name: str, form: str, save: Any, tmp_path: Path
) -> None:
    marker = tmp_path / "code-ran"
    path = save(tmp_path / "v1.pt", OrderedDict([("conv.weight", payload(marker))]))
    with pytest.raises(InvalidCheckpoint) as refused:
        precheck_checkpoint(path, label="v1")
    assert "Python objects" in refused.value.message and f"it refers to {name}" in refused.value.message
    assert not marker.exists()


class _Storage:
    """Stands for a storage of `numel` floats under key "0": the persistent id torch.save writes for it."""

    def __init__(self, numel: int) -> None:
        self.numel = numel


class _Tensor:
    """Pickles as torch.save pickles a tensor, with whatever shape, strides and storage size the test claims."""

    def __init__(self, numel: int, shape: tuple[int, ...], stride: tuple[int, ...]) -> None:
        self.storage, self.shape, self.stride = _Storage(numel), shape, stride

    def __reduce__(self) -> tuple[Any, ...]:
        return (torch._utils._rebuild_tensor_v2, (self.storage, 0, self.shape, self.stride, False, OrderedDict()))


def _pickle(obj: Any, storage_id: Callable[[_Storage], tuple[Any, ...]]) -> bytes:
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=2)
    pickler.persistent_id = lambda o: storage_id(o) if isinstance(o, _Storage) else None  # type: ignore[method-assign]
    pickler.dump(obj)
    return buffer.getvalue()


def _claiming_zip(path: Path, tensor: _Tensor, stored_bytes: int) -> Path:
    """A torch.save zip whose one tensor is `tensor`, its storage record `stored_bytes` long."""
    data = _pickle({"w": tensor}, lambda s: ("storage", torch.FloatStorage, "0", "cpu", s.numel))
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", data)
        archive.writestr("archive/data/0", bytes(stored_bytes))
    return path


def _claiming_legacy(path: Path, tensor: _Tensor, stored: int) -> Path:
    """A legacy torch file whose one tensor is `tensor`, its storage holding `stored` floats."""
    head = b"".join(pickle.dumps(obj, protocol=2) for obj in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}))
    main = _pickle({"w": tensor}, lambda s: ("storage", torch.FloatStorage, "0", "cpu", s.numel, None))
    tail = pickle.dumps(["0"], protocol=2) + struct.pack("<q", stored) + bytes(4 * stored)
    return _write(path, head + main + tail)


CLAIMS = [
    # (case, a small file that claims something huge, what the refusal says)
    (
        "a tensor of 2^40 values on a storage of 4",
        lambda d: _claiming_zip(d / "v1.pt", _Tensor(4, (2**20, 2**20), (2**20, 1)), 16),
        "of a storage holding 4",
    ),
    (
        "a storage of 2^40 floats stored in 16 bytes",
        lambda d: _claiming_zip(d / "v1.pt", _Tensor(2**40, (2**20, 2**20), (2**20, 1)), 16),
        "holds 16 bytes, not 1099511627776 torch.float32 values",
    ),
    (
        "a legacy storage of 2^40 floats holding 4",
        lambda d: _claiming_legacy(d / "v1.pth", _Tensor(2**40, (2**20, 2**20), (2**20, 1)), 4),
        "holds 4 values where its tensors expect 1099511627776",
    ),
    (
        "a memo index of 4 billion (the C unpickler would size its memo by it)",
        lambda d: _write(d / "v1.pt", b"\x80\x02N" + b"r" + struct.pack("<I", 2**32 - 1) + b"."),
        "not a checkpoint torch.save wrote",
    ),
    (
        "a bytearray of 2^40 bytes",
        lambda d: _write(d / "v1.pt", b"\x80\x05\x96" + struct.pack("<Q", 2**40) + b"."),
        "BYTEARRAY8",
    ),
    (
        "a string of 4 GB",
        lambda d: _write(d / "v1.pt", b"\x80\x02X" + struct.pack("<I", 2**32 - 1) + b"abc."),
        "truncated or corrupted",
    ),
    (
        "a list of a million items",
        lambda d: _write(d / "v1.pt", b"\x80\x02](" + b"N" * 1_000_000 + b"e."),
        "pickle instructions",
    ),
]


@pytest.mark.parametrize(("case", "make", "says"), CLAIMS, ids=[c[0] for c in CLAIMS])
def test_a_file_claiming_huge_data_is_refused_without_allocating_it(
    case: str, make: Any, says: str, tmp_path: Path
) -> None:
    path = make(tmp_path)
    tracemalloc.start()
    try:
        with pytest.raises(InvalidCheckpoint) as refused:
            precheck_checkpoint(path, label="v1")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert says in refused.value.message
    assert peak < 64 * 1024 * 1024


def test_tensors_read_without_torch_are_those_torch_loads(tmp_path: Path) -> None:
    # Shapes and dtypes as the file describes them, including views into a shared storage and parameters.
    base = torch.arange(24, dtype=torch.float32)
    state = {
        "a.weight": base[4:16].view(3, 4),
        "a.bias": base[:3],
        "b.weight": nn.Parameter(torch.zeros(2, 3, dtype=torch.float16)),
        "steps": torch.tensor(7),
        "mask": torch.ones(5, dtype=torch.bool),
        "empty": torch.zeros(0, 3),
    }
    for zipped in (True, False):
        path = _torch_file(tmp_path / f"s-{zipped}.pt", state, _use_new_zipfile_serialization=zipped)
        loaded = torch.load(path, weights_only=True)
        found = {name: (info.dtype, info.shape) for name, info in read_structure(path).items()}
        assert found == {name: (str(t.dtype), tuple(t.shape)) for name, t in loaded.items()}


def test_a_file_over_the_upload_limit_is_too_large(resnet20_checkpoint: Path) -> None:
    with pytest.raises(UploadTooLarge) as refused:
        precheck_checkpoint(resnet20_checkpoint, label="v2", max_bytes=1024)
    assert refused.value.field == "v2" and refused.value.status_code == 413
    assert isinstance(refused.value, InputError)


def test_importing_the_precheck_does_not_import_torch() -> None:
    code = "import sys, grader.evaluation.precheck; print('torch' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert output.stdout.strip() == "False"


def test_checking_files_imports_no_torch(resnet20_checkpoint: Path, tmp_path: Path) -> None:
    # The API process runs the pre-check: good and bad files alike are read without importing torch.
    paths = []
    for index, (_, make, _says) in enumerate(BAD):
        (tmp_path / f"bad{index}").mkdir()
        paths.append(make(tmp_path / f"bad{index}"))
    for index, (_, make) in enumerate(GOOD):
        (tmp_path / f"good{index}").mkdir()
        paths.append(make(tmp_path / f"good{index}", resnet20_checkpoint))
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from grader.errors import InvalidCheckpoint\n"
        "from grader.evaluation.precheck import precheck_checkpoint\n"
        "outcomes = []\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        precheck_checkpoint(Path(path), label='v1')\n"
        "        outcomes.append('pass')\n"
        "    except InvalidCheckpoint:\n"
        "        outcomes.append('refused')\n"
        "print(' '.join(outcomes), 'torch' in sys.modules)\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code, *map(str, paths)], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert output.stdout.split() == ["refused"] * len(BAD) + ["pass"] * len(GOOD) + ["False"]
