"""Checkpoint integrity across students (exact and near copies), for course staff only; students get 403."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from grader.api.deps import DatabaseRoute, SessionDep, SettingsDep, StaffUser, only_query
from grader.api.schemas import ErrorResponse
from grader.services.integrity import integrity_report

router = APIRouter(tags=["staff"], route_class=DatabaseRoute)
ERRORS: dict[int | str, dict[str, object]] = {code: {"model": ErrorResponse} for code in (401, 403, 404, 422)}


class IntegrityUpload(BaseModel):
    user: str
    submission_id: str
    label: str = Field(description="the upload field: v1 or v2")
    sha256: str
    received_at: str


class CorrelationSummary(BaseModel):
    median: float
    mean: float
    min: float
    max: float
    layers: int = Field(description="weight tensors compared (same name and shape in both)")


class IntegrityPair(BaseModel):
    kind: Literal["exact", "near"]
    match: Literal["file", "tensors", "weights"] = Field(
        description="file: same bytes; tensors: same tensors in other bytes; weights: correlated weights"
    )
    users: list[str]
    a: IntegrityUpload = Field(description="the earlier submission")
    b: IntegrityUpload
    correlation: CorrelationSummary | None = Field(description="null when a file is not a readable checkpoint")
    layers: dict[str, float] = Field(description="per weight tensor, its Pearson correlation")


class SkippedUpload(IntegrityUpload):
    reason: str


class IntegrityReport(BaseModel):
    assignment: str
    counting: str
    threshold: float
    min_layers: int
    students: int
    checkpoints: int
    pairs: list[IntegrityPair]
    skipped: list[SkippedUpload] = Field(description="checkpoints not compared by their weights, and why")


@router.get(
    "/assignments/{assignment_id}/integrity",
    response_model=IntegrityReport,
    responses=ERRORS,
    dependencies=[only_query("counting", "threshold")],
)
def read_integrity(
    assignment_id: str,
    _: StaffUser,
    session: SessionDep,
    settings: SettingsDep,
    counting: Literal["latest", "best"] = "latest",
    threshold: Annotated[float | None, Query(gt=0, le=1)] = None,
) -> dict:
    """Pairs of different students whose counting submissions' checkpoints are the same file, the same tensors,
    or correlated weights (median per-layer correlation at least `threshold`, default the server's setting)."""
    return integrity_report(
        session, assignment_id=assignment_id, settings=settings, counting=counting, threshold=threshold
    )
