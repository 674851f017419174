"""Planning checkpoint evaluations on a database of the test's own: every uploaded checkpoint is evaluated,
whatever the sheet declares about its preprocessing (the architecture part needs only the weights)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import torch

from grader.db.migrate import upgrade_database
from grader.db.models import utcnow
from grader.db.session import session_scope
from grader.domain.status import Role
from grader.evaluation.preprocessing import DEFAULT_PREPROCESSING
from grader.rubric.model import RubricCatalog
from grader.services.assignments import sync_assignments
from grader.services.evaluations import plan_evaluations
from grader.services.submissions import IncomingFile, create_submission
from grader.services.users import create_user
from grader.settings import Settings
from tests.conftest import REPO_ROOT
from tests.evaluation.nets import StarterResNet

SHEET = REPO_ROOT / "tests" / "data" / "correct_sheet.yaml"
CASES = [
    # (case, the sheet's q1 section, the preprocessing the v1 checkpoint is evaluated with)
    ("declared", {"v1_preprocessing": "scale"}, {"kind": "scale"}),
    ("missing", {}, DEFAULT_PREPROCESSING),
    ("unusable kind", {"v1_preprocessing": "imagenet"}, DEFAULT_PREPROCESSING),
    ("unusable mapping", {"v1_preprocessing": {"kind": "mean_std", "mean": [0.5]}}, DEFAULT_PREPROCESSING),
]


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    url = f"sqlite:///{tmp_path / 'evaluations.db'}"
    upgrade_database(url)
    return Settings(data_dir=tmp_path, database_url=url, rubrics_dir=REPO_ROOT / "rubrics")


def _checkpoint_bytes() -> bytes:
    torch.manual_seed(0)
    buffer = io.BytesIO()
    torch.save(StarterResNet(1, 1).state_dict(), buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(("case", "q1", "expected"), CASES, ids=[c[0] for c in CASES])
def test_every_checkpoint_is_evaluated_whatever_the_declaration(
    settings: Settings, case: str, q1: dict[str, Any], expected: dict[str, Any]
) -> None:
    with session_scope(settings.resolved_database_url) as session:
        sync_assignments(session, catalog=RubricCatalog(settings.rubrics_dir))
        user = create_user(session, username="amy", role=Role.STUDENT)
        submission = create_submission(
            session,
            settings=settings,
            user=user,
            assignment_id="csce636-hw3",
            answers=IncomingFile("answers", SHEET.name, [SHEET.read_bytes()]),
            checkpoints=[IncomingFile("v1", "model-v1.pt", [_checkpoint_bytes()])],
        )
        # The stored sheet passed intake; a regrade may read one that an older grader accepted.
        plan = plan_evaluations(session, submission=submission, sheet={"q1": q1}, since=utcnow(), settings=settings)
        assert plan.results == {}
        assert list(plan.pending) == ["v1"]
        assert plan.pending["v1"].preprocessing == expected
