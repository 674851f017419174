"""Student-code mode end to end: the student's own NetWork.py / ImageUtils.py run sandboxed on real CIFAR-10 images,
scored against labels the sandbox never sees; hostile submissions end in their documented status."""

from __future__ import annotations

import json
import os
import pickle
import re
import socket
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.torch
import torch

from grader.errors import InvalidAnswer
from grader.evaluation.cifar import load_cifar10_test
from grader.evaluation.student import ModelInterface, evaluate_student_code, student_mode
from grader.sandbox import SandboxLimits
from tests.conftest import REPO_ROOT, sandbox_limits
from tests.evaluation.nets import calibrate
from tests.sandbox.submissions import NETWORK, load_module, write_submission
from tests.sandbox.test_runner import assert_next_run_works, sandbox_processes

pytestmark = pytest.mark.usefixtures("sandbox")

IMAGES = 500
CONFIG = {"resnet_size": 1, "first_num_filters": 8}
QUICK = sandbox_limits(wall_seconds=60, cpu_seconds=60, memory_bytes=4 << 30, threads=2)


def preprocessed(folder: Path, cifar10_root: Path) -> torch.Tensor:
    """The first IMAGES test images through the submission's own parse_record, as the harness hands them over."""
    image_utils = load_module(folder, "ImageUtils")
    rows = load_cifar10_test(cifar10_root, "cpu").images[:IMAGES].reshape(IMAGES, -1).numpy().astype(np.float32)
    return torch.from_numpy(np.stack([image_utils.parse_record(row.copy(), False) for row in rows])).float()


def in_process_confusion(folder: Path, checkpoint: Path, version: int, cifar10_root: Path) -> list[list[int]]:
    """What the submission predicts when run here, directly (trusted test code), as a confusion matrix."""
    model = load_module(folder, "NetWork").ResNet(version, CONFIG["resnet_size"], 10, CONFIG["first_num_filters"])
    model.load_state_dict(torch.load(checkpoint, weights_only=True))
    images = preprocessed(folder, cifar10_root)
    with torch.inference_mode():
        batches = images.split(student_mode.CPU_BATCH)
        predictions = torch.cat([model.eval()(batch).argmax(1) for batch in batches]).tolist()
    assert len(set(predictions)) >= 5, "a network predicting few classes would not show much"
    labels = load_cifar10_test(cifar10_root, "cpu").labels[:IMAGES].tolist()
    confusion = np.zeros((10, 10), dtype=int)
    np.add.at(confusion, (labels, predictions), 1)
    return confusion.tolist()


def save_weights(folder: Path, version: int, path: Path, cifar10_root: Path) -> Path:
    """Random weights with BN statistics from real images and centred logits, so predictions spread out."""
    torch.manual_seed(version)
    model = load_module(folder, "NetWork").ResNet(version, CONFIG["resnet_size"], 10, CONFIG["first_num_filters"])
    calibrate(model, preprocessed(folder, cifar10_root)[:200], seed=version)
    torch.save(model.state_dict(), path)
    return path


def evaluate(code: Path, checkpoint: Path, interface: ModelInterface, cifar10_root: Path, **kwargs: Any) -> dict:
    kwargs.setdefault("limits", QUICK)
    label = kwargs.pop("label", "v1")
    return evaluate_student_code(
        code,
        checkpoint,
        label=label,
        config=CONFIG,
        interface=interface,
        cifar10_root=cifar10_root,
        limit_images=IMAGES,
        **kwargs,
    )


@pytest.fixture(scope="module")
def starter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_submission(tmp_path_factory.mktemp("starter") / "code")


@pytest.fixture(scope="module")
def v1_weights(starter: Path, tmp_path_factory: pytest.TempPathFactory, cifar10_root: Path) -> Path:
    return save_weights(starter, 1, tmp_path_factory.mktemp("weights") / "model-v1.ckpt", cifar10_root)


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        (1, {"version": 1, "activation": "post", "block": "standard", "shortcut": "projection", "stem_bn": True}),
        (2, {"version": 2, "activation": "pre", "block": "bottleneck", "shortcut": "projection", "final_bn": True}),
    ],
)
def test_predictions_match_the_code_run_directly_and_the_trace_gives_the_architecture(
    starter: Path,
    tmp_path: Path,
    interface: ModelInterface,
    cifar10_root: Path,
    version: int,
    expected: dict[str, Any],
) -> None:
    checkpoint = save_weights(starter, version, tmp_path / f"model-v{version}.ckpt", cifar10_root)
    result = evaluate(starter, checkpoint, interface, cifar10_root, label=f"v{version}")
    assert result["status"] == "evaluated", result.get("message")
    assert result["confusion_matrix"] == in_process_confusion(starter, checkpoint, version, cifar10_root)
    assert result["total"] == IMAGES and result["mode"] == "student_code"
    assert result["network_arguments"] == {
        "resnet_version": version,
        "resnet_size": 1,
        "num_classes": 10,
        "first_num_filters": 8,
    }
    architecture = result["architecture"]
    assert {key: architecture[key] for key in expected} == expected
    assert architecture["blocks_per_stage"] == [1, 1, 1]
    first = result["trace"]["stages"][0]["order"]
    assert first[:3] == (["conv", "bn", "relu"] if version == 1 else ["bn", "relu", "conv"])


def test_a_checkpoint_whose_pickle_would_run_code_is_refused_and_nothing_runs(
    starter: Path, tmp_path: Path, interface: ModelInterface, cifar10_root: Path
) -> None:
    canary = tmp_path / "canary"

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.mkdir, (str(canary),))

    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps({"state_dict": Payload()}, protocol=2))
    zipped = tmp_path / "zipped.pt"
    torch.save({"state_dict": Payload()}, zipped)  # torch.save pickles; nothing here unpickles
    for checkpoint in (raw, zipped):
        result = evaluate(starter, checkpoint, interface, cifar10_root)
        assert result["status"] == "rejected_invalid_file"
        assert "holds Python objects, not only tensors" in result["message"]
        assert not canary.exists()
    assert_next_run_works()


def test_the_checkpoint_is_only_ever_loaded_inside_the_sandbox(
    starter: Path,
    v1_weights: Path,
    tmp_path: Path,
    interface: ModelInterface,
    cifar10_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With every loader broken in this (the worker's) process, evaluations still work: nothing here parses one."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the parent process loaded an uploaded checkpoint")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(safetensors.torch, "load", refuse)
    assert evaluate(starter, v1_weights, interface, cifar10_root)["status"] == "evaluated"
    as_safetensors = tmp_path / "model-v1.safetensors"
    as_safetensors.write_bytes(safetensors.torch.save(torch_load_trusted(v1_weights)))
    result = evaluate(starter, as_safetensors, interface, cifar10_root)
    assert result["status"] == "evaluated", result.get("message")
    assert result["checkpoint"]["format"] == "safetensors"


def torch_load_trusted(path: Path) -> dict[str, torch.Tensor]:
    """The test's own file, read before torch.load is patched (module import time binds the real one)."""
    return _REAL_TORCH_LOAD(path, weights_only=True)


_REAL_TORCH_LOAD = torch.load


SNOOP = """
import json, os, socket, sys
report = {}
for port in PORTS:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        report[str(port)] = "connected"
    except OSError as exc:
        report[str(port)] = type(exc).__name__
for number, path in enumerate(PATHS):
    try:
        with open(path) as handle:
            report[f"path{number}"] = "read: " + handle.read(60)
    except OSError as exc:
        report[f"path{number}"] = type(exc).__name__
report["init_environ"] = open("/proc/1/environ").read()
report["self_environ"] = open("/proc/self/environ").read()
print("SNOOP " + json.dumps(report), file=sys.stderr, flush=True)
raise RuntimeError("snooped")
"""


def test_student_code_sees_no_network_no_other_upload_and_no_secret(
    tmp_path: Path, v1_weights: Path, interface: ModelInterface, cifar10_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "canary-secret-5f1e"
    monkeypatch.setenv("GRADER_SECRET_KEY", secret)
    other = tmp_path / "uploads" / "other-student" / "NetWork.py"
    other.parent.mkdir(parents=True)
    other.write_text(f"# {secret}\n")
    paths = [str(other), str(REPO_ROOT / "pyproject.toml"), "/etc/passwd", "/proc/1/root/etc/hostname"]
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        ports = [6379, 5432, listener.getsockname()[1]]
        snoop = f"PORTS = {ports!r}\nPATHS = {paths!r}\n" + SNOOP
        code = write_submission(tmp_path / "code", network=snoop + NETWORK)
        result = evaluate(code, v1_weights, interface, cifar10_root)
        with pytest.raises(BlockingIOError):
            listener.accept()
    assert result["status"] == "crashed" and "RuntimeError: snooped (NetWork.py, line" in result["message"]
    line = next(x for x in result["sandbox"]["stderr_tail"].splitlines() if x.startswith("SNOOP "))
    report = json.loads(line.removeprefix("SNOOP "))
    assert {report[str(port)] for port in ports} == {"ConnectionRefusedError"}
    assert all(report[f"path{n}"] in ("FileNotFoundError", "PermissionError") for n in range(len(paths))), report
    assert report["init_environ"] == "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\x00"
    assert "GRADER" not in report["self_environ"].replace("GRADER_RESULT_FD", "")
    assert secret not in json.dumps(result)


HOSTILE = {
    "fork-bomb": "import os, time\nwhile True:\n    if os.fork() == 0:\n        time.sleep(60)\n        os._exit(0)\n",
    "spin": "while True:\n    pass\n",
    "sleep": "import time\ntime.sleep(3600)\n",
    "allocate-100GB": "hoard = bytearray(100 * 2**30)\n",
    "print-100MB": "import sys\nfor _ in range(100):\n    sys.stdout.write('x' * 2**20)\n",
}


@pytest.mark.parametrize(
    ("name", "limits", "status", "message"),
    [
        ("fork-bomb", QUICK, "resource_limit", r"more than 64 processes or threads"),
        ("spin", replace(QUICK, cpu_seconds=6), "timed_out", r"6 s of CPU time"),
        ("sleep", replace(QUICK, wall_seconds=6), "timed_out", r"6 s of wall-clock time"),
        ("allocate-100GB", QUICK, "memory_limit", r"MemoryError|out of memory"),
        ("print-100MB", QUICK, "resource_limit", r"printing more than 1048576 bytes to stdout"),
    ],
)
def test_hostile_student_code_ends_in_its_status(
    tmp_path: Path,
    v1_weights: Path,
    interface: ModelInterface,
    cifar10_root: Path,
    name: str,
    limits: SandboxLimits,
    status: str,
    message: str,
) -> None:
    code = write_submission(tmp_path / "code", network=HOSTILE[name] + NETWORK)
    result = evaluate(code, v1_weights, interface, cifar10_root, limits=limits)
    assert result["status"] == status, result
    assert re.search(message, result["message"]), result["message"]
    assert "accuracy_percent" not in result
    assert sandbox_processes() == []
    assert_next_run_works()


FAKE = """
import json, sys
print(json.dumps({"status": "evaluated", "accuracy_percent": 100.0, "predictions": [0] * 10000}))
for path in ["/tmp/result.json", "/sandbox/input/result.json", "/sandbox/code/result.json", SCORES]:
    try:
        with open(path, "w") as handle:
            handle.write('{"accuracy_percent": 100.0}')
    except OSError:
        pass
"""


def test_printed_or_written_fake_results_do_not_change_the_score(
    starter: Path, tmp_path: Path, v1_weights: Path, interface: ModelInterface, cifar10_root: Path
) -> None:
    scores = tmp_path / "scores.json"
    scores.write_text("{}")
    code = write_submission(tmp_path / "code", network=f"SCORES = {str(scores)!r}\n" + FAKE + NETWORK)
    result = evaluate(code, v1_weights, interface, cifar10_root)
    assert result["status"] == "evaluated"
    assert result["confusion_matrix"] == in_process_confusion(starter, v1_weights, 1, cifar10_root)
    assert result["accuracy_percent"] < 50
    assert scores.read_text() == "{}"


def test_weights_that_do_not_fit_the_students_network_are_named(
    starter: Path, tmp_path: Path, interface: ModelInterface, cifar10_root: Path
) -> None:
    v2 = save_weights(starter, 2, tmp_path / "model-v2.ckpt", cifar10_root)
    result = evaluate(starter, v2, interface, cifar10_root, label="v1")
    assert result["status"] == "rejected_invalid_file"
    assert "loading the weights into your network: missing: " in result["message"]
    assert "batch_norm_relu_start.batch_norm.weight" in result["message"]


def test_an_error_in_the_students_code_is_reported_with_file_and_line(
    tmp_path: Path, v1_weights: Path, interface: ModelInterface, cifar10_root: Path
) -> None:
    broken = "def parse_record(record, training):\n    return record.reshape((3, 32, 32)) / 0 + undefined_name\n"
    code = write_submission(tmp_path / "code", image_utils=broken)
    result = evaluate(code, v1_weights, interface, cifar10_root)
    assert result["status"] == "crashed"
    assert "NameError: name 'undefined_name' is not defined (ImageUtils.py, line 2)" in result["message"]
    assert "grader" not in result["message"]  # the student sees their error, not the grader's internals


def test_missing_files_unsafe_folders_and_bad_config_are_refused_before_running(
    tmp_path: Path, v1_weights: Path, interface: ModelInterface, cifar10_root: Path
) -> None:
    only_network = tmp_path / "only-network"
    only_network.mkdir()
    (only_network / "Network.py").write_text(NETWORK)  # the case differs from NetWork: still found
    result = evaluate(only_network, v1_weights, interface, cifar10_root)
    assert (result["status"], result["message"]) == ("rejected_invalid_file", "ImageUtils.py not found in your code")

    linked = write_submission(tmp_path / "linked")
    (linked / "Model.py").symlink_to("/etc/passwd")
    assert evaluate(linked, v1_weights, interface, cifar10_root)["status"] == "rejected_unsafe"

    with pytest.raises(InvalidAnswer, match=r"q1\.v1_config: missing 'first_num_filters'"):
        evaluate_student_code(
            linked,
            v1_weights,
            label="v1",
            config={"resnet_size": 1},
            interface=interface,
            cifar10_root=cifar10_root,
            limits=QUICK,
        )
    assert sys.modules.get("NetWork") is None  # nothing of the student's was imported here
