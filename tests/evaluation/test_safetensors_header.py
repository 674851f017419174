"""A safetensors file's header is validated, and its structure checked, before any tensor is materialised."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import safetensors.torch
import torch
from safetensors.torch import save_file

from grader.evaluation.checkpoint import CheckpointRejected, read_safetensors_header
from grader.evaluation.evaluate import evaluate_in_process
from tests.evaluation.nets import StarterResNet


def _file(header: dict, body: bytes = b"") -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + body


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"\x10\0\0\0\0\0\0\0{", "more than the file holds"),
        (struct.pack("<Q", 2**40) + b"{}", "more than the file holds"),
        (_file({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}), "points outside the file"),
        (_file({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8), "does not match shape"),
        (_file({"w": {"dtype": "OBJ", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 8), "no supported dtype"),
        (_file({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4), "invalid shape"),
        (_file({"w": {"dtype": "F32", "shape": [1] * 100_000, "data_offsets": [0, 4]}}, b"\0" * 4), "invalid shape"),
        (_file({"w": {"dtype": "U8", "shape": [2**30, 2**30], "data_offsets": [0, 0]}}), "does not match"),
        (_file(["not", "a", "mapping"]), "not a mapping"),
    ],
)
def test_hostile_headers_are_refused_with_the_reason(data: bytes, says: str) -> None:
    with pytest.raises(CheckpointRejected, match=says):
        read_safetensors_header(data)


def test_a_valid_header_gives_shapes_without_data(tmp_path: Path) -> None:
    path = tmp_path / "v2.safetensors"
    state = StarterResNet(version=2, size=1, first=8).state_dict()
    save_file({name: tensor.contiguous() for name, tensor in state.items()}, path)
    meta = read_safetensors_header(path.read_bytes())
    assert set(meta) == set(state)
    assert all(tensor.is_meta and tensor.shape == state[name].shape for name, tensor in meta.items())


def test_a_wrong_structure_is_rejected_before_tensor_data_is_read(
    tmp_path: Path, cifar10_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "not-a-resnet.safetensors"
    save_file({"encoder.weight": torch.zeros(64, 3072), "head.weight": torch.zeros(10, 64)}, path)

    def never(*_: object, **__: object) -> None:
        raise AssertionError("tensor data was materialised")

    monkeypatch.setattr(safetensors.torch, "load", never)
    result = evaluate_in_process(path, preprocessing="scale", cifar10_root=cifar10_root, device="cpu", limit=10)
    assert result["status"] == "rejected"
    assert "residual blocks" in result["message"]
