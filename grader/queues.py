"""The task queues: their names, the Celery app that reaches them (broker from settings, late acks, prefetch 1, one
queue per resource, cpu and gpu, and one for batch regrades, so that a big regrade never holds up students' new
submissions), and the Dispatcher that sends work to them by task name. The API and the worker both use it; the tasks
themselves live in the `worker` package, which the app names but never imports here."""

from __future__ import annotations

import sqlite3
from functools import partial

from celery import Celery
from kombu import Exchange, Queue
from sqlalchemy.engine import make_url

from grader.errors import InfrastructureError
from grader.settings import Settings, get_settings

CPU_QUEUE = "cpu"
GPU_QUEUE = "gpu"
REGRADE_QUEUE = "regrade"
QUEUES = (CPU_QUEUE, GPU_QUEUE, REGRADE_QUEUE)
EMBEDDED_POLL_INTERVAL_S = 0.1
"""How often a worker on the embedded broker looks for its next task (kombu's default: 1 s)."""


def create_celery(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    app = Celery("grader", broker=settings.resolved_broker_url, include=["worker.tasks", "worker.observability"])
    if settings.uses_embedded_broker:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    app.conf.update(
        task_queues=tuple(Queue(name, Exchange(name), routing_key=name) for name in QUEUES),
        task_default_queue=CPU_QUEUE,
        task_routes={
            "grader.grade_job": {"queue": CPU_QUEUE},
            "grader.evaluate_checkpoint": {"queue": GPU_QUEUE},
            "grader.run_regrade": {"queue": REGRADE_QUEUE},
        },
        # A message is acknowledged only after its task ends, and redelivered if the worker dies mid-task.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_time_limit=settings.task_time_limit_s,
        task_soft_time_limit=max(settings.task_time_limit_s - 30, 30),
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        task_serializer="json",
        accept_content=["json"],
    )
    if settings.uses_embedded_broker:
        # kombu's SQLAlchemy transport polls; while a task runs (prefetch 1) it cannot take the next, so each task
        # waited up to its default 1 s poll: one task a second however short. An idle poll is one small query. Set
        # on the class: this transport hands every transport option to create_engine, polling_interval included.
        from kombu.transport import sqlalchemy as embedded_transport

        embedded_transport.Transport.polling_interval = EMBEDDED_POLL_INTERVAL_S
        path = make_url(settings.resolved_broker_url.removeprefix("sqla+")).database
        if path:
            app.conf.broker_transport_options = {"creator": partial(_embedded_broker_connection, path)}
    else:
        # Redis redelivers an unacknowledged message after this long; it must exceed the longest task.
        app.conf.broker_transport_options = {"visibility_timeout": settings.task_time_limit_s * 2}
    return app


def _embedded_broker_connection(path: str) -> sqlite3.Connection:
    """A connection to the embedded broker's file, made cheap to publish on (it took most of a submission's time):
    WAL, so a publish does not wait for a worker's poll to end and a commit writes no rollback journal; and
    synchronous NORMAL, so a commit does not wait for the disk (a power cut may lose the last messages; the workers'
    sweep resends work whose message never arrived)."""
    connection = sqlite3.connect(path, timeout=30, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    return connection


class CeleryDispatcher:
    def __init__(self, app: Celery) -> None:
        self.app = app

    def grade_job(self, job_id: str, *, resumed: bool = False) -> None:
        self.app.send_task("grader.grade_job", args=[job_id], kwargs={"resumed": resumed}, queue=CPU_QUEUE)

    def evaluate_checkpoint(self, evaluation_id: str, job_id: str, *, gpu: bool = True) -> None:
        queue = GPU_QUEUE if gpu else CPU_QUEUE
        self.app.send_task("grader.evaluate_checkpoint", args=[evaluation_id, job_id], queue=queue)

    def run_regrade(self, regrade_id: str) -> None:
        self.app.send_task("grader.run_regrade", args=[regrade_id], queue=REGRADE_QUEUE)

    def check_broker(self, *, timeout_s: float) -> None:
        try:
            with self.app.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=timeout_s)
        except Exception as exc:  # kombu raises its own and the transport's errors alike
            raise InfrastructureError(f"broker unreachable ({type(exc).__name__}: {exc})") from exc
