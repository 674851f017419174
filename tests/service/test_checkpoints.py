"""Q1 over HTTP: v1 and v2 checkpoints are evaluated by the worker's `gpu` queue task, cached, and scored."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from tests.evaluation.nets import StarterResNet
from tests.service.conftest import RunningService, wait_for_final

pytestmark = [pytest.mark.service, pytest.mark.slow]
SHEET = Path(__file__).resolve().parent.parent / "data" / "correct_sheet.yaml"
IMAGENET_MEAN_STD = {"kind": "mean_std", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


@pytest.fixture(scope="module")
def q1_files(tmp_path_factory: pytest.TempPathFactory, cifar10_root: Path, resnet20_checkpoint: Path) -> dict:
    source = resnet20_checkpoint
    folder = tmp_path_factory.mktemp("q1")
    v1 = folder / "resnet20-v1.th"
    shutil.copyfile(source, v1)
    torch.manual_seed(0)
    v2 = folder / "model-v2.ckpt"
    torch.save(StarterResNet(version=2, size=1, first=8).state_dict(), v2)
    sheet = yaml.safe_load(SHEET.read_text())
    sheet["q1"] = {"v1_preprocessing": IMAGENET_MEAN_STD, "v2_preprocessing": "per_image_standardization"}
    answers = folder / "answers.yaml"
    answers.write_text(yaml.safe_dump(sheet))
    return {"answers": answers, "v1": v1, "v2": v2}


def _submit(service: RunningService, user: str, files: dict[str, Path]) -> dict:
    client = service.user(user)
    payload = {field: (path.name, path.read_bytes()) for field, path in files.items()}
    response = client.post("/api/v1/assignments/csce636-hw3/submissions", files=payload)
    assert response.status_code == 202, response.text
    return wait_for_final(client, response.json()["status_url"], timeout=480)


def _evaluations_run(service: RunningService) -> int:
    return service.log().count("Task grader.evaluate_checkpoint[")  # Celery logs "received" and "succeeded"


def test_checkpoints_are_evaluated_on_the_gpu_queue_and_scored(
    service: RunningService, q1_files: dict[str, Path]
) -> None:
    body = _submit(service, "erin", q1_files)
    assert body["status"] == "graded", body
    parts = {part["id"]: part for part in body["parts"]}

    v1 = parts["q1.v1_accuracy"]
    assert v1["status"] == "correct" and v1["points"] == v1["max_points"]
    assert v1["evidence"]["accuracy_percent"] == 91.73
    assert (v1["evidence"]["correct"], v1["evidence"]["total"]) == (9173, 10000)
    # Loaded and run in a sandboxed child of the worker, never in the worker's own process.
    assert (v1["evidence"]["mode"], v1["evidence"]["isolation"]) == ("reference", "bubblewrap")
    assert parts["q1.v1_architecture"]["status"] == "correct"

    assert parts["q1.v2_architecture"]["status"] == "correct", parts["q1.v2_architecture"]
    v2 = parts["q1.v2_accuracy"]
    assert v2["evidence"]["total"] == 10000
    assert v2["points"] < v2["max_points"]  # random weights: near chance, deducted
    assert _evaluations_run(service) > 0


def test_same_checkpoint_and_preprocessing_reuses_the_stored_evaluation(
    service: RunningService, q1_files: dict[str, Path]
) -> None:
    first = _submit(service, "erin", q1_files)
    evaluations_before = _evaluations_run(service)
    second = _submit(service, "frank", q1_files)
    assert _evaluations_run(service) == evaluations_before
    assert [p for p in second["parts"] if p["id"].startswith("q1.")] == [
        p for p in first["parts"] if p["id"].startswith("q1.")
    ]


def test_grader_grade_with_checkpoints_gives_the_api_result(service: RunningService, q1_files: dict[str, Path]) -> None:
    body = _submit(service, "erin", q1_files)
    offline = json.loads(
        service.cli(
            "grade",
            "--answers",
            str(q1_files["answers"]),
            "--checkpoint",
            f"v1={q1_files['v1']}",
            "--checkpoint",
            f"v2={q1_files['v2']}",
            "--json",
        ).stdout
    )
    staff = service.user("alice", role="instructor").get(body["status_url"]).json()  # staff see everything
    assert offline["score"] == staff["score"]
    assert offline["parts"] == [
        {k: v for k, v in part.items() if k not in ("reviewed", "review")} for part in staff["parts"]
    ]
    # the score's provenance, stored with it: versions, file hashes, each evaluation's torch, device, test set
    provenance = staff["history"][-1]["provenance"]
    files = {f["field"]: f["sha256"] for f in staff["files"]}
    assert provenance["rubric_version"] == staff["rubric_version"] and provenance["files"] == files
    for label in ("v1", "v2"):
        evaluation = provenance["checkpoints"][label]
        assert evaluation["checkpoint_sha256"] == files[label] and evaluation["device"] == "cpu"
        assert evaluation["torch_version"] and evaluation["evaluator_version"]
    assert len(provenance["test_set"]["pixels_sha256"]) == 64
    mine = service.user("erin").get(body["status_url"]).json()
    assert mine["history"] is None  # students never see it


def test_two_submissions_waiting_on_one_evaluation_are_both_graded(
    service: RunningService, q1_files: dict[str, Path], tmp_path: Path
) -> None:
    torch.manual_seed(1)
    shared = tmp_path / "shared-v2.pt"
    torch.save(StarterResNet(version=2, size=1, first=8).state_dict(), shared)
    files = {"answers": q1_files["answers"], "v2": shared}
    clients = [service.user("ivan"), service.user("judy")]
    urls = []
    for client in clients:  # both sent before the evaluation can finish
        payload = {field: (path.name, path.read_bytes()) for field, path in files.items()}
        response = client.post("/api/v1/assignments/csce636-hw3/submissions", files=payload)
        assert response.status_code == 202
        urls.append(response.json()["status_url"])
    bodies = [wait_for_final(client, url, timeout=300) for client, url in zip(clients, urls, strict=True)]
    accuracies = [
        next(part for part in body["parts"] if part["id"] == "q1.v2_accuracy")["evidence"]["correct"] for body in bodies
    ]
    assert [body["status"] for body in bodies] == ["graded", "graded"]
    assert accuracies[0] == accuracies[1]
