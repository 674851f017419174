"""The Celery app the worker processes run (`celery --app worker.app worker`): grader.queues' app on the settings of
this process."""

from __future__ import annotations

from grader.queues import create_celery

celery_app = create_celery()
