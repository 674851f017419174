"""The intake pre-check: files that are no usable checkpoint are refused with the reason, good ones pass."""

from __future__ import annotations

import json
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from grader.errors import InputError, InvalidCheckpoint, UploadTooLarge
from grader.evaluation.precheck import precheck_checkpoint
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
]


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


def test_a_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    for form, path in [
        ("raw pickle", _write(tmp_path / "raw.pt", pickle.dumps({"conv.weight": _Marker(marker)}, protocol=2))),
        ("torch zip", _torch_file(tmp_path / "zip.pt", {"conv.weight": _Marker(marker)})),
    ]:
        with pytest.raises(InvalidCheckpoint, match="Python objects"):
            precheck_checkpoint(path, label="v1")
        assert not marker.exists(), form


def test_a_file_over_the_upload_limit_is_too_large(resnet20_checkpoint: Path) -> None:
    with pytest.raises(UploadTooLarge) as refused:
        precheck_checkpoint(resnet20_checkpoint, label="v2", max_bytes=1024)
    assert refused.value.field == "v2" and refused.value.status_code == 413
    assert isinstance(refused.value, InputError)


def test_importing_the_precheck_does_not_import_torch() -> None:
    code = "import sys, grader.evaluation.precheck; print('torch' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert output.stdout.strip() == "False"
