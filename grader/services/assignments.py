"""Assignments as the database knows them, kept in step with the rubric files."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from grader.db.models import Assignment, utcnow
from grader.errors import NotFound
from grader.rubric.model import Rubric, RubricCatalog


def sync_assignments(session: Session, *, catalog: RubricCatalog) -> list[Assignment]:
    """Create or update one Assignment row per rubric file."""
    return [upsert_assignment(session, rubric=rubric) for rubric in catalog.all()]


def upsert_assignment(session: Session, *, rubric: Rubric) -> Assignment:
    assignment = session.get(Assignment, rubric.assignment)
    if assignment is None:
        assignment = Assignment(id=rubric.assignment)
        session.add(assignment)
    assignment.title = rubric.title
    assignment.rubric_version = rubric.version
    assignment.rubric_sha256 = rubric.sha256
    assignment.max_score = rubric.max_score
    session.flush()
    return assignment


def get_assignment(session: Session, *, assignment_id: str) -> Assignment:
    assignment = session.get(Assignment, assignment_id)
    if assignment is None:
        raise NotFound(f"no assignment {assignment_id!r}", field="assignment")
    return assignment


def assignment_rubric(session: Session, *, catalog: RubricCatalog, assignment_id: str) -> Rubric:
    """The rubric of a known assignment (NotFound, 404, for an id the database does not know)."""
    get_assignment(session, assignment_id=assignment_id)
    return catalog.get(assignment_id)


def list_assignments(session: Session) -> list[Assignment]:
    return list(session.scalars(select(Assignment).order_by(Assignment.id)))


def set_release(session: Session, *, assignment_id: str, released: bool) -> Assignment:
    """Release grades now (students see full feedback), or withdraw a release made by hand."""
    assignment = get_assignment(session, assignment_id=assignment_id)
    if released and assignment.released_at is None:
        assignment.released_at = utcnow()
    elif not released:
        assignment.released_at = None
    session.commit()
    return assignment
