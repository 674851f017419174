"""Student-code mode over HTTP: the student's own NetWork.py/ImageUtils.py run sandboxed next to their weights."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from grader.evaluation.cifar import load_cifar10_test
from tests.sandbox.submissions import load_module, write_submission
from tests.service.conftest import RunningService, small_checkpoint, wait_for_final

pytestmark = [pytest.mark.service, pytest.mark.slow, pytest.mark.usefixtures("sandbox")]
SHEET = Path(__file__).resolve().parent.parent / "data" / "correct_sheet.yaml"
CONFIG = {"resnet_size": 1, "first_num_filters": 8}


def _correct_when_run_directly(folder: Path, weights: Path, version: int, cifar10_root: Path) -> int:
    """What the submission scores run here, in the test process (trusted: the test wrote this code)."""
    model = load_module(folder, "NetWork").ResNet(version, CONFIG["resnet_size"], 10, CONFIG["first_num_filters"])
    model.load_state_dict(torch.load(weights, weights_only=True))
    testset = load_cifar10_test(cifar10_root, "cpu")
    parse = load_module(folder, "ImageUtils").parse_record
    rows = testset.images.reshape(len(testset), -1).numpy().astype(np.float32)
    images = torch.from_numpy(np.stack([parse(row.copy(), False) for row in rows])).float()
    with torch.inference_mode():
        predictions = torch.cat([model.eval()(batch).argmax(1) for batch in images.split(500)])
    return int((predictions == testset.labels).sum())


def test_a_student_submission_with_code_is_graded_in_student_code_mode(
    service: RunningService, tmp_path: Path, cifar10_root: Path
) -> None:
    code = write_submission(tmp_path / "hw3")
    torch.manual_seed(3)
    model = load_module(code, "NetWork").ResNet(2, CONFIG["resnet_size"], 10, CONFIG["first_num_filters"])
    weights = tmp_path / "model-v2.ckpt"
    torch.save(model.state_dict(), weights)
    sheet = yaml.safe_load(SHEET.read_text())
    sheet["q1"] = {"v2_config": CONFIG}
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        for path in sorted(code.glob("*.py")):
            archive.write(path, f"hw3/{path.name}")

    client = service.user("kim")
    files = [
        ("answers", ("answers.yaml", yaml.safe_dump(sheet).encode())),
        ("v2", ("model-v2.ckpt", weights.read_bytes())),
        ("v2_code", ("hw3.zip", zipped.getvalue())),
    ]
    response = client.post("/api/v1/assignments/csce636-hw3/submissions", files=files)
    assert response.status_code == 202, response.text
    body = wait_for_final(client, response.json()["status_url"], timeout=480)
    assert body["status"] == "graded", body
    assert "v2_code" in {file["field"] for file in body["files"]}

    parts = {part["id"]: part for part in body["parts"]}
    accuracy = parts["q1.v2_accuracy"]
    assert accuracy["evidence"]["mode"] == "student_code", accuracy
    assert accuracy["evidence"]["total"] == 10_000
    assert accuracy["evidence"]["correct"] == _correct_when_run_directly(code, weights, 2, cifar10_root)
    architecture = parts["q1.v2_architecture"]
    assert architecture["status"] == "correct", architecture


def test_student_code_that_kills_itself_is_reported_and_the_worker_goes_on(
    service: RunningService, tmp_path: Path, cifar10_root: Path
) -> None:
    healthy = write_submission(tmp_path / "healthy")
    torch.manual_seed(4)
    weights = tmp_path / "model-v2.ckpt"
    model = load_module(healthy, "NetWork").ResNet(2, CONFIG["resnet_size"], 10, CONFIG["first_num_filters"])
    torch.save(model.state_dict(), weights)
    hostile = write_submission(tmp_path / "hostile", image_utils="import os\nos.kill(os.getpid(), 9)\n")
    sheet = yaml.safe_load(SHEET.read_text())
    sheet["q1"] = {"v2_config": CONFIG}
    client = service.user("lee")

    def submit(code: Path) -> dict:
        files = [
            ("answers", ("answers.yaml", yaml.safe_dump(sheet).encode())),
            ("v2", ("model-v2.ckpt", weights.read_bytes())),
            *[("v2_code", (path.name, path.read_bytes())) for path in sorted(code.glob("*.py"))],
        ]
        response = client.post("/api/v1/assignments/csce636-hw3/submissions", files=files)
        assert response.status_code == 202, response.text
        return wait_for_final(client, response.json()["status_url"], timeout=480)

    killed = {part["id"]: part for part in submit(hostile)["parts"]}["q1.v2_accuracy"]
    assert killed["status"] == "invalid"
    assert killed["evidence"]["mode"] == "student_code"
    assert "crashed" in killed["feedback"] or "signal" in killed["feedback"], killed

    graded = {part["id"]: part for part in submit(healthy)["parts"]}["q1.v2_accuracy"]
    assert graded["evidence"]["total"] == 10_000
    assert graded["evidence"]["correct"] == _correct_when_run_directly(healthy, weights, 2, cifar10_root)


def test_code_uploaded_as_separate_files_and_bad_code_uploads(service: RunningService, tmp_path: Path) -> None:
    code = write_submission(tmp_path / "hw3")
    client = service.user("kim")
    answers = ("answers", ("answers.yaml", SHEET.read_bytes()))
    checkpoint = ("v2", ("model-v2.safetensors", small_checkpoint()))

    without_checkpoint = client.post(
        "/api/v1/assignments/csce636-hw3/submissions",
        files=[answers, ("v1_code", ("NetWork.py", (code / "NetWork.py").read_bytes()))],
    )
    assert without_checkpoint.status_code == 422
    assert without_checkpoint.json()["error"]["field"] == "v1_code"

    traversal = io.BytesIO()
    with zipfile.ZipFile(traversal, "w") as archive:
        archive.writestr("../../etc/NetWork.py", "x = 1\n")
    refused = client.post(
        "/api/v1/assignments/csce636-hw3/submissions",
        files=[answers, checkpoint, ("v2_code", ("code.zip", traversal.getvalue()))],
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["field"] == "v2_code" and ".." in refused.json()["error"]["message"]

    separate = [("v2_code", (path.name, path.read_bytes())) for path in sorted(code.glob("*.py"))]
    accepted = client.post("/api/v1/assignments/csce636-hw3/submissions", files=[answers, checkpoint, *separate])
    assert accepted.status_code == 202, accepted.text


def test_a_whole_starter_code_folder_gets_code_checks_and_a_ta_confirms_the_suggestion(
    service: RunningService, tmp_path: Path
) -> None:
    """The course hand-in as one `code` upload (no checkpoint needed): the worker runs the Q1(a), (b), (d) code checks
    in the sandbox; each part waits for a person with the suggested points, which one PUT confirms."""
    from tests.sandbox.code_folders import write_code_folder

    folder = write_code_folder(tmp_path / "hw3")
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        for path in sorted(folder.glob("*.py")):
            archive.write(path, f"hw3/{path.name}")
    student, ta = service.user("kai"), service.user("tess", role="ta")
    files = [("answers", ("answers.yaml", SHEET.read_bytes())), ("code", ("hw3.zip", zipped.getvalue()))]
    response = student.post("/api/v1/assignments/csce636-hw3/submissions", files=files)
    assert response.status_code == 202, response.text
    url = response.json()["status_url"]
    assert wait_for_final(student, url, timeout=480)["status"] == "graded"

    body = ta.get(url).json()
    assert {"answers", "code"} <= {file["field"] for file in body["files"]}
    parts = {part["id"]: part for part in body["parts"]}
    for part_id, points in (("q1.data_reader", 10), ("q1.augmentation", 10), ("q1.model", 20)):
        part = parts[part_id]
        assert part["status"] == "needs_review" and part["points"] == 0, part
        evidence = part["evidence"]
        assert evidence["suggested_points"] == points, part["feedback"]
        assert evidence["code_field"] == "code" and evidence["evaluation_status"] == "checked"
        assert {check["verdict"] for check in evidence["checks"].values()} == {"correct"}
    contents = ta.get(f"{url}/files/code/contents").json()
    assert [entry["name"] for entry in contents["files"]] == sorted(p.name for p in folder.glob("*.py"))

    queue = ta.get("/api/v1/assignments/csce636-hw3/review", params={"part": "q1.model"}).json()["items"]
    item = next(entry for entry in queue if entry["user"] == "kai")
    assert item["suggested_points"] == 20 and "batch_norm: correct" in item["feedback"]
    confirmed = ta.put(f"{url}/parts/q1.model/review", json={"points": item["suggested_points"]})
    assert confirmed.status_code == 200, confirmed.text
    part = next(p for p in confirmed.json()["parts"] if p["id"] == "q1.model")
    assert (part["status"], part["points"], part["reviewed"]) == ("correct", 20, True)
