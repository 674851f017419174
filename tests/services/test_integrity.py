"""Checkpoint integrity across a hand-built class on a database of the test's own, with real uploads and the real
sandboxed children: exact copies (same bytes, same tensors re-saved), a fine-tuned copy, an independent training
that is not reported, a file that is no checkpoint, and each student's counting submission only."""

from __future__ import annotations

import pytest
from safetensors.torch import save as save_safetensors
from sqlalchemy.orm import Session

from grader.db.models import Artifact, Submission, SubmissionFile, User
from grader.db.session import session_scope
from grader.domain.status import Role
from grader.errors import InputError, NotFound
from grader.rubric.model import RubricCatalog
from grader.services.assignments import sync_assignments
from grader.services.integrity import integrity_report
from grader.services.submissions import IncomingFile, create_submission
from grader.services.users import create_user
from grader.settings import Settings
from grader.storage import ArtifactStore
from tests.conftest import REPO_ROOT
from tests.evaluation.copies import fine_tuned, resnet20, torch_file

SHEET = (REPO_ROOT / "tests" / "data" / "correct_sheet.yaml").read_bytes()
ASSIGNMENT = "csce636-hw3"


def submit(session: Session, settings: Settings, user: User, **files: tuple[str, bytes]) -> Submission:
    checkpoints = [IncomingFile(field, name, [data]) for field, (name, data) in files.items()]
    submission = create_submission(
        session,
        settings=settings,
        user=user,
        assignment_id=ASSIGNMENT,
        answers=IncomingFile("answers", "answers.yaml", [SHEET]),
        checkpoints=checkpoints,
    )
    session.commit()
    return submission


def attach_as_stored(session: Session, settings: Settings, submission: Submission, field: str, data: bytes) -> None:
    """A file added to a submission as it lies in the store, past any check at intake (one sent before it existed)."""
    blob = ArtifactStore(settings.resolved_storage_dir).save([data], max_bytes=len(data), field=field)
    if session.get(Artifact, blob.sha256) is None:
        session.add(Artifact(sha256=blob.sha256, size=blob.size))
    session.add(
        SubmissionFile(
            submission_id=submission.id, field=field, artifact_sha256=blob.sha256, original_name="v2.pt", size=blob.size
        )
    )
    session.commit()


def pairs_by_users(report: dict) -> dict[tuple[str, str], dict]:
    return {(pair["a"]["user"], pair["b"]["user"]): pair for pair in report["pairs"]}


def test_exact_and_near_copies_between_students_are_reported_with_their_evidence(settings: Settings) -> None:
    # One CPU thread per child: on a small machine two students' files are read at once.
    settings = settings.model_copy(update={"sandbox_threads": 1})
    alice = resnet20(0)
    alice_file = torch_file({"state_dict": {f"module.{k}": v for k, v in alice.items()}, "best_prec1": 91.0})
    with session_scope(settings.resolved_database_url) as session:
        sync_assignments(session, catalog=RubricCatalog(settings.rubrics_dir))
        users = {
            name: create_user(session, username=name, role=Role.STUDENT) for name in ("ann", "bob", "cat", "dan", "eve")
        }
        sent = {
            "ann": submit(session, settings, users["ann"], v1=("resnet20.th", alice_file)),
            "bob": submit(session, settings, users["bob"], v1=("mine.pt", alice_file)),
            "cat": submit(
                session,
                settings,
                users["cat"],
                v1=("model.safetensors", save_safetensors({k: v.contiguous() for k, v in reversed(alice.items())})),
            ),
            "dan": submit(session, settings, users["dan"], v2=("tuned.pt", torch_file(fine_tuned(alice)))),
        }
        # eve first handed in ann's file, then her own training and a file that is no checkpoint: the latter counts
        submit(session, settings, users["eve"], v1=("copy.th", alice_file))
        sent["eve"] = submit(session, settings, users["eve"], v1=("own.pt", torch_file(resnet20(1))))
        attach_as_stored(session, settings, sent["eve"], "v2", b"not a checkpoint")

        report = integrity_report(session, assignment_id=ASSIGNMENT, settings=settings)

    pairs = pairs_by_users(report)
    assert {users: (pair["kind"], pair["match"]) for users, pair in pairs.items()} == {
        ("ann", "bob"): ("exact", "file"),
        ("ann", "cat"): ("exact", "tensors"),
        ("bob", "cat"): ("exact", "tensors"),
        ("ann", "dan"): ("near", "weights"),
        ("bob", "dan"): ("near", "weights"),
        ("cat", "dan"): ("near", "weights"),
    }
    assert [pair["users"] for pair in report["pairs"]][:3] == [["ann", "bob"], ["ann", "cat"], ["bob", "cat"]]
    near = pairs[("ann", "dan")]
    assert (near["a"]["label"], near["b"]["label"]) == ("v1", "v2")  # a classmate's v1 handed in as v2
    assert (near["a"]["submission_id"], near["b"]["submission_id"]) == (sent["ann"].id, sent["dan"].id)
    assert near["correlation"]["layers"] == 20 and 0.9 < near["correlation"]["median"] < 1.0
    assert len(near["layers"]) == 20 and near["layers"]["conv1.weight"] > 0.9 and "linear.weight" in near["layers"]
    assert pairs[("ann", "bob")]["correlation"]["median"] == 1.0
    assert pairs[("ann", "bob")]["a"]["sha256"] == pairs[("ann", "bob")]["b"]["sha256"]
    assert (report["students"], report["checkpoints"], report["threshold"]) == (5, 6, 0.5)
    [skipped] = report["skipped"]
    assert (skipped["user"], skipped["label"]) == ("eve", "v2") and "not a PyTorch checkpoint" in skipped["reason"]

    # Summaries are kept beside the store: with the uploads gone, the next report is the same without reading them.
    store = ArtifactStore(settings.resolved_storage_dir)
    for pair in report["pairs"]:
        for side in ("a", "b"):
            store.path_for(pair[side]["sha256"]).unlink(missing_ok=True)
    store.path_for(skipped["sha256"]).unlink()
    with session_scope(settings.resolved_database_url) as session:
        assert integrity_report(session, assignment_id=ASSIGNMENT, settings=settings) == report
        strict = integrity_report(session, assignment_id=ASSIGNMENT, settings=settings, threshold=1.0)
    assert {pair["kind"] for pair in strict["pairs"]} == {"exact"} and len(strict["pairs"]) == 3


def test_a_bad_threshold_or_an_unknown_assignment_is_refused(settings: Settings) -> None:
    with session_scope(settings.resolved_database_url) as session:
        sync_assignments(session, catalog=RubricCatalog(settings.rubrics_dir))
        for threshold in (0.0, 1.5, float("nan")):
            with pytest.raises(InputError, match="threshold"):
                integrity_report(session, assignment_id=ASSIGNMENT, settings=settings, threshold=threshold)
        with pytest.raises(NotFound):
            integrity_report(session, assignment_id="no-such-homework", settings=settings)
        empty = integrity_report(session, assignment_id=ASSIGNMENT, settings=settings)
    assert (empty["pairs"], empty["skipped"], empty["students"]) == ([], [], 0)
