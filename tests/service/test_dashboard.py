"""The dashboard in a real browser (Debian's chromium driven by Playwright) against the running service and its
worker: an instructor signs in, reads the charts (their elements and numbers, not pixels), opens a submission,
scores a written part, runs a dry-run regrade and applies it, downloads the gradebook; a student sees only their
own work and gets 403 on staff pages. Screenshots of each page go to test-output/browser/."""

from __future__ import annotations

import csv
import io
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.service.conftest import RunningService, wait_for_final

pytestmark = [pytest.mark.service, pytest.mark.browser]
CHROMIUM = "/usr/bin/chromium"
SHOTS = REPO_ROOT / "test-output" / "browser"
DATA = REPO_ROOT / "tests" / "data"
ASSIGNMENT = "csce636-hw3"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if shutil.which(CHROMIUM) is None:
        message = f"{CHROMIUM} is missing: apt-get install chromium (.ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def klass(service: RunningService) -> dict[str, dict]:
    """Three students graded through the API (one wrong sheet, two right)."""
    graded = {}
    for name, sheet in (
        ("web-ann", "wrong_sheet.yaml"),
        ("web-bob", "correct_sheet.yaml"),
        ("web-cy", "correct_sheet.yaml"),
    ):
        client = service.user(name)
        accepted = client.post(
            f"/api/v1/assignments/{ASSIGNMENT}/submissions", files={"answers": (sheet, (DATA / sheet).read_bytes())}
        )
        assert accepted.status_code == 202, accepted.text
        graded[name] = wait_for_final(client, accepted.json()["status_url"])
    return graded


LAPTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


def sign_in(
    browser: object, service: RunningService, name: str, role: str = "student", viewport: dict = LAPTOP
) -> object:
    service.user(name, role=role)  # made through the CLI; its token is kept
    page = browser.new_context(viewport=viewport, accept_downloads=True).new_page()  # type: ignore[attr-defined]
    page.goto(f"{service.base_url}/dashboard")
    assert "/dashboard/sign-in" in page.url
    page.fill("#token", service.tokens[name])
    page.click("button[type=submit]")
    page.wait_for_load_state()
    return page


def test_an_instructor_reads_the_charts_reviews_regrades_and_exports(
    browser: object, service: RunningService, klass: dict[str, dict]
) -> None:
    page = sign_in(browser, service, "web-alice", role="instructor")
    assert page.url.endswith(f"/dashboard/assignments/{ASSIGNMENT}")
    page.screenshot(path=str(SHOTS / "overview.png"), full_page=True)
    stats = service.user("web-alice").get(f"/api/v1/assignments/{ASSIGNMENT}/stats").json()
    counts = [
        int(bar.get_attribute("data-count")) for bar in page.query_selector_all("svg[data-chart=scores] rect.bar")
    ]
    assert len(counts) == 10 and sum(counts) == stats["scores"]["count"] >= 2
    for label in ("v1", "v2"):
        lines = page.query_selector_all(f"svg[data-chart=accuracy-{label}] line.threshold")
        assert sorted(line.get_attribute("data-at") for line in lines) == ["80", "90"]
    segments = page.query_selector_all("svg[data-chart=parts] rect.segment[data-part='q2.discussion']")
    assert segments and all(0 < float(s.get_attribute("data-share")) <= 1 for s in segments)
    assert page.query_selector("svg[data-chart=per-hour] rect.bar") is not None
    # the queue right now, with the live workers of each queue (`grader run` starts one per queue)
    for queue in ("cpu", "gpu", "regrade"):
        assert int(page.inner_text(f".tile[data-workers={queue}] .n")) >= 1

    # the students table, sorted by score, links to the submission
    page.click("text=Students")
    page.fill("#q", "web-")
    page.click("form.search button")
    page.screenshot(path=str(SHOTS / "students.png"), full_page=True)
    shown = {row.get_attribute("data-user") for row in page.query_selector_all("tbody tr")}
    assert shown == {"web-ann", "web-bob", "web-cy"}
    page.click("tr[data-user=web-ann] a")
    assert f"/dashboard/submissions/{klass['web-ann']['id']}" in page.url
    page.screenshot(path=str(SHOTS / "submission.png"), full_page=True)

    # score the written part
    row = page.locator("tr[data-part='q2.discussion']")
    assert "Bottlenecks are cheaper." in page.content()
    row.locator("input[name=points]").fill("3")
    row.locator("input[name=comment]").fill("Only cost; compare the receptive fields too.")
    row.locator("button[type=submit]").click()
    page.wait_for_load_state()
    row = page.locator("tr[data-part='q2.discussion']")
    assert row.locator("td[data-points]").get_attribute("data-points") == "3.0"
    assert "reviewed" in row.inner_text()
    api = service.user("web-alice").get(klass["web-ann"]["status_url"]).json()
    assert next(p for p in api["parts"] if p["id"] == "q2.discussion")["review"]["by"] == "web-alice"

    # a dry-run regrade of the two students, its diff, then applying it
    page.click("text=Regrades")
    page.check("input[name=scope][value=users]")
    page.fill("input[name=names]", "web-ann web-bob")
    page.click("form.regrade button[type=submit]")
    page.wait_for_selector("#status.finished", timeout=60_000)
    page.screenshot(path=str(SHOTS / "regrade-dry-run.png"), full_page=True)
    assert "2 done, 0 failed of 2" in page.inner_text("#counts")
    page.click("#apply")
    page.wait_for_selector("#status.finished", timeout=60_000)
    assert "Applied regrade" in page.inner_text("h1")
    history = service.user("web-alice").get(klass["web-ann"]["status_url"]).json()["history"]
    assert [job["reason"] for job in history] == ["submitted", "batch regrade"]

    # the gradebook as Canvas wants it
    page.click("text=Overview")
    with page.expect_download() as download:
        page.click("text=Gradebook (Canvas CSV)")
    table = list(csv.reader(io.StringIO(Path(download.value.path()).read_text())))
    assert table[0][:5] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
    assert "web-ann" in {row[3] for row in table[2:]}

    # the review queue moves with the keyboard
    page.goto(f"{service.base_url}/dashboard/assignments/{ASSIGNMENT}/review?part=q2.discussion")
    page.screenshot(path=str(SHOTS / "review-queue.png"), full_page=True)
    first = page.get_attribute("[data-review-item]", "data-review-item")
    assert page.query_selector("#next") is not None  # web-bob and web-cy (and other tests' students) wait
    if page.query_selector("#next"):
        with page.expect_navigation():
            page.keyboard.press("j")
        assert page.get_attribute("[data-review-item]", "data-review-item") != first
        with page.expect_navigation():
            page.keyboard.press("k")
        assert page.get_attribute("[data-review-item]", "data-review-item") == first


def test_a_student_sees_only_their_own_work_and_no_staff_page(
    browser: object, service: RunningService, klass: dict[str, dict]
) -> None:
    page = sign_in(browser, service, "web-ann")
    assert page.url.endswith("/dashboard/mine")
    page.screenshot(path=str(SHOTS / "student-mine.png"), full_page=True)
    shown = {row.get_attribute("data-submission") for row in page.query_selector_all("tr[data-submission]")}
    assert shown == {klass["web-ann"]["id"]}
    page.click(f"tr[data-submission='{klass['web-ann']['id']}'] a")
    assert page.query_selector("form.review") is None  # no review forms for students
    hidden = page.locator("tr[data-part='q2.discussion'] td[data-points]").inner_text()
    assert hidden.startswith("—")  # hidden until release
    for path in (
        f"/dashboard/assignments/{ASSIGNMENT}",
        f"/dashboard/assignments/{ASSIGNMENT}/integrity",
        f"/dashboard/submissions/{klass['web-bob']['id']}",
    ):
        response = page.goto(f"{service.base_url}{path}")
        assert response.status in (403, 404)
    response = page.goto(f"{service.base_url}/dashboard/assignments/{ASSIGNMENT}/students")
    assert response.status == 403
    page.screenshot(path=str(SHOTS / "student-403.png"))


def test_every_staff_page_fits_a_phone_and_is_reachable_by_keyboard(
    browser: object, service: RunningService, klass: dict[str, dict]
) -> None:
    page = sign_in(browser, service, "web-alice", role="instructor", viewport=PHONE)
    paths = {
        "overview": f"/dashboard/assignments/{ASSIGNMENT}",
        "students": f"/dashboard/assignments/{ASSIGNMENT}/students",
        "submission": f"/dashboard/submissions/{klass['web-ann']['id']}",
        "review": f"/dashboard/assignments/{ASSIGNMENT}/review",
        "regrades": f"/dashboard/assignments/{ASSIGNMENT}/regrades",
        "integrity": f"/dashboard/assignments/{ASSIGNMENT}/integrity",
    }
    for name, path in paths.items():
        response = page.goto(f"{service.base_url}{path}")
        assert response.status == 200, (name, response.status)
        # the page itself never scrolls sideways (wide tables and charts scroll inside their own box)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{name} is {overflow} px wider than a phone"
        page.screenshot(path=str(SHOTS / f"phone-{name}.png"), full_page=True)
    # Tab reaches the navigation and every link shows where the focus is
    page.goto(f"{service.base_url}{paths['overview']}")
    page.keyboard.press("Tab")
    focused = page.evaluate(
        "document.activeElement.tagName + ' ' + getComputedStyle(document.activeElement).outlineStyle"
    )
    assert focused.split()[0] in ("A", "BUTTON", "INPUT") and focused.split()[1] != "none", focused


def test_docs_and_the_dashboard_load_nothing_from_outside(browser: object, service: RunningService) -> None:
    context = browser.new_context()  # type: ignore[attr-defined]
    outside: list[str] = []
    context.on(
        "request", lambda request: outside.append(request.url) if not request.url.startswith(service.base_url) else None
    )
    page = context.new_page()
    page.goto(f"{service.base_url}/docs")
    page.wait_for_selector(".swagger-ui .info", timeout=30_000)
    page.goto(f"{service.base_url}/")
    assert "/dashboard/sign-in" in page.url
    assert outside == []
