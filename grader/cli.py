"""The `grader` command line: run the service, manage users and the database, grade sheets offline."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from grader.errors import GraderError, InputError
from grader.settings import get_settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except InputError as exc:
        where = f"{exc.field}: " if exc.field else ""
        print(f"error: {where}{exc.message}", file=sys.stderr)
        return 2
    except GraderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grader", description=__doc__)
    commands = parser.add_subparsers(title="commands")

    run = commands.add_parser("run", help="migrate, then start the API and one worker (Ctrl-C stops both)")
    run.add_argument("--host", default=None)
    run.add_argument("--port", type=int, default=None)
    run.set_defaults(handler=_cmd_run)

    api = commands.add_parser("api", help="start only the API, as `grader run` serves it (no migration, no worker)")
    api.add_argument("--host", default=None)
    api.add_argument("--port", type=int, default=None)
    api.set_defaults(handler=_cmd_api)

    worker = commands.add_parser("worker", help="start a Celery worker process")
    worker.add_argument(
        "--queues", default="cpu,gpu,regrade", help="comma-separated queues to consume (cpu, gpu, regrade)"
    )
    worker.add_argument("--concurrency", type=int, default=1)
    worker.set_defaults(handler=_cmd_worker)

    db = commands.add_parser("db", help="database schema").add_subparsers(title="db commands")
    db.add_parser("upgrade", help="apply every migration").set_defaults(handler=_cmd_db_upgrade)

    users = commands.add_parser("users", help="users and API tokens").add_subparsers(title="users commands")
    create = users.add_parser("create", help="create a user and print its API token (last line)")
    create.add_argument("username")
    create.add_argument("--role", choices=["student", "ta", "instructor"], default="student")
    create.set_defaults(handler=_cmd_users_create)
    token = users.add_parser("token", help="issue a new API token for an existing user (last line)")
    token.add_argument("username")
    token.set_defaults(handler=_cmd_users_token)
    listing = users.add_parser("list", help="every user with role, roster fields and active tokens")
    listing.set_defaults(handler=_cmd_users_list)
    revoke = users.add_parser("revoke", help="revoke every token of a user (they answer 401 at once)")
    revoke.add_argument("username")
    revoke.set_defaults(handler=_cmd_users_revoke)
    roster = users.add_parser("import", help="students from a Canvas roster CSV (idempotent; no tokens issued)")
    roster.add_argument("roster", type=Path)
    roster.set_defaults(handler=_cmd_users_import)

    book = commands.add_parser("gradebook", help="the gradebook of an assignment (a table, or a Canvas CSV)")
    book.add_argument("assignment")
    book.add_argument("--csv", type=Path, help="write the Canvas gradebook import CSV to this file")
    book.add_argument("--format", choices=("canvas", "parts"), default="canvas", help="parts: a column per part")
    book.add_argument(
        "--counting", choices=("latest", "best"), help="which submission counts (default: the rubric policy's)"
    )
    book.set_defaults(handler=_cmd_gradebook)

    extend = commands.add_parser("extend", help="grant a student a later deadline and/or extra attempts")
    extend.add_argument("assignment")
    extend.add_argument("username")
    extend.add_argument("--due", help="new due date, ISO 8601 (no offset: the assignment's time zone)")
    extend.add_argument("--hard-close", help="new hard close (default: the class's, or the new due date)")
    extend.add_argument("--extra-attempts", type=int, default=0, help="attempts on top of the limits")
    extend.add_argument("--reason", default="", help="why (kept with the grant)")
    extend.set_defaults(handler=_cmd_extend)
    extensions = commands.add_parser("extensions", help="every extension granted for an assignment, oldest first")
    extensions.add_argument("assignment")
    extensions.set_defaults(handler=_cmd_extensions)

    integrity = commands.add_parser("integrity", help="exact and near copies of checkpoints between students")
    integrity.add_argument("assignment")
    integrity.add_argument("--threshold", type=float, help="median per-layer weight correlation that counts as a copy")
    integrity.add_argument("--counting", choices=("latest", "best"), default="latest", help="which submission counts")
    integrity.add_argument("--json", action="store_true", help="print the report as one JSON object")
    integrity.set_defaults(handler=_cmd_integrity)

    regrade = commands.add_parser("regrade", help="regrade an assignment with the current rubric (a diff at the end)")
    regrade.add_argument("assignment")
    regrade.add_argument("--users", nargs="+", metavar="NAME", help="only these students")
    regrade.add_argument("--parts", nargs="+", metavar="PART", help="check only these parts again (rubric change)")
    regrade.add_argument("--dry-run", action="store_true", help="show the diff, write no result")
    regrade.set_defaults(handler=_cmd_regrade)

    release = commands.add_parser("release", help="release an assignment's grades: students see full feedback")
    release.add_argument("assignment")
    release.add_argument("--withdraw", action="store_true", help="back to the pre-release view for students")
    release.set_defaults(handler=_cmd_release)

    grade = commands.add_parser("grade", help="grade an answer sheet offline (the same core the workers run)")
    grade.add_argument("--answers", type=Path, required=True, help="the answer sheet, YAML or JSON")
    grade.add_argument("--checkpoint", action="append", default=[], metavar="LABEL=PATH", help="v1=PATH or v2=PATH")
    grade.add_argument(
        "--code",
        action="append",
        default=[],
        metavar="LABEL=DIR_OR_ZIP",
        help="the student's model code for that checkpoint (runs sandboxed, student-code mode)",
    )
    grade.add_argument("--rubric", type=Path, help="a rubric YAML (default: the assignment named in the sheet)")
    grade.add_argument("--json", action="store_true", help="print one JSON object")
    grade.set_defaults(handler=_cmd_grade)

    submit = commands.add_parser("submit", help="submit to a grader server, wait for the grade and print it")
    _connection_options(submit)
    submit.add_argument("--answers", type=Path, required=True, help="the answer sheet, YAML or JSON")
    submit.add_argument("--checkpoint", action="append", default=[], metavar="LABEL=PATH", help="v1=PATH or v2=PATH")
    submit.add_argument(
        "--code",
        action="append",
        default=[],
        metavar="[LABEL=]DIR_OR_ZIP",
        help="your model code for that checkpoint (LABEL may be left out with one checkpoint)",
    )
    submit.add_argument(
        "--code-folder",
        type=Path,
        metavar="DIR_OR_ZIP",
        help="your whole code folder (DataReader.py, ImageUtils.py, NetWork.py, Model.py, main.py), for the Q1(a)-(d) "
        "code checks",
    )
    submit.add_argument("--assignment", help="the assignment id (default: the sheet's 'assignment:')")
    submit.add_argument("--no-wait", action="store_true", help="print the submission id and return at once")
    submit.add_argument("--timeout", type=float, default=1800, help="seconds to wait for the grade (default 1800)")
    submit.add_argument("--json", action="store_true", help="print the submission as the API returns it")
    submit.set_defaults(handler=_cmd_submit)

    status = commands.add_parser("status", help="a submission's status, and its grade once graded")
    status.add_argument("submission_id", metavar="ID")
    _connection_options(status)
    status.add_argument("--json", action="store_true", help="print the submission as the API returns it")
    status.set_defaults(handler=_cmd_status)

    check = commands.add_parser("check", help="check an answer sheet's format (no scoring)")
    check.add_argument("--answers", type=Path, required=True)
    check.add_argument("--rubric", type=Path)
    check.set_defaults(handler=_cmd_check)

    template = commands.add_parser("template", help="print a blank, commented answer sheet")
    template.add_argument("assignment")
    template.set_defaults(handler=_cmd_template)
    return parser


def _cmd_run(args: argparse.Namespace) -> int:
    from grader.runner import run_service

    settings = get_settings()
    return run_service(settings, host=args.host or settings.host, port=args.port or settings.port)


def _cmd_api(args: argparse.Namespace) -> int:
    # One process of a deployment (the container image's command): the schema is `grader db upgrade`'s, run once.
    from grader.api.server import serve_api

    settings = get_settings()
    serve_api(settings, host=args.host or settings.host, port=args.port or settings.port)
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    import os

    from grader.runner import worker_command

    command = worker_command(queues=args.queues, concurrency=args.concurrency)
    os.execvp(command[0], command)
    return 0


def _cmd_db_upgrade(_: argparse.Namespace) -> int:
    from grader.db.migrate import upgrade_database

    upgrade_database()
    print("database is up to date")
    return 0


def _database() -> None:
    """The database at the current schema: a fresh data folder gets one instead of a traceback."""
    from grader.db.migrate import upgrade_database

    get_settings().data_dir.mkdir(parents=True, exist_ok=True)
    upgrade_database()


def _cmd_users_create(args: argparse.Namespace) -> int:
    from grader.db.session import session_scope
    from grader.domain.status import Role
    from grader.services.users import create_user, issue_token

    _database()
    with session_scope() as session:
        user = create_user(session, username=args.username, role=Role(args.role))
        token = issue_token(session, user=user)
    print(f"created {args.role} {args.username!r}; API token (shown once, send as 'Authorization: Bearer ...'):")
    print(token)
    return 0


def _cmd_users_token(args: argparse.Namespace) -> int:
    from grader.db.session import session_scope
    from grader.errors import NotFound
    from grader.services.users import get_user_by_username, issue_token

    _database()
    with session_scope() as session:
        user = get_user_by_username(session, username=args.username)
        if user is None:
            raise NotFound(f"no user {args.username!r}", field="username")
        token = issue_token(session, user=user)
    print(f"new API token for {args.username!r} (shown once):")
    print(token)
    return 0


def _cmd_regrade(args: argparse.Namespace) -> int:
    from grader.db.session import session_scope
    from grader.rubric.model import RubricCatalog
    from grader.services import regrades
    from grader.services.assignments import sync_assignments

    if args.users and args.parts:
        raise InputError("give --users or --parts, not both", field="--parts")
    _database()
    catalog = RubricCatalog(get_settings().rubrics_dir)
    rubric = catalog.get(args.assignment)
    raw_scope = {"users": args.users} if args.users else {"parts": args.parts} if args.parts else "all"
    with session_scope() as session:
        sync_assignments(session, catalog=catalog)
        scope = regrades.parse_scope(raw_scope, rubric)
        regrade = regrades.create_regrade(session, rubric=rubric, scope=scope, dry_run=args.dry_run, user=None)
        status = "running"
        while status == "running":  # here, not on the queue: no dispatcher, so chunk after chunk in this process
            status = regrades.run_regrade(
                session, regrade_id=regrade.id, rubric=rubric, settings=get_settings(), dispatcher=None
            )
            _progress(regrade.done + regrade.failed, regrade.total)
        view = regrades.describe_regrade(regrade)
    print(file=sys.stderr)
    changed = [item for item in view["items"] if item["changes"] or item["status"] != "done"]
    rows = [
        (
            item["user"],
            item["submission_id"][:8],
            "" if item["old_score"] is None else f"{item['old_score']:g}",
            "" if item["new_score"] is None else f"{item['new_score']:g}",
            ", ".join(f"{part} {c['old']}→{c['new']}" for part, c in item["changes"].items()) or item["detail"][:60],
        )
        for item in changed
    ]
    _table(("student", "submission", "old", "new", "parts that change"), rows)
    summary = view["summary"]
    kind = "dry run, nothing written" if args.dry_run else "applied: a new grading job per submission"
    print(
        f"{view['status']} ({kind}): {view['done']} regraded, {view['failed']} failed; "
        f"{summary['up']} up, {summary['down']} down, {summary['unchanged']} unchanged; "
        f"rubric {', '.join(view['rubric_version']['before']) or '?'} → {view['rubric_version']['after']}"
    )
    return 0 if view["status"] == "finished" else 1


def _progress(done: int, total: int) -> None:
    from grader.report_text import progress_bar

    print(f"\r{progress_bar(done, total)} {done}/{total}", end="", file=sys.stderr, flush=True)


def _cmd_release(args: argparse.Namespace) -> int:
    from grader.db.session import session_scope
    from grader.rubric.model import RubricCatalog
    from grader.services.assignments import set_release, sync_assignments

    with session_scope() as session:
        sync_assignments(session, catalog=RubricCatalog(get_settings().rubrics_dir))
        assignment = set_release(session, assignment_id=args.assignment, released=not args.withdraw)
        moment = assignment.released_at
    if args.withdraw:
        print(f"{args.assignment}: release withdrawn; students see the pre-release view (unless release_at passed)")
    else:
        print(f"{args.assignment}: grades released at {moment}; students see full feedback")
    return 0


def _cmd_users_list(_: argparse.Namespace) -> int:
    from grader.db.session import session_scope
    from grader.services.users import active_tokens, list_users

    _database()
    with session_scope() as session:
        rows = [
            (u.username, u.role, u.full_name or "", u.section or "", str(active_tokens(session, user=u)))
            for u in list_users(session)
        ]
    _table(("username", "role", "name", "section", "tokens"), rows)
    return 0


def _cmd_users_revoke(args: argparse.Namespace) -> int:
    from grader.db.session import session_scope
    from grader.services.users import require_user, revoke_tokens

    _database()
    with session_scope() as session:
        count = revoke_tokens(session, user=require_user(session, username=args.username))
    print(f"revoked {count} token(s) of {args.username!r}; requests with them now answer 401")
    return 0


def _cmd_users_import(args: argparse.Namespace) -> int:
    from grader.db.session import session_scope
    from grader.services.users import import_roster

    try:
        text = args.roster.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {args.roster}: {exc}", field="roster") from exc
    _database()
    with session_scope() as session:
        result = import_roster(session, text=text)
    print(f"{len(result.created)} created, {len(result.updated)} updated, {len(result.unchanged)} unchanged")
    return 0


def _cmd_gradebook(args: argparse.Namespace) -> int:
    from grader.db.session import session_scope
    from grader.rubric.model import RubricCatalog
    from grader.services import gradebook
    from grader.services.assignments import sync_assignments

    _database()
    rubric = RubricCatalog(get_settings().rubrics_dir).get(args.assignment)
    with session_scope() as session:
        sync_assignments(session, catalog=RubricCatalog(get_settings().rubrics_dir))
        rows = gradebook.gradebook_rows(session, rubric=rubric, counting=args.counting)
    if args.csv is not None:
        args.csv.write_text(gradebook.canvas_csv(rows, rubric, per_part=args.format == "parts", column=None))
        print(f"wrote {len(rows)} students to {args.csv} (Canvas gradebook import, {args.format})")
        return 0
    ordered, _ = gradebook.query_rows(rows, gradebook.Filters(), limit=len(rows) or 1)
    table = [
        (r["user"], r["status"], "" if r["score"] is None else f"{r['score']:g}", f"{r['max_score']:g}")
        for r in ordered
    ]
    _table(("student", "status", "score", "of"), table)
    return 0


def _cmd_extend(args: argparse.Namespace) -> int:
    from grader.db.session import session_scope
    from grader.rubric.model import RubricCatalog
    from grader.services import policy
    from grader.services.assignments import sync_assignments

    _database()
    catalog = RubricCatalog(get_settings().rubrics_dir)
    rubric = catalog.get(args.assignment)
    with session_scope() as session:
        sync_assignments(session, catalog=catalog)
        granted = policy.grant_typed_extension(
            session,
            rubric=rubric,
            username=args.username,
            granted_by=None,
            due=args.due,
            hard_close=args.hard_close,
            extra_attempts=args.extra_attempts,
            reason=args.reason,
        )
    print(
        f"extension for {granted['user']} on {args.assignment}: due {granted['due'] or 'unchanged'}, hard close "
        f"{granted['hard_close'] or 'unchanged'}, {granted['extra_attempts']} extra attempts"
    )
    return 0


def _cmd_extensions(args: argparse.Namespace) -> int:
    from grader.db.session import session_scope
    from grader.rubric.model import RubricCatalog
    from grader.services import policy
    from grader.services.assignments import assignment_rubric

    _database()
    with session_scope() as session:
        assignment_rubric(session, catalog=RubricCatalog(get_settings().rubrics_dir), assignment_id=args.assignment)
        rows = policy.list_extensions(session, assignment_id=args.assignment)
    table = [
        (
            r["user"],
            r["due"] or "",
            r["hard_close"] or "",
            str(r["extra_attempts"]),
            r["granted_by"] or "(server)",
            r["granted_at"][:19],
            r["reason"],
        )
        for r in rows
    ]
    _table(("student", "due", "hard close", "extra", "granted by", "at", "reason"), table)
    return 0


def _cmd_integrity(args: argparse.Namespace) -> int:
    from grader.db.session import session_scope
    from grader.rubric.model import RubricCatalog
    from grader.services.assignments import sync_assignments
    from grader.services.integrity import integrity_report

    _database()
    with session_scope() as session:
        sync_assignments(session, catalog=RubricCatalog(get_settings().rubrics_dir))
        report = integrity_report(
            session,
            assignment_id=args.assignment,
            settings=get_settings(),
            counting=args.counting,
            threshold=args.threshold,
        )
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    rows = [
        (
            f"{pair['kind']} ({pair['match']})",
            f"{pair['a']['user']} {pair['a']['label']}",
            f"{pair['b']['user']} {pair['b']['label']}",
            "" if pair["correlation"] is None else f"{pair['correlation']['median']:.3f}",
            "" if pair["correlation"] is None else str(pair["correlation"]["layers"]),
            f"{pair['a']['submission_id'][:8]} {pair['b']['submission_id'][:8]}",
        )
        for pair in report["pairs"]
    ]
    _table(("kind", "first", "second", "median r", "layers", "submissions"), rows)
    for skipped in report["skipped"]:
        print(f"not compared: {skipped['user']} {skipped['label']}: {skipped['reason']}", file=sys.stderr)
    print(
        f"{len(report['pairs'])} pair(s) among {report['students']} students' {report['checkpoints']} checkpoints "
        f"({report['counting']} submission each; near copy: median correlation >= {report['threshold']:g})"
    )
    return 0


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    for line in (header, *rows):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=False)).rstrip())


def _parse_labelled_paths(values: list[str], option: str) -> dict[str, Path]:
    paths: dict[str, Path] = {}
    for value in values:
        label, sep, path = value.partition("=")
        if not sep or label not in ("v1", "v2") or not path:
            raise InputError(f"expected v1=PATH or v2=PATH, got {value!r}", field=option)
        if not Path(path).exists():
            raise InputError(f"{path!r} does not exist", field=option)
        paths[label] = Path(path)
    return paths


def _checkpoints_and_code(args: argparse.Namespace) -> tuple[dict[str, Path], dict[str, Path]]:
    """--checkpoint and --code as {label: path}; with one checkpoint, --code may leave out its label."""
    checkpoints = _parse_labelled_paths(args.checkpoint, "--checkpoint")
    values = args.code
    if len(checkpoints) == 1:
        only = next(iter(checkpoints))
        values = [value if value.partition("=")[0] in ("v1", "v2") else f"{only}={value}" for value in values]
    code = _parse_labelled_paths(values, "--code")
    missing = sorted(set(code) - set(checkpoints))
    if missing:
        raise InputError(f"--code {missing[0]}=... needs --checkpoint {missing[0]}=...", field="--code")
    return checkpoints, code


def _rubric_path_for(answers: Path, rubric_path: Path | None) -> Path:
    """The rubric to grade with: --rubric, else the one of the assignment the sheet names."""
    from grader.answers.sheet import parse_answer_sheet
    from grader.rubric.model import RubricCatalog

    if rubric_path is not None:
        return rubric_path
    sheet = parse_answer_sheet(_read(answers), filename=answers.name)
    assignment = sheet.get("assignment")
    if not assignment:
        raise InputError("the sheet names no assignment; add 'assignment: ...' or pass --rubric", field="assignment")
    return RubricCatalog(get_settings().rubrics_dir).path(str(assignment))


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}", field="--answers") from exc


def _cmd_grade(args: argparse.Namespace) -> int:
    from grader.grading import grade_answer_file
    from grader.rubric.model import load_rubric
    from grader.sandbox import SandboxLimits

    checkpoints, code = _checkpoints_and_code(args)
    rubric_path = _rubric_path_for(args.answers, args.rubric)
    report = grade_answer_file(
        args.answers,
        load_rubric(rubric_path),
        checkpoints=checkpoints,
        code=code,
        rubric_path=rubric_path,
        cifar10_root=get_settings().cifar10_root,
        limits=SandboxLimits.from_settings(get_settings()),
    )
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        from grader.report_text import render_report

        print(render_report(report))
    return 0


def _connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", help="the grader's URL (default: GRADER_SERVER, then the config file)")
    parser.add_argument("--token", help="your API token (default: GRADER_TOKEN, then the config file)")


def _cmd_submit(args: argparse.Namespace) -> int:
    from grader.client import run_submit

    checkpoints, code = _checkpoints_and_code(args)
    return run_submit(
        server=args.server,
        token=args.token,
        answers=args.answers,
        checkpoints=checkpoints,
        code=code,
        code_folder=args.code_folder,
        assignment=args.assignment,
        wait=not args.no_wait,
        timeout_s=args.timeout,
        as_json=args.json,
    )


def _cmd_status(args: argparse.Namespace) -> int:
    from grader.client import run_status

    return run_status(server=args.server, token=args.token, submission_id=args.submission_id, as_json=args.json)


def _cmd_check(args: argparse.Namespace) -> int:
    from grader.answers.sheet import parse_answer_sheet
    from grader.answers.validate import validate_sheet
    from grader.rubric.model import load_rubric

    rubric = load_rubric(_rubric_path_for(args.answers, args.rubric))
    sheet = parse_answer_sheet(_read(args.answers), filename=args.answers.name)
    problems = validate_sheet(sheet, rubric)
    for field, message in problems:
        print(f"{field}: {message}")
    if problems:
        print(f"{len(problems)} problem(s) found", file=sys.stderr)
        return 1
    print("answer sheet format is OK")
    return 0


def _cmd_template(args: argparse.Namespace) -> int:
    from grader.answers.template import render_template
    from grader.rubric.model import RubricCatalog

    print(render_template(RubricCatalog(get_settings().rubrics_dir).get(args.assignment)), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
