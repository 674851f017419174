"""Student code cannot forge its result: what its process says about itself earns nothing.

Points come from the submitted weights run through a graph the grader checked and ran itself, on test images the
student's code never sees, preprocessed by the grader's own transform. Each attack below would score if the
grader trusted the student's process; each ends without accuracy or architecture credit, and the honest
starter submission still scores what its own code computes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from grader.evaluation.cifar import load_cifar10_test
from grader.evaluation.student import ModelInterface
from tests.evaluation.nets import AkamasterResNet
from tests.sandbox.submissions import NETWORK, write_submission
from tests.sandbox.test_student_mode import evaluate, in_process_confusion, save_weights

pytestmark = pytest.mark.usefixtures("sandbox")


def resnet20_program() -> dict[str, Any]:
    """A real ResNet-20's exported graph, as a forger would paste it into the payload."""
    from grader.evaluation.student import harness

    return harness.export_program(AkamasterResNet(3, option="A").eval(), torch.randn(2, 3, 32, 32))


def forged_trace() -> dict[str, Any]:
    from grader.evaluation.program import Program

    model = AkamasterResNet(3, option="A").eval()
    program = Program.from_json(json.loads(json.dumps(resnet20_program())))
    with torch.inference_mode():
        return program.bind(model.state_dict()).trace(torch.randn(2, 3, 32, 32))


def labels_text(cifar10_root: Path) -> str:
    return json.dumps(load_cifar10_test(cifar10_root, "cpu").labels.tolist())


@pytest.fixture(scope="module")
def starter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_submission(tmp_path_factory.mktemp("honest") / "code")


@pytest.fixture(scope="module")
def weights(starter: Path, tmp_path_factory: pytest.TempPathFactory, cifar10_root: Path) -> Path:
    return save_weights(starter, 1, tmp_path_factory.mktemp("weights") / "model-v1.pt", cifar10_root)


def assert_no_credit(result: dict[str, Any]) -> None:
    assert result["status"] != "evaluated", result
    assert "accuracy_percent" not in result and "architecture" not in result and "correct" not in result


def test_a_forged_result_written_to_the_result_pipe_earns_nothing(
    tmp_path: Path, weights: Path, interface: ModelInterface, cifar10_root: Path
) -> None:
    """The probe's payload: predictions (here: the true labels) and a real ResNet-20's trace, then exit(0)."""
    forged = {"predictions": "LABELS", "trace": forged_trace(), "info": {}}
    text = json.dumps(forged).replace('"LABELS"', labels_text(cifar10_root))
    forge = f"""
import os
os.write(int(os.environ["GRADER_RESULT_FD"]), {text!r}.encode())
os._exit(0)
"""
    code = write_submission(tmp_path / "code", network=forge + NETWORK)
    result = evaluate(code, weights, interface, cifar10_root)
    assert_no_credit(result)
    assert result["status"] == "crashed" and "without a result" in result["message"]


def test_a_pasted_resnet20_graph_runs_only_with_weights_that_fit_it(
    tmp_path: Path, weights: Path, interface: ModelInterface, cifar10_root: Path
) -> None:
    """A well-formed payload claiming a ResNet-20 graph: the grader runs that graph with the uploaded weights (a
    smaller network's), which do not fit it, so there is nothing to score."""
    program = json.dumps(resnet20_program())
    forge = f"""
import __main__, json
__main__.export_program = lambda model, sample: json.loads({program!r})
"""
    code = write_submission(tmp_path / "code", network=forge + NETWORK)
    result = evaluate(code, weights, interface, cifar10_root)
    assert_no_credit(result)
    assert result["status"] == "rejected_invalid_file"
    assert "does not fit your network" in result["message"] and "missing: conv1.weight" in result["message"]


LABEL_TABLE = """
import json
import torch
import torch.nn as nn

LABELS = torch.tensor(json.loads(LABELS_TEXT))


class ResNet(nn.Module):
    '''Returns the (public) test labels in order, one batch after another: 100 % if its output were trusted.'''

    def __init__(self, resnet_version, resnet_size, num_classes, first_num_filters):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.register_buffer("table", torch.nn.functional.one_hot(LABELS, 10).float())
        self.seen = 0

    def forward(self, x):
        rows = self.table[self.seen : self.seen + x.shape[0]]
        self.seen += x.shape[0]
        return rows * self.scale
"""


def test_a_label_table_model_earns_nothing(
    tmp_path: Path, interface: ModelInterface, cifar10_root: Path, starter: Path
) -> None:
    network = f"LABELS_TEXT = {labels_text(cifar10_root)!r}\n" + LABEL_TABLE
    code = write_submission(tmp_path / "code", network=network)
    weights = tmp_path / "table.pt"
    model_state = {"scale": torch.ones(1)}
    torch.save(model_state, weights)
    result = evaluate(code, weights, interface, cifar10_root)
    assert_no_credit(result)
    assert result["status"] == "rejected" and "selects part of a weight" in result["message"]
    # the same with the table saved in the checkpoint too: the lookup itself (slicing a weight) is refused
    table = torch.nn.functional.one_hot(load_cifar10_test(cifar10_root, "cpu").labels.long(), 10).float()
    torch.save({"scale": torch.ones(1), "table": table}, weights)
    result = evaluate(code, weights, interface, cifar10_root)
    assert_no_credit(result)
    assert result["status"] == "rejected" and "selects part of a weight" in result["message"]


INDEXING = """
import torch
import torch.nn as nn


class ResNet(nn.Module):
    '''Looks each image's label up in a table by a hash of its pixels: a lookup, not a network.'''

    def __init__(self, resnet_version, resnet_size, num_classes, first_num_filters):
        super().__init__()
        self.register_buffer("table", torch.zeros(65536, 10))

    def forward(self, x):
        key = (x.flatten(1)[:, :16] * 1000).long().sum(1) % 65536
        return self.table[key]
"""


def test_data_dependent_indexing_is_refused_with_the_operation_named(
    tmp_path: Path, interface: ModelInterface, cifar10_root: Path
) -> None:
    code = write_submission(tmp_path / "code", network=INDEXING)
    weights = tmp_path / "hash.pt"
    torch.save({"table": torch.zeros(65536, 10)}, weights)
    result = evaluate(code, weights, interface, cifar10_root)
    assert_no_credit(result)
    assert result["status"] == "rejected"
    assert "which is not among the operations a CIFAR ResNet needs" in result["message"]


PATCHED_HARNESS = """
import __main__

_real_evaluate = __main__.evaluate


def _evaluate(job):
    payload = _real_evaluate(job)
    payload["predictions"] = LABELS
    payload["accuracy_percent"] = 100.0
    payload["trace"] = {"events": [], "modules": []}
    return payload


__main__.evaluate = _evaluate
"""


def test_a_monkeypatched_harness_changes_nothing_the_grader_computes(
    starter: Path, tmp_path: Path, weights: Path, interface: ModelInterface, cifar10_root: Path
) -> None:
    """The student's module replaces the harness's own functions; extra fields in the payload are ignored and the
    score is what the grader computes from the weights (the same as the honest code's)."""
    network = f"LABELS = {labels_text(cifar10_root)}\n" + PATCHED_HARNESS + NETWORK
    code = write_submission(tmp_path / "code", network=network)
    result = evaluate(code, weights, interface, cifar10_root)
    assert result["status"] == "evaluated", result.get("message")
    assert result["confusion_matrix"] == in_process_confusion(starter, weights, 1, cifar10_root)
    assert result["accuracy_percent"] < 50
    assert result["architecture"]["block"] == "standard"


SMUGGLING_PREPROCESSING = """
import numpy as np


def parse_record(record, training):
    image = record.reshape((3, 32, 32)).astype(np.float32)
    image = (image - image.mean()) / max(image.std(), 1.0 / np.sqrt(image.size))
    image[0, 0, 0] = 7.0  # a channel a network could be trained to read (e.g. the label)
    return image
"""


def test_preprocessing_that_is_no_known_kind_is_refused_and_never_sees_a_test_image(
    tmp_path: Path, weights: Path, interface: ModelInterface, cifar10_root: Path
) -> None:
    code = write_submission(tmp_path / "code", image_utils=SMUGGLING_PREPROCESSING)
    result = evaluate(code, weights, interface, cifar10_root)
    assert_no_credit(result)
    assert result["status"] == "rejected"
    assert "cannot be reproduced by the grader" in result["message"]
    assert "matches none of the known kinds" in result["message"]


MEAN_STD = """
import numpy as np


def parse_record(record, training):
    image = record.reshape((3, 32, 32)).astype(np.float32) / 255.0
    mean = np.array([0.4914, 0.4822, 0.4465], dtype=np.float32).reshape(3, 1, 1)
    std = np.array([0.2470, 0.2435, 0.2616], dtype=np.float32).reshape(3, 1, 1)
    return (image - mean) / std
"""


def test_a_known_kind_is_identified_with_its_parameters(
    tmp_path: Path, weights: Path, interface: ModelInterface, cifar10_root: Path
) -> None:
    code = write_submission(tmp_path / "code", image_utils=MEAN_STD)
    result = evaluate(code, weights, interface, cifar10_root)
    assert result["status"] == "evaluated", result.get("message")
    spec = result["preprocessing"]
    assert spec["kind"] == "mean_std"
    assert spec["mean"] == pytest.approx([0.4914, 0.4822, 0.4465], abs=1e-4)
    assert spec["std"] == pytest.approx([0.2470, 0.2435, 0.2616], abs=1e-4)
