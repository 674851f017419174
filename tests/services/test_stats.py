"""Class statistics against a hand-built class, on a database of the test's own (SQLite, or PostgreSQL when
GRADER_TEST_DATABASE_URL names one): every number below is worked out by hand from the rows inserted."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.orm import Session

from grader.db.models import GradingJob, PartResultRow, PartReview, Score, Submission, User
from grader.db.session import session_scope
from grader.rubric.model import load_rubric
from grader.services.assignments import upsert_assignment
from grader.services.stats import assignment_stats
from tests.conftest import REPO_ROOT

RUBRIC = load_rubric(REPO_ROOT / "rubrics" / "csce636-hw3.yaml")


def at(hour: int, minute: int) -> datetime:
    return datetime(2026, 12, 1, hour, minute, tzinfo=UTC)


def add_submission(session: Session, user: User, received: datetime, status: str, parts: list[tuple]) -> Submission:
    submission = Submission(assignment_id=RUBRIC.assignment, user_id=user.id, received_at=received)
    session.add(submission)
    session.flush()
    job = GradingJob(submission_id=submission.id, number=1, status=status)
    session.add(job)
    session.flush()
    for position, (part_id, part_status, points, max_points, evidence) in enumerate(parts):
        session.add(
            PartResultRow(
                job_id=job.id,
                position=position,
                part_id=part_id,
                status=part_status,
                points=points,
                max_points=max_points,
                feedback=f"{part_id} {part_status}",
                evidence=evidence,
            )
        )
    if status == "graded":
        total = sum(points for _, _, points, _, _ in parts)
        session.add(Score(job_id=job.id, score=total, max_score=200, rubric_version="t", rubric_sha256="t"))
    session.flush()
    return submission


def test_stats_of_a_hand_built_class(database: str) -> None:
    with session_scope(database) as session:
        upsert_assignment(session, rubric=RUBRIC)
        users = [User(username=f"s{i}", role="student") for i in range(1, 6)] + [User(username="ta1", role="ta")]
        session.add_all(users)
        session.flush()
        s1, s2, s3, s4, _s5, ta = users
        add_submission(session, s1, at(10, 5), "graded", [("q2.standard_params", "incorrect", 0, 5, None)])
        latest = add_submission(
            session,
            s1,
            at(11, 10),
            "graded",
            [
                ("q2.standard_params", "correct", 5, 5, None),
                ("q1.v1_accuracy", "correct", 10, 10, {"accuracy_percent": 92.0}),
                ("q2.discussion", "needs_review", 0, 5, None),
            ],
        )
        session.add(PartReview(submission_id=latest.id, part_id="q2.discussion", points=1, reviewer_id=ta.id))
        session.add(PartReview(submission_id=latest.id, part_id="q2.discussion", points=4, reviewer_id=ta.id))
        add_submission(
            session,
            s2,
            at(11, 20),
            "graded",
            [
                ("q2.standard_params", "incorrect", 0, 5, None),
                ("q1.v1_accuracy", "correct", 10, 10, {"accuracy_percent": 85.0}),
                ("q2.discussion", "needs_review", 0, 5, None),
            ],
        )
        add_submission(session, s3, at(11, 30), "failed", [])
        add_submission(
            session,
            s4,
            at(12, 0),
            "graded",
            [
                ("q2.standard_params", "partial", 2.5, 5, None),
                ("q1.v1_accuracy", "incorrect", 5.5, 10, {"accuracy_percent": 50.0}),
                ("q2.discussion", "needs_review", 0, 5, None),
            ],
        )
    with session_scope(database) as session:
        stats = assignment_stats(session, rubric=RUBRIC)

    assert stats["status_counts"] == {"graded": 3, "failed": 1, "missing": 1}
    assert stats["students"] == 5
    scores = stats["scores"]  # s1 5 + 10 + 4 (reviewed) = 19, s2 10, s4 8
    assert (scores["count"], scores["mean"], scores["median"]) == (3, round(37 / 3, 4), 10)
    assert scores["quartiles"] == [9, 10, 14.5]
    assert [b["count"] for b in scores["bins"]] == [3, 0, 0, 0, 0, 0, 0, 0, 0, 0]  # 20-point bins
    params = stats["parts"]["q2.standard_params"]
    assert params["count"] == 3 and params["mean_points"] == 2.5
    assert (params["share"]["correct"], params["share"]["partial"], params["share"]["incorrect"]) == (
        0.3333,
        0.3333,
        0.3333,
    )
    assert {entry["feedback"] for entry in params["common_feedback"]} == {
        "q2.standard_params incorrect",
        "q2.standard_params partial",
    }
    discussion = stats["parts"]["q2.discussion"]
    assert discussion["mean_points"] == round(4 / 3, 4)  # the newest review counts, not the first
    assert (discussion["share"]["partial"], discussion["share"]["needs_review"]) == (0.3333, 0.6667)
    assert stats["parts"]["q4.c_kernels"]["count"] == 0
    v1 = stats["accuracy"]["v1"]
    assert (v1["evaluated"], v1["at_least_90"], v1["from_80_to_90"], v1["below_80"]) == (3, 1, 1, 1)
    assert [b["count"] for b in v1["bins"]] == [0, 0, 0, 0, 0, 1, 0, 0, 1, 1]
    assert v1["mean_percent"] == round((92 + 85 + 50) / 3, 4)
    assert stats["accuracy"]["v2"]["evaluated"] == 0
    assert stats["submissions_per_hour"] == [
        {"hour": "2026-12-01T10:00:00Z", "count": 1},
        {"hour": "2026-12-01T11:00:00Z", "count": 3},
        {"hour": "2026-12-01T12:00:00Z", "count": 1},
    ]
