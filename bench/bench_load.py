"""Benchmark: intake at a deadline surge, against the running service (`grader run`) over loopback.

Run `python bench/bench_load.py [--rate 100] [--duration 8]` (the embedded defaults: SQLite and the SQLAlchemy
broker), or on servers with `--database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres` (a fresh
database is created beside it and dropped afterwards) and `--broker-url redis://127.0.0.1:6379/15` (that Redis
database is flushed). Everything else lives in a temporary folder: the service never touches `var/`.

The scenario: a class of simulated students (created on the service's database before the run, each with a token)
and a copy of the HW3 rubric whose policy is on (a due date an hour away, attempts with a 60 s cooldown, so every
student submits once per phase). One async client (httpx) sends submissions open-loop, at a fixed arrival rate
whatever the answers take: an answer sheet (tests/data/*.yaml), and in `--checkpoint-share` of them also a small
valid CIFAR ResNet checkpoint (two different files in all, so their evaluations are cached after the first). Each
accepted submission is polled as `grader submit` polls (1 s, then 1.5 times longer up to 10 s). Two phases:
- the baseline, measured in the same run: the same traffic at `--baseline-rate` (10/s);
- the surge at `--rate`, with an instructor's batch regrade of the whole class (applied) started alongside.
(Before both, one submission by the instructor is graded, so that neither measures the service's first requests.)
Printed per phase: intake latency p50/p95/p99 as the client saw it (every answered POST; the accepted ones; answers-only
and with a checkpoint) with the ratios of the surge's to the baseline's, the same as the API's own access log has it
(arrival at the app to the end of the answer), how late the client's event loop ran (the client shares the cores with
the service: a late loop would be its own delay, not the API's), throughput (accepted per second of the arrival
window), answers by status (no answer: `timeout` or `error (...)`), 503s with Retry-After and how fast they came, and
the time from the last arrival until every queue is empty (no job received, queued or running, the regrade finished).
Then it checks that every accepted submission was graded exactly once: one job with reason "submitted", graded, with
one score; and that nothing was stored that no client got a 202 for. Goal: intake p99 < 250 ms at 100 submissions/s on
2 cores, no 5xx (503 with Retry-After is shedding), every accepted submission graded once. `--keep` keeps the
temporary folder (database, service log); `--env NAME=VALUE` passes a setting to the service.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx

# httpcore looks for sniffio on every request; where it is not installed each look was a search of the import path
# (a tenth of the client's time). None here makes that import fail at once.
sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # a plain script: run from a checkout without installing the package

ASSIGNMENT = "csce636-hw3"
SHEETS = sorted((ROOT / "tests" / "data").glob("*.yaml"))
GOAL_P99_S = 0.250
GOAL_RATE = 100.0
GRADER = str(Path(sys.executable).with_name("grader"))
CLIENT_TIMEOUT_S = 60.0
CLIENT_SHARDS = 32
LIMITS = httpx.Limits(max_connections=None, keepalive_expiry=2.0)
"""An idle connection is dropped well before the server's keep-alive timeout (5 s): one reused just as the server
closed it was a request without an answer."""
FIRST_POLL_S, MAX_POLL_S = 1.0, 10.0  # as grader submit polls (grader/client.py)


@dataclass
class Outcome:
    status: str  # the HTTP status, or "timeout" / "error (...)" for no answer
    seconds: float
    request_id: str
    kind: str  # "answers" (a sheet alone) or "checkpoint" (with one)
    submission_id: str | None = None
    retry_after: str | None = None


@dataclass
class Phase:
    name: str
    rate: float
    outcomes: list[Outcome] = field(default_factory=list)
    arrivals_s: float = 0.0
    drain_s: float | None = None
    polls: Counter[str] = field(default_factory=Counter)
    loop_lag: list[float] = field(default_factory=list)
    """How late the client's own event loop woke up (it shares the cores with the service)."""

    @property
    def accepted(self) -> list[str]:
        return [o.submission_id for o in self.outcomes if o.status == "202" and o.submission_id]

    def latencies(self, kind: str | None = None, status: str | None = None) -> list[float]:
        """Seconds until each answer came (no answer: left out), of one kind of submission or one status if given."""
        return sorted(
            o.seconds
            for o in self.outcomes
            if o.status.isdigit() and kind in (None, o.kind) and status in (None, o.status)
        )


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1] if len(values) > 1 else values[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def small_checkpoints() -> list[bytes]:
    """Two small, valid CIFAR ResNet-8 checkpoints (.safetensors) that the intake pre-check accepts."""
    import torch
    from safetensors.torch import save

    from tests.evaluation.nets import StarterResNet

    files = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        state = StarterResNet(1, 1).state_dict()
        files.append(save({name: tensor.contiguous() for name, tensor in state.items()}))
    return files


def rubric_with_policy(folder: Path) -> Path:
    """The HW3 rubric with its policy on: due in an hour, attempts limited, a 60 s cooldown between submissions."""
    from datetime import datetime

    due = (datetime.now().astimezone() + timedelta(hours=1)).replace(microsecond=0)
    text = (ROOT / "rubrics" / f"{ASSIGNMENT}.yaml").read_text()
    for old, new in (
        ("  # due: 2026-12-11T23:59:00", f"  due: {due.isoformat()}"),
        ("  # hard_close: 2026-12-14T23:59:00", f"  hard_close: {(due + timedelta(days=3)).isoformat()}"),
        (
            "  # attempts: {graded: 20, uploads: 60, cooldown_s: 60}",
            "  attempts: {graded: 20, uploads: 60, cooldown_s: 60}",
        ),
    ):
        assert old in text, f"the rubric no longer has {old.strip()!r}"
        text = text.replace(old, new)
    rubrics = folder / "rubrics"
    rubrics.mkdir()
    (rubrics / f"{ASSIGNMENT}.yaml").write_text(text)
    return rubrics


def create_postgres_database(admin_url: str) -> tuple[str, str]:
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(admin_url)
    name = f"grader_bench_{uuid.uuid4().hex[:10]}"
    conninfo = url.set(drivername="postgresql", database=url.database or "postgres").render_as_string(False)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return url.set(database=name).render_as_string(hide_password=False), name


def drop_postgres_database(admin_url: str, name: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(admin_url)
    conninfo = url.set(drivername="postgresql", database=url.database or "postgres").render_as_string(False)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def make_class(env: dict[str, str], count: int) -> tuple[list[str], str]:
    """`count` students and one instructor on the service's database, each with a token (through the services,
    as `grader users create` does, in one transaction instead of a process per student)."""
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        from grader.db.migrate import upgrade_database
        from grader.db.session import session_scope
        from grader.domain.status import Role
        from grader.rubric.model import RubricCatalog
        from grader.services.assignments import sync_assignments
        from grader.services.users import create_user, issue_token
        from grader.settings import get_settings

        get_settings.cache_clear()
        upgrade_database()
        with session_scope() as session:
            sync_assignments(session, catalog=RubricCatalog(get_settings().rubrics_dir))
            instructor = issue_token(session, user=create_user(session, username="prof", role=Role.INSTRUCTOR))
            tokens = [
                issue_token(session, user=create_user(session, username=f"s{index:05d}", role=Role.STUDENT))
                for index in range(count)
            ]
        return tokens, instructor
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def start_service(env: dict[str, str], log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [GRADER, "run", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"grader run exited with {process.returncode}; see {log_path}")
        try:
            if httpx.get(f"{base}/api/v1/health", timeout=2).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"grader run did not become healthy; see {log_path}")


def stop_service(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class Load:
    """The simulated class: each student has a connection pool of their own among CLIENT_SHARDS (one pool for all
    spent the client's time matching hundreds of requests to hundreds of connections, in a loop over both)."""

    def __init__(self, base: str, tokens: list[str], checkpoints: list[bytes], share: float, poll_until: float) -> None:
        self.clients = [
            httpx.AsyncClient(base_url=base, timeout=CLIENT_TIMEOUT_S, limits=LIMITS) for _ in range(CLIENT_SHARDS)
        ]
        self.client = self.clients[0]  # the instructor's
        self.tokens = tokens
        self.sheets = [path.read_bytes() for path in SHEETS]
        self.checkpoints = checkpoints
        self.share = share
        self.rng = random.Random(0)
        self.poll_until = poll_until
        self.next_student = 0
        self.pollers: list[asyncio.Task[None]] = []

    async def phase(self, phase: Phase, duration_s: float) -> None:
        count = int(phase.rate * duration_s)
        started = time.monotonic()
        senders = []
        lag = asyncio.create_task(self.watch_loop(phase))
        for index in range(count):
            # Open loop: the i-th submission leaves at i / rate, however long the earlier ones take.
            delay = started + index / phase.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            client = self.clients[self.next_student % CLIENT_SHARDS]
            senders.append(asyncio.create_task(self.submit(phase, client, self.tokens[self.next_student])))
            self.next_student += 1
        phase.arrivals_s = time.monotonic() - started
        await asyncio.gather(*senders)
        lag.cancel()

    @staticmethod
    async def watch_loop(phase: Phase, tick_s: float = 0.01) -> None:
        while True:
            asked = time.monotonic()
            await asyncio.sleep(tick_s)
            phase.loop_lag.append(time.monotonic() - asked - tick_s)

    async def submit(self, phase: Phase, client: httpx.AsyncClient, token: str) -> None:
        files: dict[str, tuple[str, bytes]] = {"answers": ("answers.yaml", self.rng.choice(self.sheets))}
        kind = "answers"
        if self.rng.random() < self.share:
            files["v1"] = ("model.safetensors", self.rng.choice(self.checkpoints))
            kind = "checkpoint"
        request_id = uuid.uuid4().hex
        headers = {"Authorization": f"Bearer {token}", "X-Request-ID": request_id}
        started = time.monotonic()
        try:
            response = await client.post(f"/api/v1/assignments/{ASSIGNMENT}/submissions", files=files, headers=headers)
        except httpx.TimeoutException:
            phase.outcomes.append(Outcome("timeout", time.monotonic() - started, request_id, kind))
            return
        except httpx.HTTPError as exc:  # no answer: the connection was refused, reset or closed early
            phase.outcomes.append(
                Outcome(f"error ({type(exc).__name__})", time.monotonic() - started, request_id, kind)
            )
            return
        seconds = time.monotonic() - started
        body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        submission_id = body.get("id") if response.status_code == 202 else None
        phase.outcomes.append(
            Outcome(
                str(response.status_code), seconds, request_id, kind, submission_id, response.headers.get("retry-after")
            )
        )
        if submission_id:
            self.pollers.append(asyncio.create_task(self.poll(phase, client, body["status_url"], headers)))

    async def poll(self, phase: Phase, client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> None:
        interval = FIRST_POLL_S
        while time.monotonic() < self.poll_until:
            await asyncio.sleep(interval)
            interval = min(interval * 1.5, MAX_POLL_S)
            try:
                response = await client.get(url, headers=headers)
            except httpx.HTTPError:
                phase.polls["timeout/error"] += 1
                continue
            phase.polls[str(response.status_code)] += 1
            if response.status_code == 200 and response.json()["status"] in ("graded", "failed"):
                return

    async def warm_up(self, staff: dict[str, str]) -> str:
        """One submission by the instructor, graded before anything is measured: the API's first one also loads
        the task queue's client, and the workers' first jobs their checkers. Its id."""
        answers = {"answers": ("answers.yaml", self.sheets[0])}
        response = await self.client.post(f"/api/v1/assignments/{ASSIGNMENT}/submissions", files=answers, headers=staff)
        response.raise_for_status()
        for _ in range(240):
            await asyncio.sleep(0.5)
            if (await self.client.get(response.json()["status_url"], headers=staff)).json()["status"] == "graded":
                return str(response.json()["id"])
        raise RuntimeError("the warm-up submission was not graded within 2 minutes; see the service log")

    async def close(self) -> None:
        for task in self.pollers:
            task.cancel()
        await asyncio.gather(*self.pollers, return_exceptions=True)
        for client in self.clients:
            await client.aclose()


def queues_empty(database_url: str) -> bool:
    from sqlalchemy import func, select

    from grader.db.models import GradingJob, Regrade
    from grader.db.session import session_scope

    with session_scope(database_url) as session:
        waiting = session.scalar(
            select(func.count()).select_from(GradingJob).where(GradingJob.status.in_(("received", "queued", "running")))
        )
        regrading = session.scalar(
            select(func.count()).select_from(Regrade).where(Regrade.status.in_(("queued", "running")))
        )
    return not waiting and not regrading


async def wait_drained(database_url: str, since: float, timeout_s: float) -> float | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await asyncio.to_thread(queues_empty, database_url):
            return time.monotonic() - since
        await asyncio.sleep(0.5)
    return None


def graded_once(database_url: str, accepted: list[str]) -> Counter[str]:
    """Per accepted submission, how its first grading went: `ok` when exactly one job with reason "submitted"
    exists, graded, with one score; otherwise what was found."""
    from sqlalchemy import func, select

    from grader.db.models import GradingJob, Score
    from grader.db.session import session_scope

    found: Counter[str] = Counter()
    with session_scope(database_url) as session:
        rows = session.execute(
            select(GradingJob.submission_id, GradingJob.status, GradingJob.attempts, func.count(Score.id))
            .outerjoin(Score, Score.job_id == GradingJob.id)
            .where(GradingJob.reason == "submitted")
            .group_by(GradingJob.id)
        ).all()
    jobs: dict[str, list[tuple[str, int, int]]] = {}
    for submission_id, status, attempts, scores in rows:
        jobs.setdefault(submission_id, []).append((status, attempts, scores))
    for submission_id in accepted:
        mine = jobs.get(submission_id, [])
        if len(mine) != 1:
            found[f"{len(mine)} submitted jobs"] += 1
        elif mine[0][0] != "graded":
            found[f"job {mine[0][0]}"] += 1
        elif mine[0][2] != 1:
            found[f"{mine[0][2]} scores"] += 1
        else:
            found["ok"] += 1
            if mine[0][1] > 1:
                found["ok, started more than once"] += 1
    return found


def stored_unanswered(database_url: str, answered: set[str]) -> int:
    """Submissions stored that no client got a 202 for (it gave up waiting, or the answer was lost)."""
    from sqlalchemy import select

    from grader.db.models import Submission
    from grader.db.session import session_scope

    with session_scope(database_url) as session:
        return len(set(session.scalars(select(Submission.id))) - answered)


ACCESS_LINE = re.compile(r" (\d{3}) ([\d.]+) ms \[request_id=([0-9a-f]+)")


def server_times(log_path: Path) -> dict[str, float]:
    """Seconds each request spent in the API by its own access log (arrival at the app to the end of the answer),
    by request id: the client's time minus this is spent in the network stack, in uvicorn before the app, or in the
    client itself."""
    found = {}
    for line in log_path.read_text(errors="replace").splitlines():
        match = ACCESS_LINE.search(line)
        if match:
            found[match.group(3)] = float(match.group(2)) / 1000
    return found


def quantiles(values: list[float]) -> dict[float, float]:
    ordered = sorted(values)
    return {q: percentile(ordered, q) for q in (0.50, 0.95, 0.99)}


def describe(values: dict[float, float], baseline: dict[float, float] | None = None) -> str:
    text = ", ".join(f"p{round(q * 100)} {v * 1000:.0f} ms" for q, v in values.items())
    if baseline:
        text += " (" + ", ".join(f"{values[q] / baseline[q]:.1f}x" for q in values) + " the baseline's)"
    return text


def report(phase: Phase, baseline: Phase | None, server: dict[str, float]) -> None:
    statuses = Counter(o.status for o in phase.outcomes)
    mine = quantiles(phase.latencies())
    theirs = quantiles([server[o.request_id] for o in phase.outcomes if o.request_id in server])
    base_mine = quantiles(baseline.latencies()) if baseline else None
    base_theirs = (
        quantiles([server[o.request_id] for o in baseline.outcomes if o.request_id in server]) if baseline else None
    )
    print(f"{phase.name}: {len(phase.outcomes)} submissions at {phase.rate:g}/s over {phase.arrivals_s:.1f} s")
    print(f"  intake latency (client), every answer: {describe(mine, base_mine)}")
    base_accepted = quantiles(baseline.latencies(status="202")) if baseline else None
    print(f"    accepted (202): {describe(quantiles(phase.latencies(status='202')), base_accepted)}")
    for kind in ("answers", "checkpoint"):
        print(f"    {kind}: {describe(quantiles(phase.latencies(kind)))} ({len(phase.latencies(kind))} answered)")
    print(f"  in the API (its access log): {describe(theirs, base_theirs)}")
    print(f"  client event loop late by: {describe(quantiles(phase.loop_lag))}")
    accepted = len(phase.accepted) / max(phase.arrivals_s, 1e-9)
    print(f"  throughput: {accepted:.1f} accepted/s; answers: {dict(sorted(statuses.items()))}")
    shed = [o for o in phase.outcomes if o.status == "503"]
    if shed:
        with_header = sum(1 for o in shed if o.retry_after)
        shed_p99 = percentile(sorted(o.seconds for o in shed), 0.99)
        print(
            f"  503 (shed): {len(shed)}, {with_header} with Retry-After, answered within {shed_p99 * 1000:.0f} ms (p99)"
        )
    drain = f"{phase.drain_s:.1f} s" if phase.drain_s is not None else "NOT drained before the timeout"
    print(f"  queues drained {drain} after the last arrival; polls: {dict(sorted(phase.polls.items()))}")


async def scenario(
    args: argparse.Namespace, base: str, database_url: str, tokens: list[str], instructor: str, log_path: Path
) -> int:
    load = Load(base, tokens, small_checkpoints(), args.checkpoint_share, poll_until=time.monotonic() + 10**9)
    baseline = Phase("baseline", args.baseline_rate)
    surge = Phase("surge", args.rate)
    regrade_status = "not started"
    staff = {"Authorization": f"Bearer {instructor}"}
    try:
        warm_up = await load.warm_up(staff)
        await load.phase(baseline, args.duration)
        baseline.drain_s = await wait_drained(database_url, time.monotonic(), args.drain_timeout)

        regrade = None
        if not args.no_regrade:
            regrade = await load.client.post(
                f"/api/v1/assignments/{ASSIGNMENT}/regrades", json={"scope": "all", "dry_run": False}, headers=staff
            )
            regrade_status = f"{regrade.status_code}"
        await load.phase(surge, args.duration)
        surge.drain_s = await wait_drained(database_url, time.monotonic(), args.drain_timeout)
        if regrade is not None and regrade.status_code == 202:
            try:
                view = (await load.client.get(regrade.json()["status_url"], headers=staff)).json()
                regrade_status = (
                    f"{view['status']}, {view['done']} of {view['total']} regraded, {view['failed']} failed"
                )
            except httpx.HTTPError as exc:
                regrade_status = f"202, then its status could not be read ({type(exc).__name__})"
        load.poll_until = time.monotonic() + 15  # the pollers see the last results, then stop
        await asyncio.sleep(min(15, MAX_POLL_S + 1))
    finally:
        await load.close()

    print(f"load average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())} ({os.cpu_count()} cores)")
    server = server_times(log_path)
    report(baseline, None, server)
    report(surge, baseline, server)
    print(f"batch regrade alongside the surge: {regrade_status}")
    failed = False
    answered = set(baseline.accepted) | set(surge.accepted) | {warm_up}
    for phase in (baseline, surge):
        checked = graded_once(database_url, phase.accepted)
        problems = {key: value for key, value in checked.items() if not key.startswith("ok")}
        once = checked.get("ok", 0)
        print(f"{phase.name}: graded exactly once: {once} of {len(phase.accepted)} accepted ({dict(checked)})")
        failed = failed or bool(problems) or phase.drain_s is None
    unanswered_stored = stored_unanswered(database_url, answered)
    print(f"stored although the client got no 202 (it gave up, or the answer was lost): {unanswered_stored}")
    latencies = surge.latencies()
    server_errors = sum(1 for o in surge.outcomes if o.status.startswith("5") and o.status != "503")
    p99 = percentile(latencies, 0.99)
    goal = args.rate >= GOAL_RATE and p99 < GOAL_P99_S and server_errors == 0 and not failed
    unanswered = sum(1 for o in surge.outcomes if not o.status.isdigit())
    print(
        f"goal (p99 < {GOAL_P99_S * 1000:.0f} ms at {GOAL_RATE:g}/s, no 5xx but 503 with Retry-After, every accepted "
        f"submission graded once): {'met' if goal else 'NOT met'} (surge p99 {p99 * 1000:.0f} ms, "
        f"{server_errors} 5xx other than 503, {unanswered} unanswered)"
    )
    return 1 if failed or server_errors else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=GOAL_RATE, help="submissions per second in the surge")
    parser.add_argument("--baseline-rate", type=float, default=10.0, help="submissions per second in the baseline")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of arrivals in each phase")
    parser.add_argument("--checkpoint-share", type=float, default=0.1, help="share of submissions with a checkpoint")
    parser.add_argument("--drain-timeout", type=float, default=600.0, help="give up waiting for the queues after this")
    parser.add_argument("--database-url", default="", help="a PostgreSQL server URL (a fresh database is made)")
    parser.add_argument("--broker-url", default="", help="a Redis URL (that database is flushed)")
    parser.add_argument("--no-regrade", action="store_true", help="no batch regrade alongside the surge")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (database, logs)")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the service (repeat)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped from outside: still stop the service

    folder = Path(tempfile.mkdtemp(prefix="grader-bench-load-"))
    created_db = None
    process = None
    try:
        database_url = args.database_url
        if database_url.startswith("postgresql"):
            database_url, created_db = create_postgres_database(database_url)
        database_url = database_url or f"sqlite:///{folder / 'grader.db'}"
        broker_url = args.broker_url or f"sqla+sqlite:///{folder / 'broker.db'}"
        if broker_url.startswith("redis"):
            import redis

            redis.Redis.from_url(broker_url).flushdb()
        env = {key: value for key, value in os.environ.items() if not key.startswith("GRADER_")}
        env.update(
            GRADER_DATA_DIR=str(folder),
            GRADER_DATABASE_URL=database_url,
            GRADER_BROKER_URL=broker_url,
            GRADER_RUBRICS_DIR=str(rubric_with_policy(folder)),
            PYTHONUNBUFFERED="1",
        )
        if cifar := os.environ.get("GRADER_CIFAR10_ROOT"):
            env["GRADER_CIFAR10_ROOT"] = cifar
        env.update(item.split("=", 1) for item in args.env)
        students = int(args.baseline_rate * args.duration) + int(args.rate * args.duration)
        started = time.monotonic()
        tokens, instructor = make_class(env, students)
        print(
            f"{students} students and an instructor created in {time.monotonic() - started:.1f} s; "
            f"database {database_url.split(':', 1)[0]}, broker {broker_url.split(':', 1)[0]}; service log: "
            f"{folder / 'service.log'}"
        )
        process, base = start_service(env, folder / "service.log")
        return asyncio.run(scenario(args, base, database_url, tokens, instructor, folder / "service.log"))
    finally:
        if process is not None:
            stop_service(process)
        if created_db:
            drop_postgres_database(args.database_url, created_db)
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
