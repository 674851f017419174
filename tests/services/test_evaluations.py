"""Planning checkpoint evaluations on a database of the test's own: every uploaded checkpoint is evaluated,
whatever the sheet declares about its preprocessing (the architecture part needs only the weights)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import torch
from sqlalchemy.orm import Session

from grader.db.migrate import upgrade_database
from grader.db.models import Submission, utcnow
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


def _amys_submission(session: Session, settings: Settings, **uploads: Any) -> Submission:
    """A student's submission of the answer sheet and a v1 checkpoint (and `uploads`, e.g. code)."""
    sync_assignments(session, catalog=RubricCatalog(settings.rubrics_dir))
    user = create_user(session, username="amy", role=Role.STUDENT)
    return create_submission(
        session,
        settings=settings,
        user=user,
        assignment_id="csce636-hw3",
        answers=IncomingFile("answers", SHEET.name, [SHEET.read_bytes()]),
        checkpoints=[IncomingFile("v1", "model-v1.pt", [_checkpoint_bytes()])],
        **uploads,
    )


@pytest.mark.parametrize(("case", "q1", "expected"), CASES, ids=[c[0] for c in CASES])
def test_every_checkpoint_is_evaluated_whatever_the_declaration(
    settings: Settings, case: str, q1: dict[str, Any], expected: dict[str, Any]
) -> None:
    with session_scope(settings.resolved_database_url) as session:
        submission = _amys_submission(session, settings)
        # The stored sheet passed intake; a regrade may read one that an older grader accepted.
        plan = plan_evaluations(session, submission=submission, sheet={"q1": q1}, since=utcnow(), settings=settings)
        assert plan.results == {}
        assert list(plan.pending) == ["v1"]
        assert plan.pending["v1"].preprocessing == expected


def test_code_uploads_get_one_cached_code_check_evaluation(settings: Settings) -> None:
    """The whole code folder (`code`) is checked once, without a checkpoint; the same code again is the same row;
    the code checks read `code` before `v1_code`."""
    from grader.evaluation.cache_key import code_checks_cache_key
    from grader.evaluation.student.code_checks_spec import parse_code_checks
    from tests.sandbox.code_folders import sources

    files = [IncomingFile("code", f"{name}.py", [text.encode()]) for name, text in sources().items()]
    with session_scope(settings.resolved_database_url) as session:
        sync_assignments(session, catalog=RubricCatalog(settings.rubrics_dir))
        user = create_user(session, username="amy", role=Role.STUDENT)

        def submit(**kwargs: Any) -> Any:
            answers = IncomingFile("answers", SHEET.name, [SHEET.read_bytes()])
            made = create_submission(
                session, settings=settings, user=user, assignment_id="csce636-hw3", answers=answers, **kwargs
            )
            sheet = {"q1": {"v1_config": {"resnet_size": 1, "first_num_filters": 16}}}
            return made, plan_evaluations(session, submission=made, sheet=sheet, since=utcnow(), settings=settings)

        first, plan = submit(code={"code": files})
        assert list(plan.pending) == ["code"] and plan.results == {}
        row = plan.pending["code"]
        assert (row.mode, row.label) == ("code_checks", "code")
        code_sha = next(f.artifact_sha256 for f in first.files if f.field == "code")
        assert row.artifact_sha256 == row.code_sha256 == code_sha
        _, again = submit(code={"code": files})
        assert again.pending["code"].id == row.id

        network = [IncomingFile("v1_code", "NetWork.py", [sources()["NetWork"].encode()])]
        checkpoint = [IncomingFile("v1", "model-v1.pt", [_checkpoint_bytes()])]
        _, both = submit(checkpoints=checkpoint, code={"v1_code": network, "code": files})
        assert set(both.pending) == {"v1", "code"} and both.pending["code"].id == row.id
        assert both.pending["v1"].mode == "student_code"

    spec = parse_code_checks({})
    key = code_checks_cache_key(code_sha256=code_sha, spec=spec.to_json())
    assert key == row.cache_key
    other = parse_code_checks({"preprocessing": {"seeds": 512}})
    assert code_checks_cache_key(code_sha256=code_sha, spec=other.to_json()) != key


class _Sent:
    """A dispatcher that keeps which evaluations went to which queue (the broker is not what this test is about)."""

    def __init__(self) -> None:
        self.evaluations: dict[str, bool] = {}
        self.jobs: list[str] = []

    def grade_job(self, job_id: str, *, resumed: bool = False) -> None:
        self.jobs.append(job_id)

    def evaluate_checkpoint(self, evaluation_id: str, job_id: str, *, gpu: bool = True) -> None:
        self.evaluations[evaluation_id] = gpu

    def run_regrade(self, regrade_id: str) -> None:
        raise AssertionError("no regrade here")

    def check_broker(self, *, timeout_s: float) -> None:
        pass


def test_a_checkpoint_goes_to_the_gpu_queue_and_the_code_checks_to_the_cpu_queue(settings: Settings) -> None:
    """The code checks run the student's functions on small inputs: they never hold a GPU worker, and run beside
    the checkpoint's evaluation."""
    from grader.db.models import CheckpointEvaluation
    from grader.services import jobs
    from tests.sandbox.code_folders import sources

    files = [IncomingFile("code", f"{name}.py", [text.encode()]) for name, text in sources().items()]
    with session_scope(settings.resolved_database_url) as session:
        submission = _amys_submission(session, settings, code={"code": files})
        session.commit()
        sent = _Sent()
        status = jobs.run_job(
            session, job_id=submission.jobs[-1].id, settings=settings, dispatcher=sent, max_attempts=3, worker="w@a"
        )
        assert status == "running" and sent.jobs == []
        modes = {session.get(CheckpointEvaluation, row_id).mode: gpu for row_id, gpu in sent.evaluations.items()}
    assert modes == {"reference": True, "code_checks": False}
