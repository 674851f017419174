"""The instructor dashboard and the students' read-only pages, served by the app under /dashboard.

Server-rendered (Jinja2) over the same services and read models as the REST API, with charts as SVG drawn
here and a little JavaScript (keyboard navigation, progress polling); nothing is fetched from a CDN. Signing
in turns an API token into a session cookie (grader/web/session.py). Students see only their own
submissions, as the API shows them (pre-release rules included); staff pages answer students with 403.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from grader.api import downloads
from grader.api.deps import DatabaseRoute, DispatcherDep, SessionDep, SettingsDep
from grader.db.models import User
from grader.domain.status import Role
from grader.errors import InputError, NotFound, PermissionDenied, RubricError
from grader.rubric.model import RubricCatalog
from grader.services import gradebook, regrades, reviews, stats, submissions
from grader.services.assignments import assignment_rubric, list_assignments
from grader.services.integrity import integrity_report
from grader.services.users import authenticate
from grader.services.views import describe_submission
from grader.storage import ArtifactStore
from grader.web import charts
from grader.web.session import (
    CsrfRejected,
    SignInRequired,
    check_csrf,
    csrf_token,
    current_user,
    end_session,
    start_session,
)

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(prefix="/dashboard", include_in_schema=False, route_class=DatabaseRoute)
SIGN_IN = "/dashboard/sign-in"


def page(handler: Callable[..., Any]) -> Callable[..., Any]:
    """Errors as pages: no session → the sign-in form; a role or a CSRF token that does not fit → 403."""

    @functools.wraps(handler)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        request: Request = kwargs["request"]
        try:
            return handler(*args, **kwargs)
        except SignInRequired:
            return RedirectResponse(f"{SIGN_IN}?next={request.url.path}", status_code=303)
        except CsrfRejected:
            return _error(request, 403, "This form has expired or did not come from this site; reload and retry.")
        except PermissionDenied as exc:
            return _error(request, 403, exc.message)
        except NotFound as exc:
            return _error(request, 404, exc.message)
        except (InputError, RubricError) as exc:
            return _error(request, 422, getattr(exc, "message", str(exc)))

    return wrapper


def _error(request: Request, status: int, message: str) -> HTMLResponse:
    return templates.TemplateResponse(
        request, "error.html", {"status": status, "message": message, "user": None}, status_code=status
    )


def _render(request: Request, name: str, user: User | None, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(
        request, name, {"user": user, "csrf": csrf_token(request), "role": Role(user.role) if user else None, **context}
    )


def _staff(request: Request, session: Any) -> User:
    user = current_user(request, session)
    if not Role(user.role).is_staff:
        raise PermissionDenied("this page is for course staff; your own submissions are under My submissions")
    return user


def _instructor(request: Request, session: Any) -> User:
    user = current_user(request, session)
    if Role(user.role) is not Role.INSTRUCTOR:
        raise PermissionDenied("only instructors may do this")
    return user


# ---------------------------------------------------------------- signing in and out


@router.get("/sign-in", response_class=HTMLResponse)
def sign_in_form(request: Request, next: str = "/dashboard") -> HTMLResponse:
    return _render(request, "sign_in.html", None, next=_local(next), message="")


@router.post("/sign-in")
def sign_in(
    request: Request,
    session: SessionDep,
    token: Annotated[str, Form(max_length=200)],
    next: Annotated[str, Form(max_length=500)] = "/dashboard",
) -> Response:
    if authenticate(session, token=token.strip()) is None:
        context = {"next": _local(next), "message": "That token is not valid (or was revoked)."}
        response = _render(request, "sign_in.html", None, **context)
        response.status_code = 401
        return response
    response = RedirectResponse(_local(next), status_code=303)
    start_session(response, token=token.strip(), secure=request.url.scheme == "https")
    return response


@router.post("/sign-out")
@page
def sign_out(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
    check_csrf(request, csrf)
    response = RedirectResponse(SIGN_IN, status_code=303)
    end_session(response)
    return response


def _local(target: str) -> str:
    """Only paths of this site after signing in (no open redirect)."""
    return target if target.startswith("/dashboard") and "//" not in target else "/dashboard"


# ---------------------------------------------------------------- home


@router.get("", response_class=HTMLResponse)
@page
def home(request: Request, session: SessionDep) -> Response:
    user = current_user(request, session)
    if not Role(user.role).is_staff:
        return RedirectResponse("/dashboard/mine", status_code=303)
    assignments = list_assignments(session)
    if len(assignments) == 1:
        return RedirectResponse(f"/dashboard/assignments/{assignments[0].id}", status_code=303)
    return _render(request, "home.html", user, assignments=assignments)


@router.get("/mine", response_class=HTMLResponse)
@page
def mine(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    user = current_user(request, session)
    rows, _ = submissions.list_submissions_for(session, user=user, owner=user, limit=500)
    catalog = RubricCatalog(settings.rubrics_dir)
    items = [
        describe_submission(row, viewer_role=Role(user.role), rubric=catalog.get(row.assignment_id)) for row in rows
    ]
    return _render(request, "mine.html", user, items=items)


# ---------------------------------------------------------------- an assignment, for staff


@router.get("/assignments/{assignment_id}", response_class=HTMLResponse)
@page
def overview(request: Request, assignment_id: str, session: SessionDep, settings: SettingsDep) -> Response:
    user = _staff(request, session)
    rubric = assignment_rubric(session, catalog=RubricCatalog(settings.rubrics_dir), assignment_id=assignment_id)
    numbers = stats.assignment_stats(session, rubric=rubric)
    accuracy = {
        label: charts.histogram(
            row["bins"], name=f"accuracy-{label}", label=f"{label} test accuracy", unit=" %", lines=(80, 90)
        )
        for label, row in numbers["accuracy"].items()
    }
    return _render(
        request,
        "overview.html",
        user,
        rubric=rubric,
        stats=numbers,
        queue=stats.queue_snapshot(session, settings=settings),
        score_chart=charts.histogram(numbers["scores"]["bins"], name="scores", label="Score distribution"),
        accuracy_charts=accuracy,
        part_chart=charts.part_bars(numbers["parts"]),
        hour_chart=charts.timeline(numbers["submissions_per_hour"]),
    )


@router.get("/assignments/{assignment_id}/students", response_class=HTMLResponse)
@page
def students(
    request: Request,
    assignment_id: str,
    session: SessionDep,
    settings: SettingsDep,
    q: str = "",
    sort: str = "user",
) -> Response:
    user = _staff(request, session)
    rubric = assignment_rubric(session, catalog=RubricCatalog(settings.rubrics_dir), assignment_id=assignment_id)
    rows = gradebook.gradebook_rows(session, rubric=rubric)
    needle = q.strip().lower()
    if needle:
        rows = [r for r in rows if needle in r["user"].lower() or needle in (r["name"] or "").lower()]
    sort = sort if sort in gradebook.SORTS else "user"
    ordered, total = gradebook.query_rows(rows, gradebook.Filters(), sort=sort, limit=len(rows) or 1)
    return _render(request, "students.html", user, rubric=rubric, rows=ordered, total=total, q=q, sort=sort)


@router.get("/assignments/{assignment_id}/integrity", response_class=HTMLResponse)
@page
def integrity(request: Request, assignment_id: str, session: SessionDep, settings: SettingsDep) -> Response:
    user = _staff(request, session)
    rubric = assignment_rubric(session, catalog=RubricCatalog(settings.rubrics_dir), assignment_id=assignment_id)
    report = integrity_report(session, assignment_id=assignment_id, settings=settings, counting=rubric.policy.counts)
    return _render(request, "integrity.html", user, rubric=rubric, report=report)


@router.get("/assignments/{assignment_id}/gradebook.csv")
@page
def gradebook_csv(
    request: Request, assignment_id: str, session: SessionDep, settings: SettingsDep, format: str = "canvas"
) -> Response:
    _staff(request, session)
    rubric = assignment_rubric(session, catalog=RubricCatalog(settings.rubrics_dir), assignment_id=assignment_id)
    return downloads.gradebook_csv(session, rubric, per_part=format == "parts")


@router.get("/assignments/{assignment_id}/review", response_class=HTMLResponse)
@page
def review_queue(
    request: Request, assignment_id: str, session: SessionDep, settings: SettingsDep, part: str = "", i: int = 0
) -> Response:
    user = _staff(request, session)
    rubric = assignment_rubric(session, catalog=RubricCatalog(settings.rubrics_dir), assignment_id=assignment_id)
    store = ArtifactStore(settings.resolved_storage_dir)
    queue = reviews.review_queue(
        gradebook.load_submissions(session, assignment_id), rubric=rubric, store=store, part=part or None
    )
    index = min(max(i, 0), max(len(queue) - 1, 0))
    item = queue[index] if queue else None
    return _render(request, "review.html", user, rubric=rubric, queue=queue, item=item, index=index, part=part)


# ---------------------------------------------------------------- regrades


@router.get("/assignments/{assignment_id}/regrades", response_class=HTMLResponse)
@page
def regrade_list(request: Request, assignment_id: str, session: SessionDep, settings: SettingsDep) -> Response:
    user = _staff(request, session)
    rubric = assignment_rubric(session, catalog=RubricCatalog(settings.rubrics_dir), assignment_id=assignment_id)
    rows = [
        regrades.describe_regrade(r, with_items=False)
        for r in regrades.list_regrades(session, assignment_id=assignment_id)
    ]
    return _render(request, "regrades.html", user, rubric=rubric, rows=rows)


@router.post("/assignments/{assignment_id}/regrades")
@page
def regrade_start(
    request: Request,
    assignment_id: str,
    session: SessionDep,
    settings: SettingsDep,
    dispatcher: DispatcherDep,
    csrf: Annotated[str, Form()] = "",
    scope: Annotated[str, Form()] = "all",
    names: Annotated[str, Form(max_length=20_000)] = "",
    dry_run: Annotated[str, Form()] = "",
) -> Response:
    check_csrf(request, csrf)
    user = _instructor(request, session)
    rubric = assignment_rubric(session, catalog=RubricCatalog(settings.rubrics_dir), assignment_id=assignment_id)
    listed = sorted({name.strip() for name in names.replace(",", " ").split() if name.strip()})
    raw = "all" if scope == "all" else {scope: listed}
    regrade = regrades.create_regrade(
        session, rubric=rubric, scope=regrades.parse_scope(raw, rubric), dry_run=dry_run == "yes", user=user
    )
    regrades.send_regrade(session, regrade=regrade, dispatcher=dispatcher)
    return RedirectResponse(f"/dashboard/regrades/{regrade.id}", status_code=303)


@router.get("/regrades/{regrade_id}.json")  # before the page's route, which would take "….json" as an id
@page
def regrade_progress(request: Request, regrade_id: str, session: SessionDep) -> Response:
    _staff(request, session)
    return JSONResponse(regrades.describe_regrade(regrades.get_regrade(session, regrade_id), with_items=False))


@router.get("/regrades/{regrade_id}", response_class=HTMLResponse)
@page
def regrade_page(request: Request, regrade_id: str, session: SessionDep, settings: SettingsDep) -> Response:
    user = _staff(request, session)
    view = regrades.describe_regrade(regrades.get_regrade(session, regrade_id))
    rubric = RubricCatalog(settings.rubrics_dir).get(view["assignment"])
    return _render(request, "regrade.html", user, regrade=view, rubric=rubric)


# ---------------------------------------------------------------- a submission


@router.get("/submissions/{submission_id}", response_class=HTMLResponse)
@page
def submission_page(request: Request, submission_id: str, session: SessionDep, settings: SettingsDep) -> Response:
    user = current_user(request, session)
    row = submissions.get_submission_for(session, user=user, submission_id=submission_id)
    rubric = RubricCatalog(settings.rubrics_dir).get(row.assignment_id)
    view = describe_submission(row, viewer_role=Role(user.role), rubric=rubric)
    store = ArtifactStore(settings.resolved_storage_dir)
    files = {}
    for file in row.files:
        try:
            files[file.field] = submissions.file_contents(store, file)
        except InputError:
            files[file.field] = None  # a checkpoint: a download link only
    heatmaps = {
        part["id"]: charts.heatmap(part["evidence"]["confusion_matrix"], part["evidence"].get("class_names") or [])
        for part in view["parts"]
        if isinstance(part.get("evidence"), dict) and part["evidence"].get("confusion_matrix")
    }
    titles = {part.id: part.title for part in rubric.parts}
    manual = {part.id for part in rubric.parts if part.checker == "manual_review"}
    return _render(
        request,
        "submission.html",
        user,
        s=view,
        files=files,
        heatmaps=heatmaps,
        titles=titles,
        manual=manual,
        rubric=rubric,
    )


@router.get("/submissions/{submission_id}/files/{field}")
@page
def submission_file(
    request: Request, submission_id: str, field: str, session: SessionDep, settings: SettingsDep
) -> Response:
    user = current_user(request, session)
    row = submissions.get_submission_for(session, user=user, submission_id=submission_id)
    return downloads.submission_file(row, field, ArtifactStore(settings.resolved_storage_dir))


@router.post("/submissions/{submission_id}/parts/{part_id}/review")
@page
def review_submit(
    request: Request,
    submission_id: str,
    part_id: str,
    session: SessionDep,
    settings: SettingsDep,
    points: Annotated[float, Form()],
    csrf: Annotated[str, Form()] = "",
    comment: Annotated[str, Form(max_length=20_000)] = "",
    reason: Annotated[str, Form(max_length=5_000)] = "",
    back: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    check_csrf(request, csrf)
    user = _staff(request, session)
    row = submissions.get_submission_for(session, user=user, submission_id=submission_id)
    rubric = RubricCatalog(settings.rubrics_dir).get(row.assignment_id)
    reviews.review_part(
        session,
        submission=row,
        part_id=part_id,
        points=points,
        comment=comment,
        reason=reason or None,
        reviewer=user,
        rubric=rubric,
    )
    target = _local(back) if back else f"/dashboard/submissions/{submission_id}#part-{part_id}"
    return RedirectResponse(target, status_code=303)
