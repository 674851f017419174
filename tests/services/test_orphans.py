"""Stored files nothing refers to: old unreferenced blobs, their derived files and dead staging files are removed;
every file a row names, anything recent (an upload in progress) and anything not laid out by the store is kept."""

from __future__ import annotations

import os
import time
from pathlib import Path

from grader.db.session import session_scope
from grader.domain.status import Role
from grader.rubric.model import RubricCatalog
from grader.services.assignments import sync_assignments
from grader.services.orphans import grace_s, remove_orphan_files
from grader.services.submissions import IncomingFile, create_submission
from grader.services.users import create_user
from grader.settings import Settings
from grader.storage import ArtifactStore
from tests.conftest import REPO_ROOT

SHEET = (REPO_ROOT / "tests" / "data" / "correct_sheet.yaml").read_bytes()


def _age(path: Path, seconds: float) -> Path:
    moment = time.time() - seconds
    os.utime(path, (moment, moment))
    return path


def _blob(store: ArtifactStore, data: bytes) -> str:
    """A blob at its content address with no row naming it (what a request killed after the move leaves)."""
    return store.keep(store.stage([data], max_bytes=1 << 20, field="v1")).sha256


def test_old_unreferenced_files_are_removed_and_referenced_recent_or_unknown_ones_kept(settings: Settings) -> None:
    store = ArtifactStore(settings.resolved_storage_dir)
    old = grace_s(settings) + 60
    with session_scope(settings.resolved_database_url) as session:
        sync_assignments(session, catalog=RubricCatalog(settings.rubrics_dir))
        user = create_user(session, username="orla", role=Role.STUDENT)
        answers = IncomingFile("answers", "answers.yaml", [SHEET])
        submission = create_submission(
            session, settings=settings, user=user, assignment_id="csce636-hw3", answers=answers
        )
        session.commit()
        kept_blob = submission.files[0].artifact_sha256
        orphan = _blob(store, b"a checkpoint whose request was killed after the move")
        young = _blob(store, b"a checkpoint whose request is committing right now")
        store.write_derived(orphan, "summary", b"{}")
        store.write_derived(kept_blob, "summary", b"{}")
        dead_staging = store.stage([b"half an upload"], max_bytes=1 << 20, field="v1").path
        live_staging = store.stage([b"an upload arriving now"], max_bytes=1 << 20, field="v1").path
        half_derived = store.derived_path(orphan, "summary").with_name(".tmp-x1y2z3")
        half_derived.write_bytes(b"{")
        stranger = store.root / kept_blob[:2] / kept_blob[2:4] / "notes.txt"
        stranger.write_text("not the store's")
        for path in (
            store.path_for(kept_blob),
            store.path_for(orphan),
            store.derived_path(orphan, "summary"),
            store.derived_path(kept_blob, "summary"),
            dead_staging,
            half_derived,
            stranger,
        ):
            _age(path, old)

        report = remove_orphan_files(session, settings=settings)

    assert report.blobs == [orphan]
    assert report.derived == [f"{orphan}.summary"]
    assert sorted(report.staging) == sorted([dead_staging.name, half_derived.name])
    assert not store.path_for(orphan).exists() and not store.derived_path(orphan, "summary").exists()
    assert not dead_staging.exists() and not half_derived.exists()
    for path in (
        store.path_for(kept_blob),
        store.derived_path(kept_blob, "summary"),
        store.path_for(young),
        live_staging,
        stranger,
    ):
        assert path.is_file(), path


def test_a_database_that_names_no_file_removes_nothing(settings: Settings) -> None:
    """A worker pointed at the wrong (empty) database must not empty the store."""
    store = ArtifactStore(settings.resolved_storage_dir)
    blob = _age(store.path_for(_blob(store, b"someone's checkpoint")), grace_s(settings) + 60)
    with session_scope(settings.resolved_database_url) as session:
        report = remove_orphan_files(session, settings=settings)
    assert report.skipped and report.blobs == []
    assert blob.is_file()
