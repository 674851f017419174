"""Receiving a submission: storing its files, creating its first grading job, and reading it back."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

from sqlalchemy import Insert, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Session

from grader.answers.sheet import parse_answer_sheet
from grader.answers.validate import require_valid_sheet
from grader.db.models import Artifact, GradingJob, Submission, SubmissionFile, User, new_id, utcnow
from grader.domain.status import JobStatus, Role
from grader.errors import InfrastructureError, InputError, NotFound, UploadTooLarge
from grader.rubric.model import Rubric, RubricCatalog
from grader.services.assignments import get_assignment
from grader.services.policy import check_can_submit
from grader.settings import Settings
from grader.storage import ArtifactStore, StagedBlob

CHECKPOINT_FIELDS = ("v1", "v2")
CODE_FIELDS: dict[str, str | None] = {**{f"{label}_code": label for label in CHECKPOINT_FIELDS}, "code": None}
"""Code upload fields and the checkpoint each runs (student-code mode); `code`, the whole code folder, runs none:
the Q1 code checks read it (else v1_code, else v2_code)."""
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt", ".th", ".bin")
IDEMPOTENCY_WINDOW = timedelta(hours=24)
"""How long an Idempotency-Key names its submission; after that the same key makes a new one."""


class AlreadySubmitted(Exception):  # not an error: the outcome of a repeated request
    """This user already submitted with this Idempotency-Key within the window: the request is answered with that
    submission, and nothing of this one is stored."""

    def __init__(self, submission: Submission) -> None:
        super().__init__(submission.id)
        self.submission = submission


@dataclass(frozen=True, slots=True)
class IncomingFile:
    field: str
    filename: str
    chunks: Iterable[bytes]


def create_submission(
    session: Session,
    *,
    settings: Settings,
    user: User,
    assignment_id: str,
    answers: IncomingFile,
    checkpoints: Sequence[IncomingFile] = (),
    code: Mapping[str, Sequence[IncomingFile]] | None = None,
    idempotency_key: str | None = None,
) -> Submission:
    """Store every file and create the submission with its first job (status received); not yet queued.

    `code` maps a code field (v1_code, v2_code) to its files: one zip or several .py files. With an
    `idempotency_key` this user sent before (within IDEMPOTENCY_WINDOW), raises AlreadySubmitted with that
    submission instead, also when the two requests race.
    """
    get_assignment(session, assignment_id=assignment_id)
    rubric = RubricCatalog(settings.rubrics_dir).get(assignment_id)
    admit = partial(_admit, session, rubric=rubric, user=user, assignment_id=assignment_id, key=idempotency_key)
    admit()  # before anything is staged
    # Staging and checking the files is the slow part: the database's connection goes back to the pool meanwhile
    # (in a surge, uploads held every connection, and on SQLite the write lock, while they were checked).
    session.commit()
    _check_checkpoint_fields(checkpoints)
    code_zips = _normalise_code(code or {}, {upload.field for upload in checkpoints}, settings)
    store = ArtifactStore(settings.resolved_storage_dir)
    staged: list[tuple[IncomingFile, StagedBlob]] = []
    try:
        # Everything is staged and checked first; only an accepted request's files reach the store.
        answers_blob = store.stage(answers.chunks, max_bytes=settings.max_answers_bytes, field="answers")
        staged.append((answers, answers_blob))
        sheet = parse_answer_sheet(answers_blob.path.read_bytes(), filename=answers.filename)
        require_valid_sheet(sheet, rubric)
        total = answers_blob.size
        for upload in checkpoints:
            blob = store.stage(upload.chunks, max_bytes=settings.max_checkpoint_bytes, field=upload.field)
            staged.append((upload, blob))
            total += blob.size
            if total > settings.max_submission_bytes:
                raise UploadTooLarge(
                    f"the submission's files add up to more than {settings.max_submission_bytes} bytes",
                    field=upload.field,
                )
            _precheck(blob, upload.field, code_uploaded=f"{upload.field}_code" in code_zips, settings=settings)
        for field, data in code_zips.items():
            blob = store.stage([data], max_bytes=settings.max_checkpoint_bytes, field=field)
            staged.append((IncomingFile(field, f"{field}.zip", ()), blob))
        # Again in the transaction that stores the submission: meanwhile a concurrent upload of this student may have
        # taken the last attempt or started the cooldown, or one with the same key may have been stored.
        admit()
        submission = _new_submission(session, assignment_id=assignment_id, user=user, idempotency_key=idempotency_key)
        for upload, blob in staged:
            kept = store.keep(blob)
            _attach(session, submission, upload, kept.sha256, kept.size)
        session.add(GradingJob(submission_id=submission.id, number=1, status=str(JobStatus.RECEIVED)))
        session.flush()
    except BaseException:
        for _, blob in staged:
            store.discard(blob)
        raise
    return submission


def _admit(session: Session, *, rubric: Rubric, user: User, assignment_id: str, key: str | None) -> None:
    """AlreadySubmitted for a retry of a stored submission; the course policy's refusal (InputError) otherwise."""
    if key is not None:
        _raise_if_submitted(session, user=user, assignment_id=assignment_id, key=key)
    try:
        check_can_submit(session, rubric=rubric, user=user)
    except InputError:
        if key is not None:
            # A concurrent request with the same key may have just taken the attempt or started the cooldown:
            # this retry is answered with its submission, not refused because of it.
            _raise_if_submitted(session, user=user, assignment_id=assignment_id, key=key)
        raise


def _new_submission(session: Session, *, assignment_id: str, user: User, idempotency_key: str | None) -> Submission:
    if idempotency_key is None:
        submission = Submission(assignment_id=assignment_id, user_id=user.id)
        session.add(submission)
        session.flush()
        return submission
    # A key older than the window is free again: the old submission gives it up.
    session.execute(
        update(Submission)
        .where(
            Submission.user_id == user.id,
            Submission.idempotency_key == idempotency_key,
            Submission.received_at < utcnow() - IDEMPOTENCY_WINDOW,
        )
        .values(idempotency_key=None)
    )
    submission_id = new_id()
    # Insert-if-absent on (user_id, idempotency_key): of two concurrent requests with the same key one inserts; the
    # other's insert waits for it and then does nothing, and that request is answered with the first's submission.
    inserted = session.scalar(
        _insert_if_absent(session, Submission, "user_id", "idempotency_key")
        .values(id=submission_id, assignment_id=assignment_id, user_id=user.id, idempotency_key=idempotency_key)
        .returning(Submission.id)
    )
    if inserted is None:
        _raise_if_submitted(session, user=user, assignment_id=assignment_id, key=idempotency_key)
        # Not reached: the row that holds the key is within the window, older ones gave it up above.
        raise InfrastructureError("the Idempotency-Key is held by a submission that cannot be read; retry")
    submission = session.get(Submission, inserted)
    assert submission is not None  # inserted just now, in this transaction
    return submission


def _raise_if_submitted(session: Session, *, user: User, assignment_id: str, key: str) -> None:
    earlier = session.scalar(
        select(Submission).where(
            Submission.user_id == user.id,
            Submission.idempotency_key == key,
            Submission.received_at >= utcnow() - IDEMPOTENCY_WINDOW,
        )
    )
    if earlier is None:
        return
    if earlier.assignment_id != assignment_id:
        raise InputError(
            f"this Idempotency-Key was used for a submission to {earlier.assignment_id}; send a new key",
            field="Idempotency-Key",
        )
    raise AlreadySubmitted(earlier)


def _insert_if_absent(session: Session, model: type[DeclarativeBase], *conflict_columns: str) -> Insert:
    """INSERT ... ON CONFLICT (columns) DO NOTHING, in the dialect of the session's database (PostgreSQL or SQLite):
    a row another transaction inserted first is left as it is (with RETURNING, no row comes back)."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(model).on_conflict_do_nothing(index_elements=list(conflict_columns))


def _precheck(blob: StagedBlob, field: str, *, code_uploaded: bool, settings: Settings) -> None:
    """A file that is no usable checkpoint is refused now (422, no attempt counted), not after a queue wait."""
    from grader.evaluation.precheck import precheck_checkpoint

    precheck_checkpoint(blob.path, label=field, code_uploaded=code_uploaded, max_bytes=settings.max_checkpoint_bytes)


def _check_checkpoint_fields(checkpoints: Sequence[IncomingFile]) -> None:
    seen: set[str] = set()
    for upload in checkpoints:
        if upload.field not in CHECKPOINT_FIELDS:
            raise InputError(f"unknown file field {upload.field!r}; expected one of v1, v2", field=upload.field)
        if upload.field in seen:
            raise InputError(f"file field {upload.field!r} was sent twice", field=upload.field)
        seen.add(upload.field)
        if not upload.filename.lower().endswith(CHECKPOINT_SUFFIXES):
            raise InputError(
                f"checkpoint {upload.filename!r} must be a .safetensors file or a torch state_dict "
                f"({', '.join(CHECKPOINT_SUFFIXES[1:])})",
                field=upload.field,
            )


def _normalise_code(
    code: Mapping[str, Sequence[IncomingFile]], checkpoint_fields: set[str], settings: Settings
) -> dict[str, bytes]:
    from grader.sandbox.archive import normalise_code_upload

    zips: dict[str, bytes] = {}
    for field, uploads in code.items():
        if field not in CODE_FIELDS:
            raise InputError(f"unknown code field {field!r}; expected v1_code, v2_code or code", field=field)
        label = CODE_FIELDS[field]
        if label is not None and label not in checkpoint_fields:
            raise InputError(f"{field} was sent without a {label} checkpoint to run it with", field=field)
        files = [(upload.filename, _read_all(upload, settings.max_code_file_bytes)) for upload in uploads]
        zips[field] = normalise_code_upload(files, field=field)
    return zips


def _read_all(upload: IncomingFile, max_bytes: int) -> bytes:
    data = bytearray()
    for chunk in upload.chunks:
        data += chunk
        if len(data) > max_bytes:
            raise UploadTooLarge(f"code file {upload.filename!r} is larger than {max_bytes} bytes", field=upload.field)
    return bytes(data)


def _attach(session: Session, submission: Submission, upload: IncomingFile, sha256: str, size: int) -> None:
    # Two submissions of the same bytes at once both find no Artifact row: the second insert must not fail.
    session.execute(_insert_if_absent(session, Artifact, "sha256").values(sha256=sha256, size=size))
    name = upload.filename.replace("\\", "/").rsplit("/", 1)[-1][:255] or upload.field
    session.add(
        SubmissionFile(
            submission_id=submission.id, field=upload.field, artifact_sha256=sha256, original_name=name, size=size
        )
    )
    session.flush()


def get_submission_for(session: Session, *, user: User, submission_id: str) -> Submission:
    """The submission if this user may see it; another student's id is indistinguishable from no id."""
    submission = session.get(Submission, submission_id)
    if submission is None or (Role(user.role) is Role.STUDENT and submission.user_id != user.id):
        raise NotFound(f"no submission {submission_id!r}", field="submission_id")
    return submission


def list_submissions_for(
    session: Session,
    *,
    user: User,
    assignment_id: str | None = None,
    owner: User | None = None,
    status: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[Submission], int]:
    """Submissions `user` may see (a student: their own), newest first, filtered by assignment, owner and the
    status of each submission's newest grading job."""
    query = select(Submission)
    if Role(user.role) is Role.STUDENT:
        query = query.where(Submission.user_id == user.id)
    if owner is not None:
        query = query.where(Submission.user_id == owner.id)
    if assignment_id is not None:
        query = query.where(Submission.assignment_id == assignment_id)
    if status is not None:
        newest = (
            select(GradingJob.submission_id, func.max(GradingJob.number).label("number"))
            .group_by(GradingJob.submission_id)
            .subquery()
        )
        query = (
            query.join(newest, newest.c.submission_id == Submission.id)
            .join(GradingJob, (GradingJob.submission_id == Submission.id) & (GradingJob.number == newest.c.number))
            .where(GradingJob.status == status)
        )
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Submission.received_at.desc(), Submission.id).limit(limit).offset(offset))
    return list(rows), total


MAX_SHOWN_FILE_BYTES = 1 << 20
"""A file's text shown in a page at most this long (the raw download has all of it)."""


def submission_file(submission: Submission, field: str) -> SubmissionFile:
    found = next((file for file in submission.files if file.field == field), None)
    if found is None:
        fields = ", ".join(file.field for file in submission.files)
        raise NotFound(f"the submission has no {field!r} file (it has: {fields})", field="field")
    return found


def file_contents(store: ArtifactStore, file: SubmissionFile) -> list[dict[str, object]]:
    """What a person reads in a page: the answer sheet's text, or each .py file of a code upload (stored as
    the grader's own normalised zip). Checkpoints are binary: download them instead."""
    data = store.read_bytes(file.artifact_sha256)
    if file.field in CODE_FIELDS:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = [info for info in archive.infolist() if not info.is_dir()]
            return [
                {"name": info.filename, "size": info.file_size, **_text(archive.read(info), info.file_size)}
                for info in members
            ]
    if file.field == "answers":
        return [{"name": file.original_name, "size": file.size, **_text(data, file.size)}]
    raise InputError(f"{file.field} is a checkpoint (binary): download it instead of reading it", field="field")


def _text(data: bytes, size: int) -> dict[str, object]:
    shown = data[:MAX_SHOWN_FILE_BYTES]
    return {"text": shown.decode("utf-8", errors="replace"), "truncated": size > len(shown)}


def stored_sheet(submission: Submission, store: ArtifactStore) -> dict[str, Any]:
    """The submission's answer sheet as stored, parsed (what grading, reviews and regrades read)."""
    answers = next(file for file in submission.files if file.field == "answers")
    return parse_answer_sheet(store.read_bytes(answers.artifact_sha256), filename=answers.original_name)
