"""Batch regrades against the real services on a database of the test's own: a rubric change's diff in a dry
run equals what the applied run writes, history and reviews are kept, a cancelled run leaves whole items only."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy.orm import Session

from grader.db.models import GradingJob, PartReview, Submission, User
from grader.db.session import session_scope
from grader.domain.status import JobStatus, Role
from grader.errors import InputError
from grader.rubric.model import RubricCatalog, parse_rubric
from grader.services import regrades
from grader.services.assignments import sync_assignments
from grader.services.jobs import run_job
from grader.services.submissions import IncomingFile, create_submission
from grader.services.users import create_user
from grader.settings import Settings
from tests.conftest import REPO_ROOT

DATA = REPO_ROOT / "tests" / "data"
RUBRIC_TEXT = (REPO_ROOT / "rubrics" / "csce636-hw3.yaml").read_text()
# the rubric change: a correct count under another convention than the declared one earns 0.8, not 0.5
CHANGED = parse_rubric(
    RUBRIC_TEXT.replace("mismatched_includes: 0.5", "mismatched_includes: 0.8").replace(
        'version: "2026.12.0"', 'version: "2026.12.1"'
    )
)


class NoQueue:
    def grade_job(self, job_id: str, *, resumed: bool = False) -> None:
        raise AssertionError("answers-only sheets need no queue")

    def evaluate_checkpoint(self, evaluation_id: str, job_id: str, *, gpu: bool = True) -> None:
        raise AssertionError("answers-only sheets need no evaluation")

    def run_regrade(self, regrade_id: str) -> None:
        pass  # the test calls run_regrade itself, chunk by chunk


def graded_class(session: Session, settings: Settings, sheets: dict[str, str]) -> dict[str, Submission]:
    sync_assignments(session, catalog=RubricCatalog(settings.rubrics_dir))
    found = {}
    for name, sheet in sheets.items():
        user = create_user(session, username=name, role=Role.STUDENT)
        answers = IncomingFile("answers", sheet, [(DATA / sheet).read_bytes()])
        submission = create_submission(
            session, settings=settings, user=user, assignment_id="csce636-hw3", answers=answers
        )
        session.commit()
        status = run_job(session, job_id=submission.jobs[0].id, settings=settings, dispatcher=NoQueue(), max_attempts=3)
        assert status is JobStatus.GRADED
        found[name] = submission
    return found


def run_to_end(session: Session, regrade_id: str, settings: Settings, chunk: int = 100) -> str:
    status = "running"
    while status == "running":
        status = regrades.run_regrade(
            session, regrade_id=regrade_id, rubric=CHANGED, settings=settings, dispatcher=None, chunk=chunk
        )
    return status


def test_a_dry_run_diff_matches_the_applied_result_and_keeps_history_and_reviews(settings: Settings) -> None:
    with session_scope(settings.resolved_database_url) as session:
        klass = graded_class(session, settings, {"amy": "wrong_sheet.yaml", "bo": "correct_sheet.yaml"})
        ta = create_user(session, username="ta", role=Role.TA)
        amy = klass["amy"]
        session.add(PartReview(submission_id=amy.id, part_id="q2.discussion", points=3, reviewer_id=ta.id))
        session.commit()
        before = amy.jobs[0].score.score
        scope = regrades.parse_scope({"parts": ["q2.standard_params"]}, CHANGED)

        dry = regrades.create_regrade(session, rubric=CHANGED, scope=scope, dry_run=True, user=ta)
        assert run_to_end(session, dry.id, settings) == "finished"
        diff = {item["user"]: item for item in regrades.describe_regrade(dry)["items"]}
        assert diff["amy"]["changes"] == {"q2.standard_params": {"old": 2.5, "new": 4.0}}
        assert diff["amy"]["old_score"] == before + 3 and diff["amy"]["new_score"] == before + 3 + 1.5
        assert diff["bo"]["changes"] == {} and diff["bo"]["old_score"] == diff["bo"]["new_score"]
        view = regrades.describe_regrade(dry)
        assert view["summary"] == {"up": 1, "down": 0, "unchanged": 1}
        assert view["rubric_version"] == {"before": ["2026.12.0"], "after": "2026.12.1"}
        session.expire_all()
        assert [len(s.jobs) for s in klass.values()] == [1, 1]  # a dry run writes nothing

        applied = regrades.create_regrade(session, rubric=CHANGED, scope=scope, dry_run=False, user=ta)
        assert run_to_end(session, applied.id, settings, chunk=1) == "finished"
        session.expire_all()
        for name, submission in klass.items():
            assert [job.number for job in submission.jobs] == [1, 2]  # the first result stays as history
            assert submission.jobs[1].reason == "batch regrade"
            assert submission.jobs[1].score.rubric_version == "2026.12.1"
            item = next(i for i in regrades.describe_regrade(applied)["items"] if i["user"] == name)
            reviews = 3 if name == "amy" else 0
            assert item["new_score"] == diff[name]["new_score"] == submission.jobs[1].score.score + reviews
        rows = {row.part_id: row for row in amy.jobs[1].results}
        assert rows["q2.standard_params"].points == 4.0
        # parts outside the scope are carried over as they were
        assert (
            rows["q4.c_kernels"].feedback
            == next(r for r in amy.jobs[0].results if r.part_id == "q4.c_kernels").feedback
        )


def test_a_cancelled_run_stops_between_submissions_and_leaves_each_whole(settings: Settings) -> None:
    with session_scope(settings.resolved_database_url) as session:
        klass = graded_class(
            session, settings, {"cy": "wrong_sheet.yaml", "di": "wrong_sheet.yaml", "ed": "wrong_sheet.yaml"}
        )
        regrade = regrades.create_regrade(session, rubric=CHANGED, scope={"all": True}, dry_run=False, user=None)
        first = regrades.run_regrade(
            session, regrade_id=regrade.id, rubric=CHANGED, settings=settings, dispatcher=NoQueue(), chunk=1
        )
        assert first == "running" and (regrade.done, regrade.total) == (1, 3)
        regrades.request_cancel(session, regrade=regrade)
        assert run_to_end(session, regrade.id, settings) == "cancelled"
        session.expire_all()
        jobs = {name: [job.status for job in s.jobs] for name, s in klass.items()}
        assert sorted(len(statuses) for statuses in jobs.values()) == [1, 1, 2]
        assert all(status == JobStatus.GRADED for statuses in jobs.values() for status in statuses)
        view = regrades.describe_regrade(regrade)
        assert view["status"] == "cancelled" and view["done"] == 1
        assert sorted(item["status"] for item in view["items"]) == ["done", "pending", "pending"]
        assert view["started_by"].startswith("grader regrade")


@pytest.mark.parametrize(
    "scope", ["everything", {"parts": ["q9.nope"]}, {"users": []}, {"users": ["a"], "parts": ["q2.discussion"]}]
)
def test_a_bad_scope_is_refused(scope: object) -> None:
    with pytest.raises(InputError) as refused:
        regrades.parse_scope(scope, CHANGED)
    assert refused.value.field == "scope"


def test_scopes_read_canonically() -> None:
    assert regrades.parse_scope("all", CHANGED) == {"all": True}
    assert regrades.parse_scope({"users": ["b", "a", "b"]}, CHANGED) == {"users": ["a", "b"]}


def test_users_scope_takes_only_their_graded_submissions(settings: Settings) -> None:
    with session_scope(settings.resolved_database_url) as session:
        graded_class(session, settings, {"fay": "correct_sheet.yaml", "gus": "wrong_sheet.yaml"})
        regrade = regrades.create_regrade(
            session, rubric=replace(CHANGED), scope={"users": ["gus"]}, dry_run=True, user=None
        )
        assert regrade.total == 1 and regrade.items[0].submission.user.username == "gus"
        assert session.query(User).count() == 2 and session.query(GradingJob).count() == 2


def test_an_override_whose_automatic_result_changes_is_flagged_and_queued_for_another_look(
    settings: Settings,
) -> None:
    from grader.services.reviews import current_reviews, effective_parts, review_part, review_queue
    from grader.storage import ArtifactStore

    with session_scope(settings.resolved_database_url) as session:
        hal = graded_class(session, settings, {"hal": "wrong_sheet.yaml"})["hal"]
        ta = create_user(session, username="ta2", role=Role.TA)
        review_part(
            session,
            submission=hal,
            part_id="q2.standard_params",
            points=5,
            comment="",
            reason="the declared convention was a typo",
            reviewer=ta,
            rubric=CHANGED,
        )
        regrade = regrades.create_regrade(session, rubric=CHANGED, scope={"all": True}, dry_run=False, user=ta)
        assert run_to_end(session, regrade.id, settings) == "finished"
        session.expire_all()
        parts = {p["id"]: p for p in effective_parts(hal.jobs[-1], current_reviews(hal))}
        part = parts["q2.standard_params"]
        assert part["points"] == 5 and part["review"]["stale"] is True  # 2.5 → 4.0 under the override
        assert part["review"]["automatic"] == {"status": "partial", "points": 4.0}
        store = ArtifactStore(settings.resolved_storage_dir)
        queue = review_queue([hal], rubric=CHANGED, store=store, part="q2.standard_params")
        assert [(item["user"], item["stale"]) for item in queue] == [("hal", True)]


class Recorder:
    def __init__(self, *, down: bool = False) -> None:
        self.sent: list[str] = []
        self.down = down

    def grade_job(self, job_id: str, *, resumed: bool = False) -> None:
        raise AssertionError("no job here needs the queue")

    def evaluate_checkpoint(self, evaluation_id: str, job_id: str, *, gpu: bool = True) -> None:
        raise AssertionError("no evaluation here")

    def run_regrade(self, regrade_id: str) -> None:
        if self.down:
            raise ConnectionError("broker down")
        self.sent.append(regrade_id)


def test_a_regrade_whose_message_was_lost_is_resent_by_the_sweeper(settings: Settings) -> None:
    from datetime import timedelta

    from grader.db.models import utcnow
    from grader.services.sweeper import sweep

    with session_scope(settings.resolved_database_url) as session:
        graded_class(session, settings, {"ivy": "wrong_sheet.yaml"})
        lost = regrades.create_regrade(session, rubric=CHANGED, scope={"all": True}, dry_run=True, user=None)
        regrades.send_regrade(session, regrade=lost, dispatcher=Recorder(down=True))  # the broker is down
        assert lost.status == "queued" and "sent when it is back" in lost.detail
        fresh = regrades.create_regrade(session, rubric=CHANGED, scope={"all": True}, dry_run=True, user=None)
        done = regrades.create_regrade(session, rubric=CHANGED, scope={"all": True}, dry_run=True, user=None)
        assert run_to_end(session, done.id, settings) == "finished"
        lost.updated_at = done.updated_at = utcnow() - timedelta(seconds=settings.requeue_after_s + 5)
        session.commit()
        recorder = Recorder()
        report = sweep(session, settings=settings, dispatcher=recorder)
        assert recorder.sent == [lost.id] and report.resent_regrades == [lost.id]  # not the fresh or finished one
        assert sweep(session, settings=settings, dispatcher=recorder).resent_regrades == []  # just resent
        assert fresh.status == "queued"
