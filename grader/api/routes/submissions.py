"""Submitting answer sheets and checkpoints, reading submissions, and starting regrades."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Annotated, BinaryIO, Literal

from fastapi import APIRouter, File, Header, Query, UploadFile, status
from fastapi.responses import Response
from sqlalchemy.exc import SQLAlchemyError

from grader.api import downloads
from grader.api.deps import CurrentUser, DatabaseRoute, DispatcherDep, SessionDep, SettingsDep, StaffUser, only_query
from grader.api.schemas import ErrorResponse, SubmissionAccepted, SubmissionList, SubmissionPublic
from grader.api.uploads import SubmissionUploadRoute
from grader.db.models import GradingJob, Submission
from grader.domain.status import Role
from grader.errors import PermissionDenied, RubricError
from grader.rubric.model import Rubric, RubricCatalog
from grader.services import jobs, submissions, workers
from grader.services.users import get_user_by_username
from grader.services.views import describe_submission
from grader.settings import Settings
from grader.storage import ArtifactStore

log = logging.getLogger(__name__)
router = APIRouter(tags=["submissions"], route_class=DatabaseRoute)
CHUNK = 1024 * 1024
ERRORS: dict[int | str, dict[str, object]] = {code: {"model": ErrorResponse} for code in (401, 403, 404, 413, 422, 503)}


def _chunks(stream: BinaryIO) -> Iterator[bytes]:
    while chunk := stream.read(CHUNK):
        yield chunk


def _incoming(upload: UploadFile, field: str) -> submissions.IncomingFile:
    return submissions.IncomingFile(field=field, filename=upload.filename or field, chunks=_chunks(upload.file))


def _accepted(submission: Submission, job: GradingJob) -> SubmissionAccepted:
    return SubmissionAccepted(id=submission.id, status=job.status, status_url=f"/api/v1/submissions/{submission.id}")


def _rubric_or_none(settings: Settings, assignment_id: str) -> Rubric | None:
    try:
        return RubricCatalog(settings.rubrics_dir).get(assignment_id)
    except RubricError:
        return None


def create_submission(
    assignment_id: str,
    response: Response,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
    answers: Annotated[UploadFile, File(description="The answer sheet, YAML or JSON.")],
    v1: Annotated[UploadFile | None, File(description="Version 1 checkpoint (.safetensors or state_dict).")] = None,
    v2: Annotated[UploadFile | None, File(description="Version 2 checkpoint (.safetensors or state_dict).")] = None,
    v1_code: Annotated[
        list[UploadFile] | None,
        File(description="Version 1 model code: one .zip, or the .py files (repeat the field)."),
    ] = None,
    v2_code: Annotated[
        list[UploadFile] | None,
        File(description="Version 2 model code: one .zip, or the .py files (repeat the field)."),
    ] = None,
    code: Annotated[
        list[UploadFile] | None,
        File(
            description="The whole code folder (DataReader.py, ImageUtils.py, NetWork.py, Model.py, main.py): one "
            ".zip, or the .py files (repeat the field); run by the Q1(a)-(d) code checks."
        ),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=200,
            pattern=r"^[!-~]+$",
            description="Any unique string (e.g. a UUID), at most 200 visible ASCII characters: a retry with the "
            "same key within 24 h answers with the same submission instead of making a second one.",
        ),
    ] = None,
) -> SubmissionAccepted:
    checkpoints = [_incoming(upload, field) for field, upload in (("v1", v1), ("v2", v2)) if upload is not None]
    code_uploads = {
        field: [_incoming(upload, field) for upload in uploads]
        for field, uploads in (("v1_code", v1_code), ("v2_code", v2_code), ("code", code))
        if uploads
    }
    try:
        submission = submissions.create_submission(
            session,
            settings=settings,
            user=user,
            assignment_id=assignment_id,
            answers=_incoming(answers, "answers"),
            checkpoints=checkpoints,
            code=code_uploads,
            idempotency_key=idempotency_key,
        )
    except submissions.AlreadySubmitted as earlier:
        # A retry: the same answer as the first time (that submission, its status now), and nothing queued again.
        response.headers["Idempotent-Replayed"] = "true"
        return _accepted(earlier.submission, earlier.submission.jobs[-1])
    job = submission.jobs[0]
    session.commit()  # stored: from here on the answer is 202, whatever becomes of queueing it now
    # The answer is read now: a rollback below expires the objects, and reading them again takes a connection.
    stored = _accepted(submission, job)
    try:
        jobs.queue_job(session, job=job, dispatcher=dispatcher, in_flight_limit=settings.jobs_in_flight_per_student)
        session.refresh(job)
    except SQLAlchemyError as exc:  # e.g. no connection free in a surge: it stays received, and the sweep queues it
        session.rollback()
        log.warning("submission %s is stored but could not be queued now: %s", stored.id, exc)
        return stored
    return _accepted(submission, job)


# The upload route reads its own multipart body, each file held to its size limit while it streams in.
router.add_api_route(
    "/assignments/{assignment_id}/submissions",
    create_submission,
    methods=["POST"],
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SubmissionAccepted,
    responses=ERRORS,
    route_class_override=SubmissionUploadRoute,
)


@router.get("/submissions/{submission_id}", response_model=SubmissionPublic, responses=ERRORS)
def read_submission(submission_id: str, user: CurrentUser, session: SessionDep, settings: SettingsDep) -> dict:
    submission = submissions.get_submission_for(session, user=user, submission_id=submission_id)
    rubric = _rubric_or_none(settings, submission.assignment_id)
    view = describe_submission(submission, viewer_role=Role(user.role), rubric=rubric)
    stalled = workers.stall_note(session, settings=settings, job=submission.jobs[-1])
    if stalled:
        view["detail"] = f"{view['detail']} ({stalled})" if view["detail"] else stalled
    return view


@router.get(
    "/submissions",
    response_model=SubmissionList,
    responses=ERRORS,
    dependencies=[only_query("assignment", "user", "status", "limit", "offset")],
)
def read_submissions(
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    assignment: str | None = None,
    status: Literal["received", "queued", "running", "graded", "failed"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    owner: Annotated[str | None, Query(alias="user", description="a student's username (staff)")] = None,
) -> dict:
    """Newest first; students see their own. Unknown query parameters are refused (422)."""
    owner_user = None
    if owner is not None:
        if not Role(user.role).is_staff and owner != user.username:
            raise PermissionDenied("students may list only their own submissions")
        owner_user = get_user_by_username(session, username=owner)
        if owner_user is None:
            return {"items": [], "total": 0}
    rows, total = submissions.list_submissions_for(
        session, user=user, assignment_id=assignment, owner=owner_user, status=status, limit=limit, offset=offset
    )
    role = Role(user.role)
    items = [
        describe_submission(row, viewer_role=role, rubric=_rubric_or_none(settings, row.assignment_id)) for row in rows
    ]
    return {"items": items, "total": total}


@router.post(
    "/submissions/{submission_id}/regrade",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SubmissionAccepted,
    responses=ERRORS,
)
def create_regrade(
    submission_id: str, user: StaffUser, session: SessionDep, dispatcher: DispatcherDep
) -> SubmissionAccepted:
    submission = submissions.get_submission_for(session, user=user, submission_id=submission_id)
    job = jobs.start_regrade(session, submission=submission)
    jobs.queue_job(session, job=job, dispatcher=dispatcher)
    session.refresh(job)
    return _accepted(submission, job)


@router.get(
    "/submissions/{submission_id}/files/{field}",
    responses={**ERRORS, 200: {"content": {"application/octet-stream": {}}, "description": "the file as uploaded"}},
    dependencies=[only_query()],
)
def download_file(
    submission_id: str, field: str, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> Response:
    """The upload as stored (code: the normalised zip), as a download; staff, or the student who sent it."""
    submission = submissions.get_submission_for(session, user=user, submission_id=submission_id)
    return downloads.submission_file(submission, field, ArtifactStore(settings.resolved_storage_dir))


@router.get("/submissions/{submission_id}/files/{field}/contents", responses=ERRORS, dependencies=[only_query()])
def read_file_contents(
    submission_id: str, field: str, user: CurrentUser, session: SessionDep, settings: SettingsDep
) -> dict:
    """For reading in a page: the answer sheet's text, or each file of a code upload with its text."""
    submission = submissions.get_submission_for(session, user=user, submission_id=submission_id)
    file = submissions.submission_file(submission, field)
    store = ArtifactStore(settings.resolved_storage_dir)
    return {"field": field, "files": submissions.file_contents(store, file)}
