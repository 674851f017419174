"""Leases on claimed work, with explicit times: who may claim, what a heartbeat renews, what a sweep resends, and that
a second delivery of work another worker is running does nothing."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from grader.db.models import (
    Artifact,
    CheckpointEvaluation,
    GradingJob,
    JobEvaluation,
    Regrade,
    as_utc,
    utcnow,
)
from grader.db.session import session_scope
from grader.domain.status import JobStatus, Role
from grader.rubric.model import RubricCatalog
from grader.services import jobs, leases, regrades, sweeper, workers
from grader.services.assignments import sync_assignments
from grader.services.evaluations import run_evaluation
from grader.services.submissions import IncomingFile, create_submission
from grader.services.users import create_user
from grader.settings import Settings
from tests.conftest import REPO_ROOT

SHEET = (REPO_ROOT / "tests" / "data" / "correct_sheet.yaml").read_bytes()
LEASE_S = 60
T0 = utcnow().replace(microsecond=0)
"""The test's "now": every time below is given relative to it (set again when each test starts)."""


@pytest.fixture(autouse=True)
def _now() -> None:
    # Some services read the real clock (a delivery claims at the real now), so T0 must be close to it.
    global T0
    T0 = utcnow().replace(microsecond=0)


class Recorder:
    """A dispatcher that keeps what was sent (the broker is not what these tests are about)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, bool]] = []

    def grade_job(self, job_id: str, *, resumed: bool = False) -> None:
        self.sent.append(("grade_job", job_id, resumed))

    def evaluate_checkpoint(self, evaluation_id: str, job_id: str, *, gpu: bool = True) -> None:
        self.sent.append(("evaluate_checkpoint", evaluation_id, False))

    def run_regrade(self, regrade_id: str) -> None:
        self.sent.append(("run_regrade", regrade_id, False))

    def check_broker(self, *, timeout_s: float) -> None:
        pass


@dataclass
class Waiting:
    job: GradingJob
    evaluation: CheckpointEvaluation


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _hold(row: GradingJob | CheckpointEvaluation | Regrade, owner: str | None, expires_in: float | None) -> None:
    """Give `row` the lease of `owner`, lapsing `expires_in` seconds after T0 (None: nobody holds it)."""
    row.lease_owner = owner
    row.lease_claimed_at = None if owner is None else _at(-30)
    row.lease_expires_at = None if expires_in is None else _at(expires_in)


def _job(session: Session, settings: Settings) -> GradingJob:
    sync_assignments(session, catalog=RubricCatalog(settings.rubrics_dir))
    user = create_user(session, username=f"s{uuid.uuid4().hex[:8]}", role=Role.STUDENT)
    answers = IncomingFile("answers", "answers.yaml", [SHEET])
    submission = create_submission(session, settings=settings, user=user, assignment_id="csce636-hw3", answers=answers)
    session.commit()
    return submission.jobs[-1]


def _waiting(session: Session, settings: Settings, *, evaluation_status: str = "running") -> Waiting:
    """A job that waits for its checkpoint's evaluation (what a job looks like between its two steps)."""
    job = _job(session, settings)
    sha256 = uuid.uuid4().hex * 2
    session.add(Artifact(sha256=sha256, size=1))
    evaluation = CheckpointEvaluation(
        cache_key=uuid.uuid4().hex,
        artifact_sha256=sha256,
        label="v1",
        preprocessing={},
        evaluator_version="test",
        status=evaluation_status,
        queued_at=_at(-3600),
        started_at=_at(-3600) if evaluation_status == "running" else None,
        attempts=1 if evaluation_status == "running" else 0,
    )
    session.add(evaluation)
    session.flush()
    session.add(JobEvaluation(job_id=job.id, evaluation_id=evaluation.id))
    job.status, job.attempts, job.detail = str(JobStatus.RUNNING), 1, "waiting for checkpoint evaluation: v1 (running)"
    job.updated_at = _at(-3600)
    session.commit()
    return Waiting(job, evaluation)


@pytest.mark.parametrize(
    ("holder", "expires_in", "status", "claimer", "claimed", "owner_after"),
    [
        (None, None, "queued", "gpu.2@b", True, "gpu.2@b"),  # nobody holds it
        ("gpu.1@a", 30, "running", "gpu.2@b", False, "gpu.1@a"),  # another worker's live lease: hands off
        ("gpu.2@b", 30, "running", "gpu.2@b", True, "gpu.2@b"),  # its own (a redelivery to the same worker)
        ("gpu.1@a", -1, "running", "gpu.2@b", True, "gpu.2@b"),  # the holder went silent: the lease lapsed
        (None, None, "evaluated", "gpu.2@b", False, None),  # finished work is never claimed again
    ],
)
def test_who_may_claim(
    settings: Settings,
    holder: str | None,
    expires_in: float | None,
    status: str,
    claimer: str,
    claimed: bool,
    owner_after: str | None,
) -> None:
    with session_scope(settings.resolved_database_url) as session:
        evaluation = _waiting(session, settings, evaluation_status=status).evaluation
        _hold(evaluation, holder, expires_in)
        session.commit()
        got = leases.claim(session, CheckpointEvaluation, evaluation.id, owner=claimer, lease_s=LEASE_S, now=T0)
        session.commit()
        assert got is claimed
        assert evaluation.lease_owner == owner_after
        if claimed:
            assert as_utc(evaluation.lease_expires_at) == _at(LEASE_S)


def test_a_heartbeat_renews_only_its_own_leases_on_running_work_and_not_past_the_time_limit(settings: Settings) -> None:
    with session_scope(settings.resolved_database_url) as session:
        mine, others, hung = (_waiting(session, settings).evaluation for _ in range(3))
        job = _job(session, settings)
        for row in (mine, others, hung, job):
            _hold(row, "gpu.1@a", 10)
        others.lease_owner = "gpu.2@b"
        hung.lease_claimed_at = _at(-settings.task_time_limit_s - 1)  # its run should have ended by now
        session.commit()  # the job is held but not running (a claim about to be recorded): not renewed either

        renewed = leases.renew(
            session, owner="gpu.1@a", lease_s=LEASE_S, max_hold_s=settings.task_time_limit_s, now=_at(5)
        )

        assert renewed == 1
        for row in (mine, others, hung, job):
            session.refresh(row)
        assert as_utc(mine.lease_expires_at) == _at(5 + LEASE_S)
        assert [as_utc(row.lease_expires_at) for row in (others, hung, job)] == [_at(10)] * 3


def test_a_second_delivery_of_held_work_does_nothing(settings: Settings) -> None:
    """A job, an evaluation and a regrade chunk delivered to a second worker while the first holds them."""
    with session_scope(settings.resolved_database_url) as session:
        waiting = _waiting(session, settings)
        evaluation = waiting.evaluation
        _hold(evaluation, "gpu.1@a", LEASE_S)
        job = _job(session, settings)
        _hold(job, "cpu.1@a", LEASE_S)
        regrade = Regrade(assignment_id="csce636-hw3", scope={"all": True}, status="running", rubric_version="x")
        session.add(regrade)
        _hold(regrade, "regrade.1@a", LEASE_S)
        session.commit()
        started_at = evaluation.started_at
        dispatcher = Recorder()

        final = run_evaluation(
            session, evaluation_id=evaluation.id, settings=settings, max_attempts=3, worker="gpu.2@b"
        )
        status = jobs.run_job(
            session, job_id=job.id, settings=settings, dispatcher=dispatcher, max_attempts=3, worker="cpu.2@b"
        )
        rubric = RubricCatalog(settings.rubrics_dir).get("csce636-hw3")
        regrade_status = regrades.run_regrade(
            session, regrade_id=regrade.id, rubric=rubric, settings=settings, dispatcher=dispatcher, worker="r.2@b"
        )

        assert final is False
        session.refresh(evaluation)
        assert (evaluation.status, evaluation.attempts, evaluation.lease_owner) == ("running", 1, "gpu.1@a")
        assert as_utc(evaluation.started_at) == as_utc(started_at) and evaluation.result is None
        assert status is JobStatus.RECEIVED
        session.refresh(job)
        assert (job.status, job.attempts, job.lease_owner) == ("received", 0, "cpu.1@a")
        assert regrade_status == "running"
        session.refresh(regrade)
        assert regrade.lease_owner == "regrade.1@a"
        assert dispatcher.sent == []


@pytest.mark.parametrize(
    ("evaluation_status", "holder", "expires_in", "resent"),
    [
        ("running", "gpu.1@a", 30, False),  # started an hour ago and still running: its worker renews the lease
        ("running", "gpu.1@a", -1, True),  # its worker went silent
        ("queued", None, None, True),  # queued an hour ago and never started: the message was lost
    ],
)
def test_a_sweep_resends_an_evaluation_only_when_nobody_runs_it(
    settings: Settings, evaluation_status: str, holder: str | None, expires_in: float | None, resent: bool
) -> None:
    aggressive = settings.model_copy(update={"stuck_after_s": 1})
    with session_scope(settings.resolved_database_url) as session:
        waiting = _waiting(session, settings, evaluation_status=evaluation_status)
        _hold(waiting.evaluation, holder, expires_in)
        session.commit()
        dispatcher = Recorder()

        sweeper.sweep(session, settings=aggressive, dispatcher=dispatcher, now=T0)
        expected = [("evaluate_checkpoint", waiting.evaluation.id, False)] if resent else []
        assert dispatcher.sent == expected
        if resent:
            session.refresh(waiting.evaluation)
            assert waiting.evaluation.lease_owner is None
            # once resent, the message has its time to be taken: the next sweeps leave it alone
            sweeper.sweep(session, settings=settings, dispatcher=dispatcher, now=_at(1))
            assert dispatcher.sent == expected


@pytest.mark.parametrize(("expires_in", "resent"), [(30, False), (-1, True)])
def test_a_sweep_resends_a_job_or_regrade_chunk_only_once_its_lease_lapsed(
    settings: Settings, expires_in: float, resent: bool
) -> None:
    with session_scope(settings.resolved_database_url) as session:
        job = _job(session, settings)
        job.status, job.attempts = str(JobStatus.RUNNING), 1
        _hold(job, "cpu.1@a", expires_in)
        regrade = Regrade(assignment_id="csce636-hw3", scope={"all": True}, status="running", rubric_version="x")
        session.add(regrade)
        _hold(regrade, "regrade.1@a", expires_in)
        session.commit()
        dispatcher = Recorder()

        report = sweeper.sweep(session, settings=settings, dispatcher=dispatcher, now=T0)

        expected = [("grade_job", job.id, False), ("run_regrade", regrade.id, False)] if resent else []
        assert dispatcher.sent == expected
        assert (report.resent_jobs, report.resent_regrades) == (([job.id], [regrade.id]) if resent else ([], []))


def test_a_job_whose_evaluation_finished_while_no_grading_worker_ran_says_so_and_the_next_sweep_wakes_it(
    settings: Settings,
) -> None:
    with session_scope(settings.resolved_database_url) as session:
        waiting = _waiting(session, settings)
        evaluation, job = waiting.evaluation, waiting.job
        workers.beat(session, name="gpu.1@a", host="a", pid=1, queues=["gpu"])  # no grading (cpu) worker is alive
        evaluation.status, evaluation.finished_at = "evaluated", _at(-60)
        evaluation.result = {"status": "evaluated"}
        session.commit()
        lost = Recorder()  # the wake-up goes to a queue no worker serves, and is lost with the broker's data

        jobs.wake_waiting_jobs(session, evaluation_id=evaluation.id, job_id=job.id, dispatcher=lost)

        assert lost.sent == [("grade_job", job.id, True)]
        session.refresh(job)
        assert (job.status, job.detail) == ("running", jobs.EVALUATIONS_DONE)
        note = workers.stall_note(session, settings=settings, job=job)
        assert note is not None and "no worker is running grading" in note

        dispatcher = Recorder()
        sweeper.sweep(session, settings=settings, dispatcher=dispatcher, now=T0)
        assert dispatcher.sent == [("grade_job", job.id, True)]
        sweeper.sweep(session, settings=settings, dispatcher=dispatcher, now=_at(settings.requeue_after_s + 1))
        assert dispatcher.sent == [("grade_job", job.id, True)]  # once; later only as any silent job is


def test_a_job_released_while_its_evaluation_finished_wakes_itself(settings: Settings) -> None:
    """The evaluation finished while this worker held the job (its wake-up found the job held and did nothing): the
    job, letting go to wait, sees that nothing is left to wait for and sends its own wake-up."""
    with session_scope(settings.resolved_database_url) as session:
        waiting = _waiting(session, settings, evaluation_status="queued")
        evaluation, job = waiting.evaluation, waiting.job
        _hold(job, "cpu.1@a", LEASE_S)
        session.commit()
        plan = jobs.EvaluationPlan(pending={"v1": evaluation})
        with session_scope(settings.resolved_database_url) as other:  # the evaluation's worker, meanwhile
            row = other.get(CheckpointEvaluation, evaluation.id)
            row.status, row.finished_at, row.result = "evaluated", utcnow(), {"status": "evaluated"}
        dispatcher = Recorder()

        jobs._wait_for(session, job=job, plan=plan, dispatcher=dispatcher)

        assert dispatcher.sent == [("grade_job", job.id, True)]
        session.refresh(job)
        assert job.lease_owner is None
