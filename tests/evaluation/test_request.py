"""One evaluation request, built in one place for the service and `grader grade` alike."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from grader.errors import InfrastructureError, InvalidAnswer
from grader.evaluation.request import (
    CODE_CHECKS,
    REFERENCE,
    STUDENT_CODE,
    EvaluationRequest,
    checkpoint_request,
    code_checks_request,
    run_request,
)
from grader.grading import LocalFiles
from grader.sandbox.archive import normalise_code_upload
from tests.conftest import REPO_ROOT, sandbox_limits

HW3 = REPO_ROOT / "rubrics" / "csce636-hw3.yaml"
CHECKPOINT, CODE = "a" * 64, "b" * 64
SHEET = {"q1": {"v1_config": {"resnet_size": 3, "first_num_filters": 16}}}


@pytest.fixture
def bare_rubric(tmp_path: Path) -> Path:
    """The HW3 rubric without its model_interface and code_checks sections: an assignment that runs no student code."""
    text = HW3.read_text()
    path = tmp_path / "bare.yaml"
    path.write_text(text[: text.index("\nmodel_interface:")] + "\n")
    return path


def test_a_checkpoint_alone_is_evaluated_on_the_reference_family() -> None:
    request = checkpoint_request("v1", SHEET, CHECKPOINT, code_sha256=None, rubric=HW3)
    assert request.mode == REFERENCE and request.code_sha256 is None and request.config is None
    assert request.preprocessing["kind"]  # the default when the sheet declares none


def test_a_checkpoint_with_code_runs_the_students_network_with_the_sheets_arguments() -> None:
    request = checkpoint_request("v1", SHEET, CHECKPOINT, code_sha256=CODE, rubric=HW3)
    assert request.mode == STUDENT_CODE and request.code_sha256 == CODE
    assert request.config is not None and request.config["arguments"]["resnet_size"] == 3
    assert request.config["arguments"]["resnet_version"] == 1
    alone = checkpoint_request("v1", SHEET, CHECKPOINT, code_sha256=None, rubric=HW3)
    other_arguments = {"q1": {"v1_config": {"resnet_size": 5, "first_num_filters": 16}}}
    changed = checkpoint_request("v1", other_arguments, CHECKPOINT, code_sha256=CODE, rubric=HW3)
    assert len({request.cache_key, alone.cache_key, changed.cache_key}) == 3


def test_code_the_sheet_does_not_say_how_to_run_is_an_invalid_answer(bare_rubric: Path) -> None:
    with pytest.raises(InvalidAnswer, match="v1_config"):
        checkpoint_request("v1", {}, CHECKPOINT, code_sha256=CODE, rubric=HW3)
    with pytest.raises(InvalidAnswer, match="does not run student code"):
        checkpoint_request("v1", SHEET, CHECKPOINT, code_sha256=CODE, rubric=bare_rubric)


def test_code_checks_run_only_where_the_rubric_declares_them(bare_rubric: Path) -> None:
    request = code_checks_request("v1_code", CODE, rubric=HW3)
    assert request is not None and request.mode == CODE_CHECKS and request.label == "v1_code"
    assert request.config is not None and "preprocessing" in request.config["spec"]
    assert code_checks_request("v1_code", CODE, rubric=bare_rubric) is None


def test_an_unknown_mode_is_the_graders_error_not_a_result() -> None:
    request = EvaluationRequest("v1", CHECKPOINT, "key", {}, mode="telepathy")
    with pytest.raises(InfrastructureError, match="unknown mode"):
        run_request(request, LocalFiles(), cifar10_root=None, limits=sandbox_limits())


def test_a_code_folder_on_the_command_line_is_keyed_like_the_same_code_uploaded(tmp_path: Path) -> None:
    """`grader grade --code` and the service cache the same code under the same key."""
    files = [("NetWork.py", b"import torch\n"), ("ImageUtils.py", b"def parse_record(r, training):\n    return r\n")]
    folder = tmp_path / "code"
    folder.mkdir()
    for name, data in files:
        (folder / name).write_bytes(data)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in reversed(files):
            archive.writestr(f"hw3/{name}", data)
    (tmp_path / "code.zip").write_bytes(buffer.getvalue())
    local = LocalFiles()
    from_folder = local.add_code(folder, field="v1_code")
    from_zip = local.add_code(tmp_path / "code.zip", field="v1_code")
    stored = hashlib.sha256(normalise_code_upload(files, field="v1_code")).hexdigest()
    assert from_folder == stored
    assert local.read_bytes(from_folder) == normalise_code_upload(files, field="v1_code")
    names = zipfile.ZipFile(io.BytesIO(local.read_bytes(from_zip))).namelist()
    assert sorted(name.rsplit("/", 1)[-1] for name in names) == ["ImageUtils.py", "NetWork.py"]
