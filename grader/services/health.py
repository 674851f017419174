"""Readiness: can this deployment take and finish work right now (database, broker, a live worker per queue)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from grader.errors import InfrastructureError
from grader.services import stats, workers
from grader.services.dispatch import Dispatcher
from grader.settings import Settings

BROKER_TIMEOUT_S = 2.0


def readiness(session: Session, *, settings: Settings, dispatcher: Dispatcher) -> dict[str, Any]:
    """Every check's answer and the list of problems; ready means no problems."""
    problems: list[str] = []
    try:
        session.execute(text("SELECT 1"))
    except Exception as exc:  # whatever the driver raises, readiness reports it instead of failing
        session.rollback()
        return {"ready": False, "database": f"unreachable ({type(exc).__name__})", "problems": ["database"]}
    try:
        dispatcher.check_broker(timeout_s=BROKER_TIMEOUT_S)
        broker = "ok"
    except InfrastructureError as exc:
        broker = str(exc)
        problems.append("broker")
    queue = stats.queue_snapshot(session, settings=settings)
    problems += [f"no live worker for the {name} queue" for name, alive in queue["workers_alive"].items() if not alive]
    live = workers.live_workers(session, settings=settings)
    return {
        "ready": not problems,
        "database": "ok",
        "broker": broker,
        "queue": queue,
        "workers": [
            {"name": w.name, "host": w.host, "queues": list(w.queues), "last_seen_at": w.last_seen_at.isoformat()}
            for w in live
        ],
        "problems": problems,
    }
