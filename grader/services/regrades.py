"""Batch regrades after a rubric change: a dry run that shows the diff and writes no result, or an applied run
that adds a grading job per submission (every earlier result stays as history).

A regrade never runs a checkpoint evaluation whose inputs did not change: evaluations are cached by checkpoint,
preprocessing and evaluator version, so a threshold change is pure rubric work. With `scope: {"parts": [...]}`
only those parts are checked again and the others are carried over from the submission's newest result. A
submission whose checkpoints still need an evaluation is, in an applied run, handed to an ordinary grading job
(item `queued`); a dry run cannot say its new score (item `failed`, with the reason).

The work runs in chunks, one task each on the `regrade` queue, so students' new submissions are graded between
chunks; progress is committed item by item and readable while it runs; a cancelled run stops at the next item,
every item before it complete (an applied item's job, results and score are written in one transaction).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from grader.db.models import GradingJob, Regrade, RegradeItem, Submission, User, as_utc, utcnow
from grader.domain.results import GradeReport, PartResult, PartStatus
from grader.domain.status import JobStatus
from grader.errors import InputError, NotFound
from grader.rubric.engine import grade_part
from grader.rubric.model import Rubric
from grader.services import leases
from grader.services.dispatch import Dispatcher
from grader.services.evaluations import plan_evaluations
from grader.services.jobs import queue_job, start_regrade, store_report
from grader.services.reviews import current_reviews, latest_graded_job
from grader.services.submissions import stored_sheet
from grader.settings import Settings
from grader.storage import ArtifactStore

log = logging.getLogger(__name__)

CHUNK = 100
"""Submissions per task: small enough that other work runs between chunks, large enough to cost little."""
FINAL = ("finished", "cancelled", "failed")
EVALUATED_CHECKERS = frozenset({"resnet_architecture", "cifar10_accuracy"})
"""Checkers that read checkpoint evaluations: other parts are regraded without looking at them."""


def parse_scope(raw: Any, rubric: Rubric) -> dict[str, Any]:
    """ "all", {"users": [...]} or {"parts": [...]} (part ids of the rubric), in a canonical form."""
    if raw == "all" or raw == {"all": True}:
        return {"all": True}
    if isinstance(raw, Mapping) and len(raw) == 1:
        ((key, values),) = raw.items()
        if (
            key in ("users", "parts")
            and isinstance(values, list)
            and values
            and all(isinstance(v, str) for v in values)
        ):
            if key == "parts":
                known = {part.id for part in rubric.parts}
                unknown = [value for value in values if value not in known]
                if unknown:
                    raise InputError(f"scope.parts: {rubric.assignment} has no part {unknown[0]!r}", field="scope")
            return {key: sorted(set(values))}
    raise InputError('scope must be "all", {"users": [names]} or {"parts": [part ids]}', field="scope")


def create_regrade(session: Session, *, rubric: Rubric, scope: Mapping[str, Any], dry_run: bool, user: User) -> Regrade:
    """The regrade and one item per graded submission in scope (committed; the caller queues it)."""
    query = select(Submission.id).where(Submission.assignment_id == rubric.assignment)
    if "users" in scope:
        query = query.join(User, User.id == Submission.user_id).where(User.username.in_(scope["users"]))
    graded = select(GradingJob.submission_id).where(GradingJob.status == str(JobStatus.GRADED))
    ids = list(session.scalars(query.where(Submission.id.in_(graded)).order_by(Submission.received_at)))
    regrade = Regrade(
        assignment_id=rubric.assignment,
        scope=dict(scope),
        dry_run=dry_run,
        status="queued",
        total=len(ids),
        started_by_id=user.id if user is not None else None,
        rubric_version=rubric.version,
    )
    session.add(regrade)
    session.flush()
    session.add_all(RegradeItem(regrade_id=regrade.id, submission_id=sid) for sid in ids)
    session.commit()
    return regrade


def send_regrade(session: Session, *, regrade: Regrade, dispatcher: Dispatcher) -> None:
    """Queue its first chunk; with the broker down it stays `queued`, says so, and the sweeper sends it later."""
    try:
        dispatcher.run_regrade(regrade.id)
    except Exception as exc:  # any broker failure: the regrade is stored, so say so instead of failing
        log.warning("could not queue regrade %s: %s", regrade.id, exc)
        regrade.detail = f"stored; the queue is unreachable right now ({type(exc).__name__}): sent when it is back"
        session.commit()


def get_regrade(session: Session, regrade_id: str) -> Regrade:
    regrade = session.get(Regrade, regrade_id)
    if regrade is None:
        raise NotFound(f"no regrade {regrade_id!r}", field="regrade_id")
    return regrade


def request_cancel(session: Session, *, regrade: Regrade) -> Regrade:
    if regrade.status not in FINAL:
        regrade.cancel_requested = True
        if regrade.status == "queued":  # nothing has run: stop at once
            _finish(regrade, "cancelled")
        session.commit()
    return regrade


def run_regrade(
    session: Session,
    *,
    regrade_id: str,
    rubric: Rubric,
    settings: Settings,
    dispatcher: Dispatcher | None,
    chunk: int = CHUNK,
    worker: str | None = None,
) -> str:
    """Regrade the next `chunk` pending items; queue the next chunk (when a dispatcher is given) or return
    "running" for the caller to call again. Idempotent: done items are never redone. `worker`: the lease owner;
    while another worker holds the regrade under a live lease (its chunk runs now) this does nothing."""
    regrade = session.get(Regrade, regrade_id)
    if regrade is None or regrade.status in FINAL:
        return regrade.status if regrade is not None else "failed"
    owner = worker or leases.default_owner()
    if not leases.claim(session, Regrade, regrade.id, owner=owner, lease_s=settings.resolved_lease_s):
        log.info("regrade %s is held by %s; this delivery does nothing", regrade.id, regrade.lease_owner)
        session.rollback()
        return regrade.status
    if regrade.status == "queued":
        regrade.status, regrade.started_at = "running", utcnow()
    session.commit()  # the claim stands on its own: an item's failure below rolls back only that item
    store = ArtifactStore(settings.resolved_storage_dir)
    items = _pending(session, regrade.id, chunk)
    for item in items:
        session.refresh(regrade, ["cancel_requested"])
        if regrade.cancel_requested:
            _finish(regrade, "cancelled")
            session.commit()
            return "cancelled"
        try:
            _regrade_item(session, regrade, item, rubric, store, settings, dispatcher)
        except Exception as exc:  # one broken submission must not stop the batch: record it and go on
            session.rollback()
            log.exception("regrade %s: submission %s failed", regrade.id, item.submission_id)
            item.status, item.detail = "failed", f"internal grader error ({type(exc).__name__}: {exc})"[:2000]
        if item.status == "failed":
            regrade.failed += 1
        else:
            regrade.done += 1
        session.commit()
    if _pending(session, regrade.id, 1):
        # Let go before the next chunk is queued: whichever worker takes it must be able to claim the regrade.
        leases.release(regrade)
        session.commit()
        if dispatcher is not None:
            dispatcher.run_regrade(regrade.id)
        return "running"
    _finish(regrade, "finished")
    session.commit()
    return "finished"


def fail_regrade(session: Session, *, regrade_id: str, detail: str) -> None:
    regrade = session.get(Regrade, regrade_id)
    if regrade is not None and regrade.status not in FINAL:
        _finish(regrade, "failed")
        regrade.detail = detail[:2000]
        session.commit()


def _pending(session: Session, regrade_id: str, limit: int) -> list[RegradeItem]:
    query = (
        select(RegradeItem)
        .where(RegradeItem.regrade_id == regrade_id, RegradeItem.status == "pending")
        .order_by(RegradeItem.id)
        .limit(limit)
        .options(
            selectinload(RegradeItem.submission).selectinload(Submission.jobs).selectinload(GradingJob.results),
            selectinload(RegradeItem.submission).selectinload(Submission.jobs).selectinload(GradingJob.score),
            selectinload(RegradeItem.submission).selectinload(Submission.reviews),
            selectinload(RegradeItem.submission).selectinload(Submission.files),
        )
    )
    return list(session.scalars(query))


def _finish(regrade: Regrade, status: str) -> None:
    regrade.status, regrade.finished_at = status, utcnow()
    leases.release(regrade)


def _regrade_item(
    session: Session,
    regrade: Regrade,
    item: RegradeItem,
    rubric: Rubric,
    store: ArtifactStore,
    settings: Settings,
    dispatcher: Dispatcher | None,
) -> None:
    submission = item.submission
    job = latest_graded_job(submission)
    if job is None:
        item.status, item.detail = "failed", "the submission has no graded result"
        return
    old = {row.part_id: _part(row) for row in job.results}
    reviews = {part_id: review.points for part_id, review in current_reviews(submission).items()}
    selected = set(regrade.scope.get("parts") or [part.id for part in rubric.parts])
    sheet = stored_sheet(submission, store)
    evaluations: dict[str, Mapping[str, Any]] | None = None
    if any(part.checker in EVALUATED_CHECKERS for part in rubric.parts if part.id in selected):
        plan = plan_evaluations(session, submission=submission, sheet=sheet, since=job.created_at, settings=settings)
        if not plan.ready:
            _needs_evaluation(session, regrade, item, submission, dispatcher)
            return
        evaluations = dict(plan.results)
    parts = [
        grade_part(spec, sheet, rubric, evaluations or {})
        if spec.id in selected or spec.id not in old
        else old[spec.id]
        for spec in rubric.parts
    ]
    report = GradeReport(assignment=rubric.assignment, rubric_version=rubric.version, parts=parts)
    # The item is changed only now that the grading is done: a change made before it would be flushed by the next
    # query, and on SQLite hold the database's write lock, and every submission waiting on it, while the parts run.
    item.old_score = _score(old.values(), reviews)
    item.old_rubric_version = job.score.rubric_version if job.score else None
    item.new_score = _score(report.parts, reviews)
    new = {part.id: part.points for part in report.parts}
    item.changes = {
        part_id: {"old": old[part_id].points if part_id in old else None, "new": new.get(part_id)}
        for part_id in sorted(set(old) | set(new))
        if (old[part_id].points if part_id in old else None) != new.get(part_id)
    }
    if not regrade.dry_run:
        new_job = start_regrade(session, submission=submission, reason="batch regrade")
        new_job.queued_at = new_job.started_at = utcnow()
        store_report(session, job=new_job, report=report, rubric=rubric, evaluations=evaluations, commit=False)
        item.job_id = new_job.id
    item.status = "done"


def _needs_evaluation(
    session: Session, regrade: Regrade, item: RegradeItem, submission: Submission, dispatcher: Dispatcher | None
) -> None:
    """Its checkpoints need an evaluation first: an ordinary grading job (applied), or no answer (dry run)."""
    session.rollback()  # no evaluation row made for a dry run
    if regrade.dry_run or dispatcher is None:
        item.status = "failed"
        item.detail = "a checkpoint of this submission has not been evaluated for these settings; an applied run "
        item.detail += "over the API queues its grading job"
        return
    job = start_regrade(session, submission=submission, reason="batch regrade")
    queue_job(session, job=job, dispatcher=dispatcher)
    item.status, item.job_id, item.detail = "queued", job.id, "graded by its own job (a checkpoint evaluation runs)"


def _part(row: Any) -> PartResult:
    return PartResult(
        id=row.part_id,
        status=PartStatus(row.status),
        points=row.points,
        max_points=row.max_points,
        feedback=row.feedback,
        evidence=row.evidence,
        public_feedback=row.public_feedback,
    )


def _score(parts: Any, reviews: Mapping[str, float]) -> float:
    """The score with reviewed points in place of automatic ones (a review survives every regrade)."""
    return round(sum(reviews.get(part.id, part.points) for part in parts), 4)


def describe_regrade(regrade: Regrade, *, with_items: bool = True) -> dict[str, Any]:
    items = regrade.items
    done = [item for item in items if item.old_score is not None and item.new_score is not None]
    before = sorted({item.old_rubric_version for item in items if item.old_rubric_version})
    view: dict[str, Any] = {
        "id": regrade.id,
        "assignment": regrade.assignment_id,
        "status": regrade.status,
        "dry_run": regrade.dry_run,
        "scope": regrade.scope,
        "total": regrade.total,
        "done": regrade.done,
        "failed": regrade.failed,
        "cancel_requested": regrade.cancel_requested,
        "started_by": regrade.started_by.username if regrade.started_by else "grader regrade (command line)",
        "rubric_version": {"before": before, "after": regrade.rubric_version},
        "created_at": _iso(regrade.created_at),
        "started_at": _iso(regrade.started_at),
        "finished_at": _iso(regrade.finished_at),
        "detail": regrade.detail,
        "summary": {
            "up": sum(1 for item in done if item.new_score > item.old_score),
            "down": sum(1 for item in done if item.new_score < item.old_score),
            "unchanged": sum(1 for item in done if item.new_score == item.old_score),
        },
        "status_url": f"/api/v1/regrades/{regrade.id}",
    }
    if with_items:
        view["items"] = [
            {
                "submission_id": item.submission_id,
                "user": item.submission.user.username,
                "status": item.status,
                "old_score": item.old_score,
                "new_score": item.new_score,
                "changes": item.changes or {},
                "job_id": item.job_id,
                "detail": item.detail,
            }
            for item in items
        ]
    return view


def list_regrades(session: Session, *, assignment_id: str) -> Sequence[Regrade]:
    query = select(Regrade).where(Regrade.assignment_id == assignment_id).order_by(Regrade.created_at.desc())
    return list(session.scalars(query))


def _iso(moment: Any) -> str | None:
    return None if moment is None else as_utc(moment).isoformat().replace("+00:00", "Z")
