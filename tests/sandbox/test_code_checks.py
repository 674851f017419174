"""The Q1 code checks end to end: whole student code folders in the shape of the course skeleton, run in the sandbox,
judged against the grader's references; each classic mistake gets its verdict, and hostile code its status."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from grader.evaluation.student.code_checks import run_code_checks
from grader.evaluation.student.code_checks_spec import CodeChecksSpec, parse_code_checks, read_code_checks
from tests.conftest import REPO_ROOT, sandbox_limits
from tests.sandbox.code_folders import MISTAKES, write_code_folder

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("sandbox")]

LIMITS = sandbox_limits(wall_seconds=120, cpu_seconds=120, memory_bytes=4 << 30, threads=2)


@pytest.fixture(scope="module")
def spec() -> CodeChecksSpec:
    found = read_code_checks(REPO_ROOT / "rubrics" / "csce636-hw3.yaml")
    assert found is not None
    return found


def verdicts(result: dict[str, Any]) -> dict[str, str]:
    assert result["status"] == "checked", result.get("message")
    return {name: check["verdict"] for name, check in result["checks"].items()}


def test_a_correct_starter_shaped_folder_passes_every_check(tmp_path: Path, spec: CodeChecksSpec) -> None:
    result = run_code_checks(write_code_folder(tmp_path / "hw3"), spec, limits=LIMITS)
    assert verdicts(result) == dict.fromkeys(result["checks"], "correct"), {
        name: check["summary"] for name, check in result["checks"].items() if check["verdict"] != "correct"
    }
    assert set(result["checks"]) == {
        *("parse_record", "crop", "flip", "standardisation", "load_train", "load_test", "split"),
        *("network_v1", "network_v2", "training_loss", "batch_norm", "zero_grad", "checkpoint"),
    }
    assert result["preprocessing"] == {"kind": "per_image_standardization"}
    assert result["mode"] == "code_checks" and result["sandbox"]["isolation"] == "bubblewrap"
    assert result["checks"]["training_loss"]["evidence"]["inputs"] == "parse_record"


@pytest.mark.parametrize(
    ("mistake", "stage", "expected", "words"),
    [
        ("missing_transpose", "preprocessing", {"parse_record": "incorrect"}, "reshape it to [3, 32, 32] first"),
        ("crop_without_padding", "preprocessing", {"crop": "incorrect", "flip": "incorrect"}, "Pad 4 pixels"),
        ("flip_never_applied", "preprocessing", {"flip": "incorrect"}, "None of 256 outputs was flipped"),
        ("standardisation_mismatch", "preprocessing", {"standardisation": "partial"}, "per_channel_standardization"),
        ("batch_norm_train_mode_at_test", "training", {"batch_norm": "incorrect"}, "call self.network.eval()"),
        # Summed gradients may blow the loss up: then it does not go down either.
        ("gradients_never_zeroed", "training", {"zero_grad": "incorrect", "training_loss": "*"}, "never zeroed"),
    ],
)
def test_each_classic_mistake_gets_its_verdict_and_nothing_else_does(
    tmp_path: Path, spec: CodeChecksSpec, mistake: str, stage: str, expected: dict[str, str], words: str
) -> None:
    assert mistake in MISTAKES
    result = run_code_checks(write_code_folder(tmp_path / mistake, mistake), spec, limits=LIMITS, stages=(stage,))
    found = verdicts(result)
    wanted = {name: expected.get(name, "correct") for name in found}
    assert {name: verdict for name, verdict in found.items() if wanted[name] != "*"} == {
        name: verdict for name, verdict in wanted.items() if verdict != "*"
    }, {name: check["summary"] for name, check in result["checks"].items()}
    summaries = " ".join(result["checks"][name]["summary"] for name in expected if expected[name] != "*")
    assert words in summaries


def test_a_missing_module_or_a_hanging_function_fails_only_its_own_stage(tmp_path: Path) -> None:
    folder = write_code_folder(tmp_path / "hw3")
    (folder / "DataReader.py").unlink()
    hanging = (
        folder / "ImageUtils.py"
    ).read_text() + "\n\ndef preprocess_image(image, training):\n    while True:\n        pass\n"
    (folder / "ImageUtils.py").write_text(hanging)
    quick = parse_code_checks({"stage_seconds": 3, "preprocessing": {"seeds": 64}})
    result = run_code_checks(folder, quick, limits=LIMITS, stages=("preprocessing", "data_reader", "network"))
    found = verdicts(result)
    assert found["load_train"] == found["load_test"] == "incorrect"
    assert "DataReader.py is not among the submitted files" in result["checks"]["load_train"]["summary"]
    assert found["crop"] == "incorrect" and "did not finish within 3" in result["checks"]["crop"]["summary"]
    assert found["network_v1"] == found["network_v2"] == "correct"


@pytest.mark.parametrize(
    ("image_utils", "status"),
    [
        ("import os\nos.kill(os.getpid(), 9)\n", "crashed"),
        ("import os\nos._exit(0)\n", "crashed"),
        ("import sys\nprint('x' * 10_000_000)\n", "resource_limit"),
    ],
)
def test_hostile_code_ends_in_a_sandbox_status(tmp_path: Path, image_utils: str, status: str) -> None:
    folder = write_code_folder(tmp_path / "hostile", ImageUtils=image_utils)
    limits = sandbox_limits(wall_seconds=60, cpu_seconds=60, memory_bytes=4 << 30, max_output_bytes=100_000)
    result = run_code_checks(folder, parse_code_checks({}), limits=limits, stages=("preprocessing",))
    assert result["status"] == status, result
    assert result["message"].startswith("Running your code") and "checks" not in result
