"""A Dispatcher that sends tasks by name through the Celery app (the API never imports the tasks)."""

from __future__ import annotations

from celery import Celery

from grader.errors import InfrastructureError
from worker.app import CPU_QUEUE, GPU_QUEUE, REGRADE_QUEUE


class CeleryDispatcher:
    def __init__(self, app: Celery) -> None:
        self.app = app

    def grade_job(self, job_id: str, *, resumed: bool = False) -> None:
        self.app.send_task("grader.grade_job", args=[job_id], kwargs={"resumed": resumed}, queue=CPU_QUEUE)

    def evaluate_checkpoint(self, evaluation_id: str, job_id: str) -> None:
        self.app.send_task("grader.evaluate_checkpoint", args=[evaluation_id, job_id], queue=GPU_QUEUE)

    def run_regrade(self, regrade_id: str) -> None:
        self.app.send_task("grader.run_regrade", args=[regrade_id], queue=REGRADE_QUEUE)

    def check_broker(self, *, timeout_s: float) -> None:
        try:
            with self.app.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=timeout_s)
        except Exception as exc:  # kombu raises its own and the transport's errors alike
            raise InfrastructureError(f"broker unreachable ({type(exc).__name__}: {exc})") from exc
