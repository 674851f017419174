"""`grader run`: one command that migrates, then runs the API with one worker process per queue beside it (so an
answers-only submission never waits behind another student's checkpoint evaluation or a batch regrade)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from grader.queues import QUEUES
from grader.settings import Settings

WORKER_STOP_TIMEOUT_S = 30
WORKER_NICENESS = 10


def worker_command(*, queues: str = ",".join(QUEUES), concurrency: int = 1) -> list[str]:
    # A node name unique per process: heartbeats are kept per name, and Celery warns about duplicate names.
    name = f"{queues.replace(',', '+')}.{os.getpid()}@%h"
    return [
        sys.executable,
        "-m",
        "celery",
        "--app",
        "worker.app",
        "worker",
        "--queues",
        queues,
        "--concurrency",
        str(concurrency),
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "--hostname",
        name,
    ]


def run_service(settings: Settings, *, host: str, port: int) -> int:
    from grader.api.server import serve_api
    from grader.db.migrate import upgrade_database
    from grader.evaluation.safety import require_safe_torch

    require_safe_torch()  # checked here too, so that `make run` fails at once rather than in the worker's log
    upgrade_database()
    _print_banner(settings, host, port)
    started = [subprocess.Popen(worker_command(queues=queue), preexec_fn=_yield_to_the_api) for queue in QUEUES]
    try:
        serve_api(settings, host=host, port=port)
    finally:
        _stop(started)
    return 0


def _yield_to_the_api() -> None:
    """In each worker before it starts: a lower CPU priority than the API's beside it. In a deadline surge the API
    then keeps answering within its time (the work it accepts waits, stored, in the queue) instead of sharing the
    machine's cores with the grading; with cores to spare the workers run at full speed all the same."""
    os.nice(WORKER_NICENESS)


def _stop(started: list[subprocess.Popen[bytes]]) -> None:
    for worker in started:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)  # Celery's warm shutdown: finish the current task, then exit
    for worker in started:
        try:
            worker.wait(timeout=WORKER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def _print_banner(settings: Settings, host: str, port: int) -> None:
    lines = [
        f"grader: API on http://{host}:{port}/api/v1 (OpenAPI docs at http://{host}:{port}/docs)",
        f"  database: {_redact(settings.resolved_database_url)}",
        f"  broker:   {_redact(settings.resolved_broker_url)}",
        f"  uploads:  {settings.resolved_storage_dir}",
        "  get a token: .venv/bin/grader users create --role instructor alice   (or --role student bob)",
    ]
    if settings.cifar10_root is None or not (settings.cifar10_root / "cifar-10-batches-py").is_dir():
        lines.append(
            "  note: no CIFAR-10 test set found, so Q1 checkpoints cannot be evaluated yet: set "
            "GRADER_CIFAR10_ROOT to the folder holding cifar-10-batches-py/ and restart."
        )
    print("\n".join(lines), flush=True)


def _redact(url: str) -> str:
    # Never print a password that may be in a server URL.
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}" if ":" in credentials else url
    return url
