"""The integrity report over HTTP and `grader integrity`: staff see two students who handed in the same checkpoint;
students get 403."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.evaluation.copies import torch_file
from tests.evaluation.nets import StarterResNet
from tests.service.conftest import RunningService

pytestmark = pytest.mark.service
SHEET = (Path(__file__).resolve().parent.parent / "data" / "correct_sheet.yaml").read_bytes()
INTEGRITY = "/api/v1/assignments/csce636-hw3/integrity"


def small_checkpoint(seed: int) -> bytes:
    """A ResNet-8 with 8 filters at a seed: a network the evaluator knows, evaluated in a moment."""
    torch.manual_seed(seed)
    return torch_file(StarterResNet(version=1, size=1, first=8).state_dict())


def test_staff_see_a_shared_checkpoint_and_students_are_refused(service: RunningService) -> None:
    shared, own = small_checkpoint(0), small_checkpoint(1)
    for user, data in (("ig-ann", shared), ("ig-bob", shared), ("ig-cy", own)):
        response = service.user(user).post(
            "/api/v1/assignments/csce636-hw3/submissions",
            files={"answers": ("answers.yaml", SHEET), "v1": ("model.pt", data)},
        )
        assert response.status_code == 202, response.text

    staff = service.user("ig-ta", role="ta")
    response = staff.get(INTEGRITY, timeout=300)  # the first report reads every student's checkpoints once
    assert response.status_code == 200, response.text
    report = response.json()
    mine = [pair for pair in report["pairs"] if {*pair["users"]} <= {"ig-ann", "ig-bob", "ig-cy"}]  # other tests' too
    assert [(pair["users"], pair["kind"], pair["match"]) for pair in mine] == [(["ig-ann", "ig-bob"], "exact", "file")]
    assert mine[0]["correlation"]["median"] == 1.0 and "start_layer.weight" in mine[0]["layers"]

    # `grader integrity` on the server's database: the same pair, from the summaries the API's report cached
    lines = service.cli("integrity", "csce636-hw3").stdout.splitlines()
    assert any(line.split()[:6] == ["exact", "(file)", "ig-ann", "v1", "ig-bob", "v1"] for line in lines), lines

    assert service.user("ig-ann").get(INTEGRITY).status_code == 403
    assert staff.get(INTEGRITY, params={"treshold": 0.9}).json()["error"]["field"] == "treshold"
    assert staff.get(INTEGRITY, params={"threshold": 1.5}).status_code == 422
    assert staff.get("/api/v1/assignments/no-such-homework/integrity").status_code == 404
