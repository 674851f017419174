"""Removing stored files that nothing refers to: blobs no database row names, and staging files of dead requests.

An upload is staged under `tmp/` while its request is checked, then moved to its content address (`ab/cd/<sha256>`)
and named by an `artifacts` row in the request's transaction. A request whose process was killed (or whose
transaction failed after the move) leaves a staging file, or a blob no row names; nothing else removes them. Derived
files (`derived/...`, e.g. a checkpoint's weight summary) go with their blob.

What is recent is never touched: a staging file belongs to a request still being served until the longest request
is over (`GRADER_BODY_TIMEOUT_S` plus the checks after it), and a blob is named by its row only when the request
commits; a blob keeps the mtime of its staging file. So only files older than `grace_s` (an hour, or the longest
request if that is longer) go.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select, union
from sqlalchemy.orm import Session

from grader.db.models import Artifact, CheckpointEvaluation, SubmissionFile, utcnow
from grader.settings import Settings

log = logging.getLogger(__name__)

ORPHAN_AGE_S = 3600
CHECKS_AFTER_BODY_S = 600
"""What a request may take after its body arrived (the checkpoints' pre-check), at most."""
SWEEP_EVERY_S = 600
"""How often a worker looks (a walk over the whole store: far less often than the job sweep)."""
_HEX2 = re.compile(r"[0-9a-f]{2}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_DERIVED = re.compile(r"([0-9a-f]{64})\.[A-Za-z0-9.-]+")
_BATCH = 500


@dataclass
class OrphanReport:
    blobs: list[str] = field(default_factory=list)
    """sha256 of the blobs removed."""
    staging: list[str] = field(default_factory=list)
    """Names of the staging and half-written derived files removed."""
    derived: list[str] = field(default_factory=list)
    skipped: str = ""
    """Why nothing was looked at, when so."""


def grace_s(settings: Settings) -> float:
    """How old an unreferenced file must be before it goes: an hour, or the longest request if longer."""
    return max(ORPHAN_AGE_S, settings.body_timeout_s + CHECKS_AFTER_BODY_S)


def remove_orphan_files(session: Session, *, settings: Settings, now: datetime | None = None) -> OrphanReport:
    """Remove unreferenced blobs, their derived files and dead staging files older than `grace_s`."""
    report = OrphanReport()
    root = settings.resolved_storage_dir
    if not root.is_dir():
        return report
    if session.scalar(select(func.count()).select_from(Artifact)) == 0:
        # A database that names no file at all, next to a store that holds some, is far more likely the wrong
        # database (a worker started with another GRADER_DATABASE_URL) than a store of orphans: touch nothing.
        report.skipped = "the database names no stored file"
        return report
    cutoff = (now or utcnow()).timestamp() - grace_s(settings)
    for path in _old_files(_walk(root / "tmp"), cutoff):
        if _remove(path, cutoff):
            report.staging.append(path.name)
    blobs = {path.name: path for path in _old_files(_blobs(root), cutoff)}
    derived = list(_old_files(_walk(root / "derived"), cutoff))
    for path in derived:
        if path.name.startswith(".tmp-") and _remove(path, cutoff):  # a derived file's write cut short
            report.staging.append(path.name)
    derived_of = {path: match.group(1) for path in derived if (match := _DERIVED.fullmatch(path.name))}
    named = _named(session, set(blobs) | set(derived_of.values()))
    for sha256, path in sorted(blobs.items()):
        if sha256 not in named and _remove(path, cutoff):
            report.blobs.append(sha256)
    for path, sha256 in derived_of.items():
        if sha256 not in named and _remove(path, cutoff):
            report.derived.append(path.name)
    if report.blobs or report.staging or report.derived:
        log.warning(
            "removed unreferenced stored files: %d blobs, %d derived, %d staging",
            len(report.blobs),
            len(report.derived),
            len(report.staging),
        )
    return report


def _named(session: Session, candidates: set[str]) -> set[str]:
    """Which of these sha256 some row names (an artifact, an uploaded file, an evaluation's checkpoint or code)."""
    named: set[str] = set()
    ordered = sorted(candidates)
    for start in range(0, len(ordered), _BATCH):
        batch = ordered[start : start + _BATCH]
        query = union(
            select(Artifact.sha256).where(Artifact.sha256.in_(batch)),
            select(SubmissionFile.artifact_sha256).where(SubmissionFile.artifact_sha256.in_(batch)),
            select(CheckpointEvaluation.artifact_sha256).where(CheckpointEvaluation.artifact_sha256.in_(batch)),
            select(CheckpointEvaluation.code_sha256).where(CheckpointEvaluation.code_sha256.in_(batch)),
        )
        named.update(session.scalars(select(query.subquery().c[0])))
    return named


def _blobs(root: Path) -> Iterator[Path]:
    """Files at content addresses (root/ab/cd/<sha256 starting abcd>); anything else there is left alone."""
    for first in _dirs(root):
        if _HEX2.fullmatch(first.name):
            for second in _dirs(first):
                if _HEX2.fullmatch(second.name):
                    prefix = first.name + second.name
                    for path in _files(second):
                        if _SHA256.fullmatch(path.name) and path.name.startswith(prefix):
                            yield path


def _walk(folder: Path) -> Iterator[Path]:
    yield from _files(folder)
    for sub in _dirs(folder):
        yield from _walk(sub)


def _dirs(folder: Path) -> list[Path]:
    try:
        return [Path(entry.path) for entry in os.scandir(folder) if entry.is_dir(follow_symlinks=False)]
    except OSError:
        return []


def _files(folder: Path) -> list[Path]:
    try:
        return [Path(entry.path) for entry in os.scandir(folder) if entry.is_file(follow_symlinks=False)]
    except OSError:
        return []


def _old_files(paths: Iterable[Path], cutoff: float) -> Iterator[Path]:
    for path in paths:
        try:
            old = path.stat().st_mtime < cutoff
        except OSError:  # gone meanwhile
            continue
        if old:
            yield path


def _remove(path: Path, cutoff: float) -> bool:
    """Unlink unless the file changed since it was judged: an upload of the same bytes may have just been moved
    to this address (a new file, with its staging time)."""
    try:
        if path.stat().st_mtime >= cutoff:
            return False
        path.unlink()
    except OSError:
        return False
    return True
