"""Thin Celery tasks: ids in, services do the work, state re-read from the database every time."""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
import time

from celery import Task, bootsteps
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_init
from celery.worker import WorkController

from grader.db.session import session_scope
from grader.errors import InfrastructureError
from grader.evaluation.safety import require_safe_torch
from grader.queues import CeleryDispatcher
from grader.sandbox.leftovers import remove_leftovers
from grader.services import evaluations, jobs, leases, orphans, regrades, sweeper, workers
from grader.settings import get_settings
from worker.app import celery_app

log = logging.getLogger(__name__)
RETRY_DELAY_S = 5


@celery_app.task(name="grader.grade_job", bind=True, max_retries=None)
def grade_job(self: Task, job_id: str, resumed: bool = False) -> str:
    settings = get_settings()
    with session_scope() as session:
        try:
            status = jobs.run_job(
                session,
                job_id=job_id,
                settings=settings,
                dispatcher=CeleryDispatcher(celery_app),
                max_attempts=settings.task_max_attempts,
                resumed=resumed,
                worker=self.request.hostname,
            )
        except SoftTimeLimitExceeded:
            session.rollback()
            detail = f"grading took longer than {settings.task_time_limit_s} s"
            jobs.fail_job_by_id(session, job_id=job_id, detail=detail)
            status = "failed"
        except InfrastructureError as exc:
            session.rollback()
            log.warning("job %s: %s; retrying", job_id, exc)
            jobs.note_problem(session, job_id=job_id, detail=str(exc))
            raise self.retry(exc=exc, countdown=RETRY_DELAY_S) from exc
        except Exception as exc:  # a grader bug must end the job visibly, never leave it running
            session.rollback()
            log.exception("job %s crashed", job_id)
            detail = f"internal grader error ({type(exc).__name__}: {exc}); staff can regrade once it is fixed"
            jobs.fail_job_by_id(session, job_id=job_id, detail=detail)
            status = "failed"
    _queue_next_waiting(job_id)
    return str(status)


def _queue_next_waiting(job_id: str) -> None:
    """A job that ended frees its student's turn: the next of their held-back submissions goes to the queue."""
    try:
        with session_scope() as session:
            jobs.queue_next_waiting(
                session,
                job_id=job_id,
                dispatcher=CeleryDispatcher(celery_app),
                in_flight_limit=get_settings().jobs_in_flight_per_student,
            )
    except Exception:  # the sweep queues it later; never fail the finished job over this
        log.exception("could not queue the next job after %s", job_id)


@celery_app.task(name="grader.evaluate_checkpoint", bind=True, max_retries=None)
def evaluate_checkpoint(self: Task, evaluation_id: str, job_id: str) -> str:
    settings = get_settings()
    with session_scope() as session:
        try:
            final = evaluations.run_evaluation(
                session,
                evaluation_id=evaluation_id,
                settings=settings,
                max_attempts=settings.task_max_attempts,
                worker=self.request.hostname,
            )
            if not final:  # another worker holds it and runs it now: that one wakes the waiting jobs
                return "held by another worker"
        except SoftTimeLimitExceeded:
            session.rollback()
            row = evaluations.evaluation_by_id(session, evaluation_id)
            if row is not None:
                message = f"evaluation took longer than {settings.task_time_limit_s} s"
                evaluations.finish_evaluation_with_error(session, row=row, message=message)
        except InfrastructureError as exc:
            session.rollback()
            log.warning("evaluation %s: %s; retrying", evaluation_id, exc)
            evaluations.note_problem(session, evaluation_id=evaluation_id, detail=str(exc))
            raise self.retry(exc=exc, countdown=RETRY_DELAY_S) from exc
        except Exception as exc:  # a grader bug: record it on the evaluation, then let the job finish
            session.rollback()
            log.exception("evaluation %s crashed", evaluation_id)
            row = evaluations.evaluation_by_id(session, evaluation_id)
            if row is not None:
                message = f"internal grader error ({type(exc).__name__}: {exc})"
                evaluations.finish_evaluation_with_error(session, row=row, message=message)
    with session_scope() as session:
        jobs.wake_waiting_jobs(
            session, evaluation_id=evaluation_id, job_id=job_id, dispatcher=CeleryDispatcher(celery_app)
        )
    return "done"


@celery_app.task(name="grader.run_regrade", bind=True)
def run_regrade(self: Task, regrade_id: str) -> str:
    """One chunk of a batch regrade; the service queues the next chunk itself."""
    from grader.db.models import Regrade
    from grader.rubric.model import RubricCatalog

    settings = get_settings()
    with session_scope() as session:
        row = session.get(Regrade, regrade_id)
        if row is None:
            log.warning("regrade %s is not in this worker's database", regrade_id)
            return "failed"
        try:
            rubric = RubricCatalog(settings.rubrics_dir).get(row.assignment_id)
            return regrades.run_regrade(
                session,
                regrade_id=regrade_id,
                rubric=rubric,
                settings=settings,
                dispatcher=CeleryDispatcher(celery_app),
                worker=self.request.hostname,
            )
        except Exception as exc:  # the batch ends visibly, never left running
            session.rollback()
            log.exception("regrade %s crashed", regrade_id)
            regrades.fail_regrade(session, regrade_id=regrade_id, detail=f"{type(exc).__name__}: {exc}")
            return "failed"


@worker_init.connect
def refuse_unsafe_torch(**_: object) -> None:
    """A worker loads untrusted checkpoints: it must not start with a torch whose safe loader is broken."""
    require_safe_torch()


def sweep_now() -> None:
    """Resend jobs that never reached the queue or whose worker went silent (see grader.services.sweeper), and remove
    this machine's leftovers of killed runs (grader.sandbox.leftovers)."""
    settings = get_settings()
    try:
        with session_scope() as session:
            sweeper.sweep(session, settings=settings, dispatcher=CeleryDispatcher(celery_app))
    except Exception:  # the sweep must never take the worker down; it runs again at the next interval
        log.exception("sweep failed")
    try:
        remove_leftovers(min_age_s=settings.task_time_limit_s)
    except Exception:
        log.exception("removing leftovers of killed runs failed")


def remove_orphan_files_now() -> None:
    """Remove stored files no database row refers to (see grader.services.orphans)."""
    try:
        with session_scope() as session:
            orphans.remove_orphan_files(session, settings=get_settings())
    except Exception:  # never take the worker down; it runs again at the next interval
        log.exception("removing unreferenced stored files failed")


class SweepStep(bootsteps.StartStopStep):
    """Runs the sweep when the worker starts and then every `GRADER_SWEEP_INTERVAL_S` seconds; looks for unreferenced
    stored files at the start and then every `orphans.SWEEP_EVERY_S` seconds."""

    requires = ("celery.worker.components:Timer",)

    def __init__(self, worker: object, **kwargs: object) -> None:
        super().__init__(worker, **kwargs)
        self.timer_refs: list[object] = []

    def start(self, worker: WorkController) -> None:
        sweep_now()
        remove_orphan_files_now()
        self.timer_refs = [
            worker.timer.call_repeatedly(get_settings().sweep_interval_s, sweep_now, priority=10),
            worker.timer.call_repeatedly(orphans.SWEEP_EVERY_S, remove_orphan_files_now, priority=10),
        ]

    def stop(self, worker: WorkController) -> None:
        for timer_ref in self.timer_refs:
            timer_ref.cancel()  # type: ignore[attr-defined]


class HeartbeatStep(bootsteps.StartStopStep):
    """Records every `GRADER_HEARTBEAT_INTERVAL_S` seconds that this worker is alive and which queues it serves
    (the dashboard's and `/ready`'s "workers alive") and renews the leases on the work it runs.

    The beats run in a thread of their own until the process ends, not on the worker's timer: a warm shutdown
    (SIGTERM, `docker stop`) stops the worker's steps first and then waits for the task at hand, and that task's lease
    must stay renewed while it finishes, or another worker runs it again and its own result is thrown away. The
    process records its stop when it exits; a worker killed outright is counted gone after a few missed beats."""

    requires = ("celery.worker.components:Timer",)

    def __init__(self, worker: object, **kwargs: object) -> None:
        super().__init__(worker, **kwargs)
        self.name = ""
        self.queues: list[str] = []
        self.thread: threading.Thread | None = None

    def beat(self) -> None:
        settings = get_settings()
        try:
            with session_scope() as session:
                workers.beat(session, name=self.name, host=socket.gethostname(), pid=os.getpid(), queues=self.queues)
                # The tasks run in the pool's child process and claim work under this node name; this process renews.
                leases.renew(
                    session,
                    owner=self.name,
                    lease_s=settings.resolved_lease_s,
                    max_hold_s=settings.task_time_limit_s,
                )
        except Exception:  # a missed beat only makes the worker look idle for a while; never crash over it
            log.exception("heartbeat failed")

    def start(self, worker: WorkController) -> None:
        self.name = str(worker.hostname)
        self.queues = sorted(worker.app.amqp.queues.consume_from)
        self.beat()
        if self.thread is None:  # start() runs again when the worker restarts its consumer (a broker reconnect)
            interval = get_settings().heartbeat_interval_s
            self.thread = threading.Thread(target=self._beat_every, args=(interval,), name="heartbeat", daemon=True)
            self.thread.start()
            atexit.register(self._record_stop)

    def _beat_every(self, interval: float) -> None:
        while True:
            time.sleep(interval)
            self.beat()

    def _record_stop(self) -> None:
        try:
            with session_scope() as session:
                workers.stopped(session, name=self.name)
        except Exception:
            log.exception("could not record the worker's stop")


celery_app.steps["worker"].add(SweepStep)
celery_app.steps["worker"].add(HeartbeatStep)
