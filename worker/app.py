"""The Celery app: broker from settings, late acks, prefetch 1, one queue per resource (cpu, gpu), and one for
batch regrades (regrade), so a big regrade never holds up students' new submissions."""

from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue

from grader.settings import Settings, get_settings

CPU_QUEUE = "cpu"
GPU_QUEUE = "gpu"
REGRADE_QUEUE = "regrade"


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
    if not settings.uses_embedded_broker:
        # Redis redelivers an unacknowledged message after this long; it must exceed the longest task.
        app.conf.broker_transport_options = {"visibility_timeout": settings.task_time_limit_s * 2}
    return app


celery_app = create_celery()
