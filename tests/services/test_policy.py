"""Course policy against a database of the test's own: late penalties priced on read (extensions and a moved
deadline re-price at once), attempt limits with their Retry-After, and failed attempts not counted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from grader.db.models import Submission, utcnow
from grader.db.session import session_scope
from grader.domain.status import JobStatus, Role
from grader.errors import SubmissionClosed, TooManyRequests
from grader.rubric.model import RubricCatalog
from grader.services import policy
from grader.services.assignments import sync_assignments
from grader.services.gradebook import gradebook_rows
from grader.services.jobs import fail_job, run_job
from grader.services.submissions import IncomingFile, create_submission
from grader.services.users import create_user
from grader.services.views import describe_submission
from grader.settings import Settings
from tests.conftest import REPO_ROOT

RUBRIC_TEXT = (REPO_ROOT / "rubrics" / "csce636-hw3.yaml").read_text()
SHEET = (REPO_ROOT / "tests" / "data" / "correct_sheet.yaml").read_bytes()
DUE = datetime(2026, 12, 11, 23, 59, tzinfo=UTC)


class NoQueue:
    def grade_job(self, job_id: str, *, resumed: bool = False) -> None:
        raise AssertionError("answers-only sheets need no queue")

    def evaluate_checkpoint(self, evaluation_id: str, job_id: str, *, gpu: bool = True) -> None:
        raise AssertionError("answers-only sheets need no evaluation")

    def run_regrade(self, regrade_id: str) -> None:
        raise AssertionError("no regrade here")


def with_policy(settings: Settings, tmp_path: Path, block: str) -> Settings:
    """The HW3 rubric with another `policy:` block, in a rubrics folder of the test's own."""
    start = RUBRIC_TEXT.index("policy:\n")
    end = RUBRIC_TEXT.index("\ntitle:", start)
    folder = tmp_path / "rubrics"
    folder.mkdir(exist_ok=True)
    (folder / "csce636-hw3.yaml").write_text(RUBRIC_TEXT[:start] + block.strip() + RUBRIC_TEXT[end:])
    return settings.model_copy(update={"rubrics_dir": folder})


def submit(session: Session, settings: Settings, name: str, *, at: datetime | None = None) -> Submission:
    sync_assignments(session, catalog=RubricCatalog(settings.rubrics_dir))
    from grader.services.users import get_user_by_username

    user = get_user_by_username(session, username=name) or create_user(session, username=name, role=Role.STUDENT)
    submission = create_submission(
        session,
        settings=settings,
        user=user,
        assignment_id="csce636-hw3",
        answers=IncomingFile("answers", "a.yaml", [SHEET]),
    )
    if at is not None:
        submission.received_at = at
    session.commit()
    assert (
        run_job(session, job_id=submission.jobs[0].id, settings=settings, dispatcher=NoQueue(), max_attempts=3)
        is JobStatus.GRADED
    )
    return submission


def score(session: Session, settings: Settings, submission_id: str) -> dict:
    rubric = RubricCatalog(settings.rubrics_dir).get("csce636-hw3")
    session.expire_all()
    fresh = session.get(Submission, submission_id)
    return describe_submission(fresh, viewer_role=Role.INSTRUCTOR, rubric=rubric)


def test_one_minute_late_with_and_without_an_extension_and_a_moved_deadline(settings: Settings, tmp_path: Path) -> None:
    late_policy = with_policy(
        settings,
        tmp_path,
        "policy:\n  due: 2026-12-11T23:59:00+00:00\n  late_penalty: {percent_per_day: 10, max_percent: 30}\n",
    )
    with session_scope(settings.resolved_database_url) as session:
        late = submit(session, late_policy, "late-lena", at=DUE + timedelta(minutes=1))
        on_time = submit(session, late_policy, "early-eve", at=DUE - timedelta(minutes=1))
        on_time_id = on_time.id
        full = score(session, late_policy, on_time.id)
        assert full["late"]["minutes_late"] == 0 and full["score"] == full["score_before_penalty"] > 0

        view = score(session, late_policy, late.id)
        assert view["late"]["minutes_late"] == 1.0 and view["late"]["penalty_percent"] == 10
        assert view["score"] == pytest.approx(0.9 * view["score_before_penalty"])
        rubric = RubricCatalog(late_policy.rubrics_dir).get("csce636-hw3")
        book = {row["user"]: row for row in gradebook_rows(session, rubric=rubric)}
        assert book["late-lena"]["score"] == view["score"] and book["late-lena"]["late_penalty_percent"] == 10

        # an extension re-prices on read: nothing is regraded or stored
        instructor = create_user(session, username="ian", role=Role.INSTRUCTOR)
        policy.grant_extension(
            session, rubric=rubric, user=late.user, granted_by=instructor, due=DUE + timedelta(days=1), reason="ill"
        )
        extended = score(session, late_policy, late.id)
        assert extended["late"]["extended"] is True and extended["late"]["penalty_percent"] == 0
        assert extended["score"] == extended["score_before_penalty"]
        assert policy.list_extensions(session, assignment_id="csce636-hw3")[0]["granted_by"] == "ian"

    # the class's deadline moved a day earlier after grading: Eve's on-time work is now a day late, on read
    moved = with_policy(
        settings,
        tmp_path,
        "policy:\n  due: 2026-12-10T23:59:00+00:00\n  late_penalty: {percent_per_day: 10, max_percent: 30}\n",
    )
    with session_scope(settings.resolved_database_url) as session:
        again = score(session, moved, on_time_id)
        assert again["late"]["penalty_percent"] == 10
        assert again["score"] == pytest.approx(0.9 * full["score"])


def test_attempt_limits_cooldown_and_hard_close(settings: Settings, tmp_path: Path) -> None:
    limited = with_policy(settings, tmp_path, "policy:\n  attempts: {graded: 2, uploads: 3, cooldown_s: 600}\n")
    rubric = RubricCatalog(limited.rubrics_dir).get("csce636-hw3")
    with session_scope(settings.resolved_database_url) as session:
        first = submit(session, limited, "tries-tom", at=utcnow() - timedelta(hours=2))
        with pytest.raises(TooManyRequests) as cooling:
            policy.check_can_submit(
                session,
                rubric=rubric,
                user=first.user,
                now=first.received_at.replace(tzinfo=UTC) + timedelta(seconds=60),
            )
        assert cooling.value.retry_after_s == 541 and "possible in 541 s" in cooling.value.message

        second = submit(session, limited, "tries-tom", at=utcnow() - timedelta(hours=1))
        with pytest.raises(TooManyRequests, match="all 2 graded attempts") as used:
            policy.check_can_submit(session, rubric=rubric, user=first.user)
        assert used.value.retry_after_s is None

        # a submission the grader itself failed does not count against the student
        fail_job(session, job=second.jobs[-1], detail="internal grader error")
        policy.check_can_submit(session, rubric=rubric, user=first.user)
        third = submit(session, limited, "tries-tom", at=utcnow() - timedelta(minutes=30))
        # ... but every stored upload counts against the upload limit
        fail_job(session, job=third.jobs[-1], detail="internal grader error")
        with pytest.raises(TooManyRequests, match="all 3 uploads"):
            policy.check_can_submit(session, rubric=rubric, user=first.user)

        # extra attempts from an extension; the refused request above stored nothing
        assert session.query(Submission).filter_by(user_id=first.user_id).count() == 3
        policy.grant_extension(session, rubric=rubric, user=first.user, granted_by=None, due=None, extra_attempts=1)
        policy.check_can_submit(session, rubric=rubric, user=first.user)

    closed = with_policy(settings, tmp_path, "policy:\n  hard_close: 2026-01-01T00:00:00+00:00\n")
    rubric = RubricCatalog(closed.rubrics_dir).get("csce636-hw3")
    with session_scope(settings.resolved_database_url) as session:
        student = create_user(session, username="closed-carl", role=Role.STUDENT)
        with pytest.raises(SubmissionClosed, match="closed at 2026-01-01 00:00 UTC"):
            policy.check_can_submit(session, rubric=rubric, user=student)
        policy.grant_extension(
            session, rubric=rubric, user=student, granted_by=None, due=None, hard_close=utcnow() + timedelta(days=1)
        )
        policy.check_can_submit(session, rubric=rubric, user=student)
