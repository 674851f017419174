"""Celery worker: the app (configuration only) and thin tasks that call grader.services."""
