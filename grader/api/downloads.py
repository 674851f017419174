"""Files sent as downloads, the same way from the REST API and the dashboard: the gradebook's CSV and a
submission's stored upload."""

from __future__ import annotations

from fastapi.responses import Response
from sqlalchemy.orm import Session

from grader.db.models import Submission
from grader.rubric.model import Rubric
from grader.services import gradebook, submissions
from grader.storage import ArtifactStore


def attachment(data: bytes, filename: str, media_type: str = "application/octet-stream") -> Response:
    name = "".join(c for c in filename if c.isprintable() and c not in '"\\') or "download"
    headers = {"Content-Disposition": f'attachment; filename="{name}"', "X-Content-Type-Options": "nosniff"}
    return Response(data, media_type=media_type, headers=headers)


def gradebook_csv(
    session: Session, rubric: Rubric, *, per_part: bool, counting: str | None = None, column: str | None = None
) -> Response:
    """Canvas's gradebook import CSV (one column for the assignment, or one per part)."""
    rows = gradebook.gradebook_rows(session, rubric=rubric, counting=counting)
    text = gradebook.canvas_csv(rows, rubric, per_part=per_part, column=column)
    name = f"{rubric.assignment}-gradebook{'-parts' if per_part else ''}.csv"
    return attachment(text.encode("utf-8"), name, "text/csv; charset=utf-8")


def submission_file(submission: Submission, field: str, store: ArtifactStore) -> Response:
    """The upload as stored (a code field: the normalised zip)."""
    file = submissions.submission_file(submission, field)
    return attachment(store.read_bytes(file.artifact_sha256), file.original_name or field)
