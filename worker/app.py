"""The Celery app: broker from settings, late acks, prefetch 1, one queue per resource (cpu, gpu), and one for
batch regrades (regrade), so a big regrade never holds up students' new submissions."""

from __future__ import annotations

import sqlite3
from functools import partial

from celery import Celery
from kombu import Exchange, Queue
from sqlalchemy.engine import make_url

from grader.settings import Settings, get_settings

CPU_QUEUE = "cpu"
GPU_QUEUE = "gpu"
REGRADE_QUEUE = "regrade"
EMBEDDED_POLL_INTERVAL_S = 0.1
"""How often a worker on the embedded broker looks for its next task (kombu's default: 1 s)."""


def create_celery(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    app = Celery("grader", broker=settings.resolved_broker_url, include=["worker.tasks", "worker.observability"])
    if settings.uses_embedded_broker:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    app.conf.update(
        task_queues=tuple(
            Queue(name, Exchange(name), routing_key=name) for name in (CPU_QUEUE, GPU_QUEUE, REGRADE_QUEUE)
        ),
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


celery_app = create_celery()
