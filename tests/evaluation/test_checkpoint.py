"""Loading checkpoint files: accepted formats and containers, and hostile files rejected without running them."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from grader.errors import InfrastructureError
from grader.evaluation.checkpoint import CheckpointRejected, load_checkpoint
from tests.evaluation.nets import StarterResNet


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    return dict(StarterResNet(1, 1).state_dict())


def _save(obj: Any, path: Path, **kwargs: Any) -> Path:
    torch.save(obj, path, **kwargs)
    return path


SAVERS = [
    ("plain .pt", lambda s, d: _save(s, d / "model.pt"), "torch-zip", [], ""),
    ("legacy .pth", lambda s, d: _save(s, d / "m.pth", _use_new_zipfile_serialization=False), "torch-legacy", [], ""),
    ("safetensors", lambda s, d: (save_file(s, d / "m.safetensors"), d / "m.safetensors")[1], "safetensors", [], ""),
    (
        "{'state_dict', 'best_prec1'} .th",
        lambda s, d: _save({"state_dict": s, "best_prec1": 91.0}, d / "m.th"),
        "torch-zip",
        ["state_dict"],
        "",
    ),
    (
        "{'model', 'optimizer'} .ckpt",
        lambda s, d: _save({"model": s, "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]}}, d / "m.ckpt"),
        "torch-zip",
        ["model"],
        "",
    ),
    ("{'net'}", lambda s, d: _save({"net": s, "acc": 90.0, "epoch": 3}, d / "net.pt"), "torch-zip", ["net"], ""),
    (
        "{'model_state_dict'} of DataParallel",
        lambda s, d: _save({"model_state_dict": {f"module.{k}": v for k, v in s.items()}}, d / "m.pt"),
        "torch-zip",
        ["model_state_dict"],
        "module.",
    ),
    (
        "torch.compile prefix",
        lambda s, d: _save({f"_orig_mod.{k}": v for k, v in s.items()}, d / "m.pt"),
        "torch-zip",
        [],
        "_orig_mod.",
    ),
    (
        "Lightning-style 'model.' prefix",
        lambda s, d: _save({"state_dict": {f"model.{k}": v for k, v in s.items()}, "epoch": 1}, d / "m.ckpt"),
        "torch-zip",
        ["state_dict"],
        "model.",
    ),
]


@pytest.mark.parametrize(("name", "saver", "file_format", "container", "prefix"), SAVERS, ids=[s[0] for s in SAVERS])
def test_accepted_files_give_back_the_state_dict(
    name: str, saver: Any, file_format: str, container: list[str], prefix: str, state: dict, tmp_path: Path
) -> None:
    checkpoint = load_checkpoint(saver(state, tmp_path))
    assert (checkpoint.file_format, checkpoint.container, checkpoint.stripped_prefix) == (
        file_format,
        container,
        prefix,
    )
    assert set(checkpoint.tensors) == set(state)
    assert all(torch.equal(checkpoint.tensors[key], value) for key, value in state.items())
    assert len(checkpoint.sha256) == 64


def test_the_real_cuda_saved_checkpoint_loads_on_the_cpu(resnet20_checkpoint: Path) -> None:
    checkpoint = load_checkpoint(resnet20_checkpoint, "cpu")
    assert checkpoint.file_format == "torch-legacy"
    assert checkpoint.container == ["state_dict"] and checkpoint.stripped_prefix == "module."
    assert checkpoint.ignored_entries == []
    assert "layer3.2.bn2.running_var" in checkpoint.tensors
    assert all(t.device.type == "cpu" for t in checkpoint.tensors.values())


class _Marker:
    """Unpickling this would create `path`: the loader must refuse before anything runs."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


class WholeModel(nn.Module):
    """A model whose unpickling would create a file (torch.save(model) pickles the class)."""

    def __init__(self, marker: Path) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2)
        self.marker = str(marker)

    def __setstate__(self, state: dict[str, Any]) -> None:
        Path(state["marker"]).touch()
        super().__setstate__(state)


def _truncated_zip(d: Path, state: dict) -> Path:
    data = (d / "full.pt").read_bytes() if (d / "full.pt").exists() else _save(state, d / "full.pt").read_bytes()
    (d / "cut.pt").write_bytes(data[: len(data) // 2])
    return d / "cut.pt"


def _file(d: Path, name: str, data: bytes) -> Path:
    (d / name).write_bytes(data)
    return d / name


HOSTILE = [
    ("empty", lambda d, s: _file(d, "empty.pt", b""), "empty"),
    ("truncated zip", _truncated_zip, "truncated or corrupted"),
    (
        "truncated legacy",
        lambda d, s: _file(
            d, "cut.pth", _save(s, d / "l.pth", _use_new_zipfile_serialization=False).read_bytes()[:999]
        ),
        "truncated or corrupted",
    ),
    ("text", lambda d, s: _file(d, "notes.pt", b"epoch 10: loss 0.3\n"), "not a PyTorch checkpoint"),
    ("a zip of other files", lambda d, s: _zip(d), "truncated or corrupted"),
    (
        "bad safetensors header",
        lambda d, s: _file(d, "m.safetensors", (20).to_bytes(8, "little") + b"{garbage..."),
        "safetensors file cannot be read",
    ),
    ("no tensors at all", lambda d, s: _save({"epoch": 3, "acc": 90.1}, d / "meta.pt"), "no state_dict found"),
    ("a list of tensors", lambda d, s: _save(list(s.values()), d / "list.pt"), "no state_dict found"),
]


def _zip(d: Path) -> Path:
    with zipfile.ZipFile(d / "code.pt", "w") as archive:
        archive.writestr("Network.py", "print('hello')\n")
    return d / "code.pt"


@pytest.mark.parametrize(("name", "make", "says"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_broken_files_are_rejected_with_a_message(name: str, make: Any, says: str, state: dict, tmp_path: Path) -> None:
    with pytest.raises(CheckpointRejected) as caught:
        load_checkpoint(make(tmp_path, state))
    assert says in caught.value.message


def test_a_whole_pickled_module_is_rejected_without_running_its_code(tmp_path: Path) -> None:
    marker = tmp_path / "module-code-ran"
    path = _save(WholeModel(marker), tmp_path / "model.pt")
    with pytest.raises(CheckpointRejected) as caught:
        load_checkpoint(path)
    assert not marker.exists()
    assert "torch.save(model)" in caught.value.message and "state_dict()" in caught.value.message
    assert "WholeModel" in caught.value.message


@pytest.mark.parametrize("form", ["raw pickle, protocol 2", "inside a torch zip", "inside a legacy torch file"])
def test_a_pickle_whose_reduce_creates_a_file_is_rejected_and_the_file_is_absent(form: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    if form.startswith("raw"):
        path.write_bytes(pickle.dumps({"conv.weight": _Marker(marker)}, protocol=2))
    else:
        _save({"conv.weight": _Marker(marker)}, path, _use_new_zipfile_serialization=form.endswith("zip"))
    assert not marker.exists()
    with pytest.raises(CheckpointRejected):
        load_checkpoint(path)
    assert not marker.exists()


def test_a_missing_file_is_an_infrastructure_error(tmp_path: Path) -> None:
    with pytest.raises(InfrastructureError, match="cannot read checkpoint file"):
        load_checkpoint(tmp_path / "gone.pt")


def test_non_tensor_entries_next_to_the_tensors_are_reported_not_used(state: dict, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    torch.save({**state, "epoch": 7}, buffer)
    path = _file(tmp_path, "m.pt", buffer.getvalue())
    checkpoint = load_checkpoint(path)
    assert checkpoint.ignored_entries == ["epoch"] and set(checkpoint.tensors) == set(state)
