"""Benchmark: what a student waits for, a new ResNet-20 checkpoint from received to graded on a warm `grader run`.

Run `python bench/bench_end_to_end.py [--rounds 4]` (needs GRADER_CIFAR10_ROOT; uses the trained ResNet-20 under
GRADER_TEST_CHECKPOINTS_DIR when set, else random weights: the timings are the same). The service runs on its embedded
defaults (SQLite, the SQLAlchemy broker, one worker) in a temporary folder; the service never touches `var/`.

Each round submits the HW3 answer sheet with a v1 checkpoint whose bytes no earlier round sent (one bias nudged by
1e-6), so the evaluation cache never answers it: every round is a real evaluation. A first round warms the service
up (the worker's first task imports the checkers; its first evaluation starts the warm sandbox) and is not counted.
Per round, from the database's own timestamps:
- received → running: the API's commit and enqueue, then the worker taking the grading task;
- running → evaluation started: the answer checks, the evaluation's enqueue and the worker taking it;
- evaluation: the sandboxed run itself (the child's own figure in parentheses);
- evaluation → graded: waking the job and scoring the sheet;
and received → graded as the client saw it (polling every 0.2 s), against the best bare batched loop (channels_last,
batch 128, 2 threads, the model already in memory) measured in the same run, alternating with the rounds.
Goal: received → graded ≤ 1.15× the bare loop.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # a plain script: run from a checkout without installing the package
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_evaluation import PREPROCESSING, THREADS, bare_model, batched_loop, checkpoint_path, timed  # noqa: E402
from bench_load import ASSIGNMENT, make_class, start_service, stop_service  # noqa: E402

from grader.evaluation.cifar import load_cifar10_test  # noqa: E402
from grader.evaluation.transforms import Preprocess  # noqa: E402

GOAL_RATIO = 1.15
POLL_S = 0.2
"""How often the client asks (5 a second stays within the API's per-user rate limit of 10 a second)."""
SHEET = ROOT / "tests" / "data" / "correct_sheet.yaml"


@dataclass
class Round:
    client_s: float
    received_to_running: float
    running_to_evaluation: float
    evaluation: float
    child: float | None
    evaluation_to_graded: float
    received_to_graded: float


def nudged_checkpoint(source: Path, folder: Path, number: int) -> Path:
    """The checkpoint with one bias moved by number × 1e-6: new bytes (a new evaluation), the same network."""
    saved = torch.load(source, map_location="cpu", weights_only=True)
    state = dict(saved.get("state_dict", saved))
    name = next(key for key in state if key.endswith("linear.bias") or key.endswith("fc.bias"))
    state[name] = state[name].clone()
    state[name][0] += number * 1e-6
    path = folder / f"resnet20-{number}.th"
    torch.save({"state_dict": state}, path)
    return path


def answer_sheet(folder: Path) -> Path:
    sheet = yaml.safe_load(SHEET.read_text())
    sheet["q1"] = {"v1_preprocessing": PREPROCESSING}
    path = folder / "answers.yaml"
    path.write_text(yaml.safe_dump(sheet))
    return path


def submit_and_wait(client: httpx.Client, token: str, sheet: Path, checkpoint: Path) -> tuple[str, float]:
    headers = {"Authorization": f"Bearer {token}"}
    files = {"answers": (sheet.name, sheet.read_bytes()), "v1": (checkpoint.name, checkpoint.read_bytes())}
    started = time.monotonic()
    response = client.post(f"/api/v1/assignments/{ASSIGNMENT}/submissions", files=files, headers=headers)
    response.raise_for_status()
    deadline = started + 600
    while time.monotonic() < deadline:
        answer = client.get(response.json()["status_url"], headers=headers)
        body = answer.json() if answer.status_code == 200 else {}
        if body.get("status") in ("graded", "failed"):
            if body["status"] != "graded":
                raise RuntimeError(f"the submission was not graded: {body.get('detail')}")
            return str(response.json()["id"]), time.monotonic() - started
        time.sleep(POLL_S)
    raise RuntimeError("the submission was not graded within 10 minutes; see the service log")


def phases(database_url: str, submission_id: str, client_s: float) -> Round:
    from sqlalchemy import select

    from grader.db.models import CheckpointEvaluation, GradingJob, JobEvaluation
    from grader.db.session import session_scope

    with session_scope(database_url) as session:
        job = session.scalars(select(GradingJob).where(GradingJob.submission_id == submission_id)).one()
        evaluation = session.scalars(
            select(CheckpointEvaluation)
            .join(JobEvaluation, JobEvaluation.evaluation_id == CheckpointEvaluation.id)
            .where(JobEvaluation.job_id == job.id)
        ).one()
        received, running, graded = job.created_at, job.started_at, job.finished_at
        began, ended = evaluation.started_at, evaluation.finished_at
        child = (evaluation.result or {}).get("seconds")
    assert running and graded and began and ended, "a graded job has every timestamp"
    return Round(
        client_s=client_s,
        received_to_running=(running - received).total_seconds(),
        running_to_evaluation=(began - running).total_seconds(),
        evaluation=(ended - began).total_seconds(),
        child=sum(float(child.get(key, 0)) for key in ("load", "inference")) if isinstance(child, dict) else None,
        evaluation_to_graded=(graded - ended).total_seconds(),
        received_to_graded=(graded - received).total_seconds(),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=4, help="measured rounds after the warm-up round")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (database, service log)")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the service (repeat)")
    args = parser.parse_args()
    root = os.environ.get("GRADER_CIFAR10_ROOT")
    if not root:
        print("GRADER_CIFAR10_ROOT is not set: this benchmark needs the CIFAR-10 test set")
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped from outside: still stop the service
    torch.set_num_threads(THREADS)

    folder = Path(tempfile.mkdtemp(prefix="grader-bench-e2e-"))
    process = None
    try:
        source = checkpoint_path(folder)
        device = torch.device("cpu")
        model = bare_model(source, device)
        testset = load_cifar10_test(root, device)
        with torch.inference_mode():
            preprocess = Preprocess(PREPROCESSING, device)
            x = torch.cat([preprocess(testset.images[i : i + 1000]) for i in range(0, 10_000, 1000)])
        bare = batched_loop(model, x, 128, torch.channels_last)

        database_url = f"sqlite:///{folder / 'grader.db'}"
        env = {key: value for key, value in os.environ.items() if not key.startswith("GRADER_")}
        env.update(
            GRADER_DATA_DIR=str(folder),
            GRADER_DATABASE_URL=database_url,
            GRADER_BROKER_URL=f"sqla+sqlite:///{folder / 'broker.db'}",
            GRADER_CIFAR10_ROOT=root,
            PYTHONUNBUFFERED="1",
        )
        env.update(item.split("=", 1) for item in args.env)
        tokens, _ = make_class(env, 1)
        process, base = start_service(env, folder / "service.log")
        sheet = answer_sheet(folder)
        rounds: list[Round] = []
        bare_s: list[float] = []
        with httpx.Client(base_url=base, timeout=60) as client:
            submission, seconds = submit_and_wait(client, tokens[0], sheet, nudged_checkpoint(source, folder, 0))
            print(f"warm-up round: {seconds:.2f} s (not counted)")
            for number in range(1, args.rounds + 1):
                bare_s.append(timed(bare, device))
                checkpoint = nudged_checkpoint(source, folder, number)
                submission, seconds = submit_and_wait(client, tokens[0], sheet, checkpoint)
                rounds.append(phases(database_url, submission, seconds))
                waited = rounds[-1].received_to_graded
                print(f"round {number}: received → graded {waited:.2f} s; bare {bare_s[-1]:.2f} s")
        report(rounds, min(bare_s))
        return 0
    finally:
        if process is not None:
            stop_service(process)
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


def report(rounds: list[Round], bare: float) -> None:
    def row(name: str, values: list[float]) -> str:
        middle = statistics.median(values)
        return f"  {name:<34} median {middle:6.2f} s   min {min(values):6.2f} s   max {max(values):6.2f} s"

    print(f"\nbest bare batched loop (channels_last, batch 128, {THREADS} threads): {bare:.2f} s")
    print(row("received → running", [r.received_to_running for r in rounds]))
    print(row("running → evaluation started", [r.running_to_evaluation for r in rounds]))
    print(row("evaluation (sandboxed task)", [r.evaluation for r in rounds]))
    children = [r.child for r in rounds if r.child is not None]
    if children:
        print(row("  of which the child's load + inference", children))
    print(row("evaluation finished → graded", [r.evaluation_to_graded for r in rounds]))
    print(row("received → graded (database)", [r.received_to_graded for r in rounds]))
    print(row("submitted → seen graded (client)", [r.client_s for r in rounds]))
    best = min(r.received_to_graded for r in rounds)
    median = statistics.median(r.received_to_graded for r in rounds)
    print(
        f"received → graded / bare loop: best {best / bare:.2f}×, median {median / bare:.2f}× "
        f"(goal ≤ {GOAL_RATIO:.2f}×: {'met' if best / bare <= GOAL_RATIO else 'not met'})"
    )


if __name__ == "__main__":
    sys.exit(main())
