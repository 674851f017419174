"""Integrity of checkpoints across students: exact and near copies among each student's counting submission.

What is compared: the checkpoints (`v1`, `v2`) of each student's submission that counts, by the gradebook's own
rule (`counting_submissions`: the latest, or `best`), every label against every label (a classmate's `v1` handed
in as one's `v2` is found too). Counting submissions only, not every one: they are what is graded, and a copy sent
and then replaced by the student's own work counts for nothing. A pair of checkpoints of two different students is
reported when:
- `exact`, `file`: the same bytes (same sha256; found from the database alone, even for files that are not
  checkpoints);
- `exact`, `tensors`: other bytes but the same tensors: same names (wrapper prefixes stripped), dtypes, shapes and
  values, e.g. re-saved as safetensors, in another container or key order;
- `near`, `weights`: the median over their shared weight tensors (conv and linear weights of the same name and
  shape, at least MIN_LAYERS) of the per-layer Pearson correlation reaches the threshold (`GRADER_INTEGRITY_THRESHOLD`):
  a checkpoint fine-tuned from another. Independent trainings give about 0.

Each checkpoint is parsed once, ever: its summary (grader/evaluation/similarity.py: a tensor hash and a sketch of
each weight tensor, about 3 KB per layer) is cached beside the upload store, keyed by its sha256, and pairs are
compared from the summaries. Parsing happens in sandboxed children (grader/evaluation/fingerprint.py), one per
student, never in this process; a class's first report costs about one child start (2 s) per student, run on
the CPUs in parallel, and later reports only the new uploads. Per-image predictions are not stored by the
evaluation, so prediction agreement is not part of the evidence.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from grader.db.models import SubmissionFile, as_utc
from grader.errors import InfrastructureError, InputError
from grader.evaluation.fingerprint import Unusable, summarize_checkpoints
from grader.evaluation.similarity import SIMILARITY_VERSION, WeightSummary, correlate, correlated_pairs
from grader.sandbox.limits import SandboxLimits
from grader.services.assignments import get_assignment
from grader.services.gradebook import counting_submissions
from grader.services.submissions import CHECKPOINT_FIELDS
from grader.settings import Settings
from grader.storage import ArtifactStore

SUMMARY_KIND = f"weights-v{SIMILARITY_VERSION}.json"
MIN_LAYERS = 3
"""Fewer shared weight tensors than this say nothing either way (two different architectures)."""
KIND_ORDER = {"exact": 0, "near": 1}


@dataclass(frozen=True, slots=True)
class Upload:
    """One checkpoint of one student's counting submission."""

    user_id: int
    user: str
    submission_id: str
    label: str
    sha256: str
    received_at: datetime

    def describe(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "submission_id": self.submission_id,
            "label": self.label,
            "sha256": self.sha256,
            "received_at": self.received_at.isoformat().replace("+00:00", "Z"),
        }


def integrity_report(
    session: Session,
    *,
    assignment_id: str,
    settings: Settings,
    counting: str = "latest",
    threshold: float | None = None,
) -> dict[str, Any]:
    """Pairs of different students' checkpoints that are exact or near copies, with the evidence, for staff."""
    get_assignment(session, assignment_id=assignment_id)
    threshold = settings.integrity_threshold if threshold is None else threshold
    if not 0.0 < threshold <= 1.0:
        raise InputError("threshold must be a correlation above 0 and at most 1", field="threshold")
    uploads = _uploads(session, assignment_id, counting)
    store = ArtifactStore(settings.resolved_storage_dir)
    summaries, unusable = _summaries(uploads, store, SandboxLimits.from_settings(settings))
    pairs = _pairs(uploads, summaries, threshold)
    return {
        "assignment": assignment_id,
        "counting": counting,
        "threshold": threshold,
        "min_layers": MIN_LAYERS,
        "students": len({upload.user_id for upload in uploads}),
        "checkpoints": len(uploads),
        "pairs": pairs,
        "skipped": [
            {**upload.describe(), "reason": unusable[upload.sha256].message}
            for upload in uploads
            if upload.sha256 in unusable
        ],
    }


def _uploads(session: Session, assignment_id: str, counting: str) -> list[Upload]:
    """The checkpoints of each student's counting submission, oldest submission first."""
    counted = {submission.id: submission for submission in counting_submissions(session, assignment_id, counting)}
    files = session.scalars(
        select(SubmissionFile).where(
            SubmissionFile.submission_id.in_(list(counted)), SubmissionFile.field.in_(CHECKPOINT_FIELDS)
        )
    )
    uploads = [
        Upload(
            user_id=counted[file.submission_id].user_id,
            user=counted[file.submission_id].user.username,
            submission_id=file.submission_id,
            label=file.field,
            sha256=file.artifact_sha256,
            received_at=as_utc(counted[file.submission_id].received_at),
        )
        for file in files
    ]
    return sorted(uploads, key=lambda u: (u.received_at, u.user, u.label))


def _summaries(
    uploads: Sequence[Upload], store: ArtifactStore, limits: SandboxLimits
) -> tuple[dict[str, WeightSummary], dict[str, Unusable]]:
    """Every distinct checkpoint's summary, or why it has none: from the cache, else from a sandboxed child per
    student (the first who handed the file in), children running in parallel on the CPUs."""
    summaries: dict[str, WeightSummary] = {}
    unusable: dict[str, Unusable] = {}
    missing: dict[int, list[str]] = {}
    seen: set[str] = set()
    for upload in uploads:
        sha256 = upload.sha256
        if sha256 in seen:
            continue
        seen.add(sha256)
        cached = _cached(store, sha256)
        if isinstance(cached, WeightSummary):
            summaries[sha256] = cached
        elif cached is not None:
            unusable[sha256] = cached
        else:
            missing.setdefault(upload.user_id, []).append(sha256)
    workers = max(1, min(len(missing), (os.cpu_count() or 1) // limits.threads))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fingerprint") as pool:
        for results in pool.map(lambda shas: _summarize(store, shas, limits), missing.values()):
            for sha256, result in results.items():
                if isinstance(result, WeightSummary):
                    summaries[sha256] = result
                    store.write_derived(sha256, SUMMARY_KIND, json.dumps(result.to_json()).encode())
                else:
                    unusable[sha256] = result
                    if result.final:  # a fact about the file's bytes; a failed run is tried again next time
                        rejected = {"status": "rejected", "message": result.message}
                        store.write_derived(sha256, SUMMARY_KIND, json.dumps(rejected).encode())
    return summaries, unusable


def _cached(store: ArtifactStore, sha256: str) -> WeightSummary | Unusable | None:
    data = store.read_derived(sha256, SUMMARY_KIND)
    if data is None:
        return None
    try:
        value = json.loads(data)
        if isinstance(value, dict) and value.get("status") == "rejected" and isinstance(value.get("message"), str):
            return Unusable(value["message"], final=True)
        return WeightSummary.from_json(value)
    except ValueError:  # a damaged cache file (JSONDecodeError is a ValueError): computed again
        return None


def _summarize(store: ArtifactStore, shas: Sequence[str], limits: SandboxLimits) -> dict[str, WeightSummary | Unusable]:
    try:
        return summarize_checkpoints({sha256: store.read_bytes(sha256) for sha256 in shas}, limits=limits)
    except InfrastructureError as exc:  # one student's files cannot be read: the rest of the report still can
        return dict.fromkeys(shas, Unusable(str(exc), final=False))


def _pairs(uploads: Sequence[Upload], summaries: Mapping[str, WeightSummary], threshold: float) -> list[dict]:
    by_sha: dict[str, list[Upload]] = {}
    for upload in uploads:
        by_sha.setdefault(upload.sha256, []).append(upload)
    matches: dict[tuple[str, str], str] = {(sha256, sha256): "file" for sha256 in by_sha}
    by_tensors: dict[str, list[str]] = {}
    for sha256, summary in summaries.items():
        by_tensors.setdefault(summary.tensors_sha256, []).append(sha256)
    for same in by_tensors.values():
        matches.update({_key(a, b): "tensors" for i, a in enumerate(same) for b in same[i + 1 :]})
    for a, b, _ in correlated_pairs(summaries, threshold=threshold, min_layers=MIN_LAYERS):
        matches.setdefault(_key(a, b), "weights")
    pairs = [
        _pair(first, second, match, summaries)
        for (a, b), match in matches.items()
        for first, second in _across_students(by_sha[a], by_sha[b])
    ]
    return sorted(pairs, key=_order)


def _key(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


def _across_students(first: Sequence[Upload], second: Sequence[Upload]) -> Iterable[tuple[Upload, Upload]]:
    """Each pair of uploads of two different students, once, the earlier submission first."""
    seen: set[tuple[str, str, str, str]] = set()
    for a in first:
        for b in second:
            if a.user_id == b.user_id:
                continue
            a, b = sorted((a, b), key=lambda u: (u.received_at, u.user, u.label))
            key = (a.submission_id, a.label, b.submission_id, b.label)
            if key not in seen:
                seen.add(key)
                yield a, b


def _pair(first: Upload, second: Upload, match: str, summaries: Mapping[str, WeightSummary]) -> dict[str, Any]:
    evidence: dict[str, Any] = {"correlation": None, "layers": {}}
    if first.sha256 in summaries and second.sha256 in summaries:
        correlation = correlate(summaries[first.sha256], summaries[second.sha256])
        if correlation.layers:
            evidence = {
                "correlation": correlation.describe(),
                "layers": {name: round(value, 3) for name, value in correlation.layers.items()},
            }
    return {
        "kind": "near" if match == "weights" else "exact",
        "match": match,
        "users": [first.user, second.user],
        "a": first.describe(),
        "b": second.describe(),
        **evidence,
    }


def _order(pair: Mapping[str, Any]) -> tuple[Any, ...]:
    median = pair["correlation"]["median"] if pair["correlation"] else 1.0
    return (KIND_ORDER[pair["kind"]], -median, pair["users"], pair["a"]["label"], pair["b"]["label"])
