"""The worker's logging: the same handler and formats as the API (GRADER_LOG_FORMAT), and every line a task logs,
Celery's own included, carrying the ids of what it works on (job, evaluation, regrade, and the job's submission)."""

from __future__ import annotations

import inspect
import logging
from contextvars import Token
from typing import Any

from celery import Task
from celery.signals import setup_logging, task_postrun, task_prerun

from grader import logs
from grader.db.session import session_scope
from grader.services import jobs
from grader.settings import get_settings

log = logging.getLogger(__name__)
ID_PARAMETERS = ("job_id", "evaluation_id", "regrade_id")
"""The tasks' parameters (worker.tasks) that name what a task works on."""

_scopes: dict[str, Token[dict[str, Any] | None]] = {}
"""Open log scopes by Celery task id, from task_prerun to task_postrun (same thread, whatever the pool)."""


@setup_logging.connect
def configure(loglevel: int | str | None = None, **_: object) -> None:
    """Connected, so Celery leaves logging to us rather than installing its own handler and formats."""
    logs.configure_logging(get_settings().log_format, level=loglevel or logging.INFO)


@task_prerun.connect
def open_task_scope(task_id: str, task: Task, args: tuple[Any, ...], kwargs: dict[str, Any], **_: object) -> None:
    try:
        bound = inspect.signature(task.run).bind_partial(*args, **kwargs).arguments
    except TypeError:  # not called as declared: Celery itself will say so
        bound = {}
    fields = {name: bound[name] for name in ID_PARAMETERS if bound.get(name)}
    _scopes[task_id] = logs.open_scope(**fields)
    if "job_id" in fields:
        logs.bind(submission_id=_submission_of(str(fields["job_id"])))


@task_postrun.connect
def close_task_scope(task_id: str, **_: object) -> None:
    token = _scopes.pop(task_id, None)
    if token is not None:
        logs.close_scope(token)


def _submission_of(job_id: str) -> str | None:
    try:
        with session_scope() as session:
            return jobs.submission_id_of(session, job_id=job_id)
    except Exception:  # only the log lines lack it then; the task itself reports a database that is down
        log.warning("could not look up the submission of job %s", job_id, exc_info=True)
        return None
