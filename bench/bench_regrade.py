"""Benchmark: a threshold change regraded over N graded submissions (default 1,000), dry run and applied.

Run `python bench/bench_regrade.py [--submissions N]`. It builds a class on a fresh SQLite database in a temporary
folder: N students, each with an answer sheet and a v1 checkpoint whose evaluation is already cached (as after a
real grading run), all graded through the ordinary job path. Then the rubric's Q1 accuracy thresholds change
(target 90 → 85 %, no deduction from 80 → 75 %) and `q1.v1_accuracy` is regraded in a dry run and applied.

Printed: the baseline measured in the same run (regrading a sample through ordinary grading jobs, the whole
sheet checked again, per submission), the dry run and the applied run (total and per submission), and their
ratios to the baseline. Goal: each of the dry run and the applied run under 10 s for 1,000 submissions on
2 cores; no checkpoint evaluation runs (they come from the cache).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # a plain script: run from a checkout without installing the package

from grader.db.migrate import upgrade_database  # noqa: E402
from grader.db.models import CheckpointEvaluation  # noqa: E402
from grader.db.session import session_scope  # noqa: E402
from grader.domain.status import JobStatus, Role  # noqa: E402
from grader.rubric.model import RubricCatalog, parse_rubric  # noqa: E402
from grader.services import regrades  # noqa: E402
from grader.services.assignments import sync_assignments  # noqa: E402
from grader.services.evaluations import plan_evaluations  # noqa: E402
from grader.services.jobs import run_job, start_regrade  # noqa: E402
from grader.services.submissions import IncomingFile, create_submission  # noqa: E402
from grader.services.users import create_user  # noqa: E402
from grader.settings import Settings  # noqa: E402

GOAL_S = 10.0
SHEETS = [ROOT / "tests" / "data" / name for name in ("correct_sheet.yaml", "wrong_sheet.yaml")]
BASELINE_SAMPLE = 50


class NoQueue:
    """Everything here runs in this process: nothing may need the queue."""

    def grade_job(self, job_id: str, *, resumed: bool = False) -> None:
        raise AssertionError("a job needed the queue")

    def evaluate_checkpoint(self, evaluation_id: str, job_id: str, *, gpu: bool = True) -> None:
        raise AssertionError("a checkpoint evaluation was asked for")

    def run_regrade(self, regrade_id: str) -> None:
        raise AssertionError("the benchmark runs the regrade itself")


def evaluated(accuracy: float) -> dict:
    correct = round(accuracy * 100)
    return {
        "status": "evaluated",
        "mode": "reference",
        "accuracy_percent": correct / 100,
        "correct": correct,
        "total": 10_000,
        "architecture": {
            "version": 1,
            "block": "standard",
            "activation": "post",
            "name": "ResNet-20",
            "blocks_per_stage": [3, 3, 3],
            "shortcut": "option_a",
            "evidence": [],
        },
        "preprocessing": {"kind": "per_image_standardization"},
        "checkpoint_sha256": "",
    }


def build_class(settings: Settings, count: int) -> list[str]:
    rng = random.Random(0)
    sheets = [path.read_bytes() for path in SHEETS]
    ids = []
    with session_scope(settings.resolved_database_url) as session:
        sync_assignments(session, catalog=RubricCatalog(settings.rubrics_dir))
        for index in range(count):
            user = create_user(session, username=f"student{index:05d}", role=Role.STUDENT)
            answers = IncomingFile("answers", "answers.yaml", [sheets[index % 2]])
            checkpoint = IncomingFile("v1", "model-v1.pt", [b"PK\x03\x04" + rng.randbytes(60)])
            submission = create_submission(
                session,
                settings=settings,
                user=user,
                assignment_id="csce636-hw3",
                answers=answers,
                checkpoints=[checkpoint],
            )
            session.flush()
            plan = plan_evaluations(
                session, submission=submission, sheet={}, since=submission.received_at, settings=settings
            )
            for row in plan.pending.values():  # as after a real evaluation: cached, final
                row.status, row.result = "evaluated", evaluated(rng.uniform(70, 95))
            session.commit()
            status = run_job(
                session, job_id=submission.jobs[0].id, settings=settings, dispatcher=NoQueue(), max_attempts=3
            )
            assert status is JobStatus.GRADED, status
            ids.append(submission.id)
        assert session.query(CheckpointEvaluation).count() == count
    return ids


def baseline(settings: Settings, ids: list[str]) -> float:
    """Seconds per submission to regrade through an ordinary grading job (the whole sheet, cached evaluations)."""
    from grader.db.models import Submission

    sample = ids[:BASELINE_SAMPLE]
    with session_scope(settings.resolved_database_url) as session:
        started = time.perf_counter()
        for submission_id in sample:
            job = start_regrade(session, submission=session.get(Submission, submission_id))
            session.commit()
            run_job(session, job_id=job.id, settings=settings, dispatcher=NoQueue(), max_attempts=3)
        return (time.perf_counter() - started) / len(sample)


def timed_regrade(settings: Settings, rubric, dry_run: bool) -> tuple[float, dict]:  # type: ignore[no-untyped-def]
    with session_scope(settings.resolved_database_url) as session:
        scope = regrades.parse_scope({"parts": ["q1.v1_accuracy"]}, rubric)
        started = time.perf_counter()
        regrade = regrades.create_regrade(session, rubric=rubric, scope=scope, dry_run=dry_run, user=None)
        status = "running"
        while status == "running":
            status = regrades.run_regrade(
                session, regrade_id=regrade.id, rubric=rubric, settings=settings, dispatcher=None
            )
        seconds = time.perf_counter() - started
        return seconds, regrades.describe_regrade(regrade, with_items=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--submissions", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="grader-bench-regrade-") as folder:
        url = f"sqlite:///{Path(folder) / 'bench.db'}"
        upgrade_database(url)
        settings = Settings(data_dir=Path(folder), database_url=url, rubrics_dir=ROOT / "rubrics")
        started = time.perf_counter()
        ids = build_class(settings, args.submissions)
        print(f"class of {len(ids)} graded submissions built in {time.perf_counter() - started:.1f} s")
        per_job = baseline(settings, ids)
        print(f"baseline: an ordinary regrade job (whole sheet, cached evaluations): {per_job * 1000:.1f} ms each")
        text = (ROOT / "rubrics" / "csce636-hw3.yaml").read_text()
        changed = parse_rubric(
            text.replace("target_percent: 90", "target_percent: 85")
            .replace("no_deduction_percent: 80", "no_deduction_percent: 75")
            .replace('version: "2026.12.0"', 'version: "2026.12.9"')
        )
        failed = False
        for dry_run in (True, False):
            seconds, view = timed_regrade(settings, changed, dry_run)
            per = seconds / max(view["total"], 1)
            name = "dry run" if dry_run else "applied"
            print(
                f"{name}: {view['total']} submissions in {seconds:.2f} s ({per * 1000:.2f} ms each, "
                f"{per / per_job:.2f}x the baseline per submission); {view['summary']['up']} up, "
                f"{view['summary']['down']} down; goal < {GOAL_S:g} s: {'met' if seconds < GOAL_S else 'NOT met'}"
            )
            failed = failed or view["status"] != "finished" or view["failed"] > 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
