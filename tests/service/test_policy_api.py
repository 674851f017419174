"""Course policy over HTTP: a limit answers 429 with Retry-After and stores nothing; staff grant extensions (with
who and when), students may not; a refused upload leaves no file behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, Backends
from tests.service.conftest import api_process

pytestmark = pytest.mark.service

ASSIGNMENT = "policy-hw"
SHEET = (REPO_ROOT / "tests" / "data" / "correct_sheet.yaml").read_bytes().replace(b"csce636-hw3", ASSIGNMENT.encode())


def _rubrics(folder: Path) -> Path:
    """HW3's parts under another assignment id, with a cooldown and a hard close in the past for no one else."""
    text = (REPO_ROOT / "rubrics" / "csce636-hw3.yaml").read_text()
    start, end = text.index("policy:\n"), text.index("\ntitle:")
    block = "policy:\n  timezone: UTC\n  attempts: {uploads: 5, cooldown_s: 600}\n"
    text = text[:start] + block + text[end:]
    folder.mkdir()
    (folder / f"{ASSIGNMENT}.yaml").write_text(text.replace("assignment: csce636-hw3", f"assignment: {ASSIGNMENT}"))
    return folder


def _blobs(storage: Path) -> set[Path]:
    return {p for p in storage.rglob("*") if p.is_file() and "tmp" not in p.parts and "derived" not in p.parts}


def test_limits_extensions_and_refusals_over_http(migrated: Backends, tmp_path: Path) -> None:
    env = {**migrated.env, "GRADER_RUBRICS_DIR": str(_rubrics(tmp_path / "rubrics"))}
    with api_process(env, tmp_path / "api.log") as api:
        pat, ivy = api.user("pol-pat"), api.user("pol-ivy", role="instructor")
        url = f"/api/v1/assignments/{ASSIGNMENT}/submissions"
        first = pat.post(url, files={"answers": ("a.yaml", SHEET)})
        assert first.status_code == 202, first.text

        storage = Path(migrated.env.get("GRADER_STORAGE_DIR") or Path(migrated.env["GRADER_DATA_DIR"]) / "storage")
        before = _blobs(storage)
        refused = pat.post(url, files={"answers": ("b.yaml", SHEET + b"\n# another file\n")})
        assert refused.status_code == 429, refused.text
        assert 590 <= int(refused.headers["Retry-After"]) <= 601
        assert "one submission every 600 s" in refused.json()["error"]["message"]
        # a file that is not a checkpoint is refused at intake (422), before any queue, and costs no attempt
        png = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
        bad = ivy.post(url, files={"answers": ("c.yaml", SHEET + b"\n# c\n"), "v1": ("v1.pt", png)})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "v1", bad.text
        assert _blobs(storage) == before  # refused requests left no file behind
        mine = pat.get("/api/v1/submissions", params={"assignment": ASSIGNMENT}).json()
        assert len(mine["items"]) == 1

        # staff grant an extension (kept with who and when); a student may not
        grant = {"user": "pol-pat", "extra_attempts": 2, "due": "2027-01-01T12:00:00", "reason": "doctor's note"}
        assert pat.post(f"/api/v1/assignments/{ASSIGNMENT}/extensions", json=grant).status_code == 403
        granted = ivy.post(f"/api/v1/assignments/{ASSIGNMENT}/extensions", json=grant)
        assert granted.status_code == 201, granted.text
        assert granted.json()["granted_by"] == "pol-ivy" and granted.json()["due"].startswith("2027-01-01T12:00:00")
        listed = ivy.get(f"/api/v1/assignments/{ASSIGNMENT}/extensions").json()["items"]
        assert [(row["user"], row["reason"]) for row in listed] == [("pol-pat", "doctor's note")]
        typo = ivy.post(f"/api/v1/assignments/{ASSIGNMENT}/extensions", json={**grant, "due": "next week"})
        assert typo.status_code == 422 and typo.json()["error"]["field"] == "due"

        # the student's submission shows the due date that applies to them
        shown = pat.get(first.json()["status_url"]).json()
        assert shown["late"]["extended"] is True and shown["late"]["penalty_percent"] == 0

        # The same on the server's command line (granted by no user); an unknown student is named.
        granted_here = api.cli("extend", ASSIGNMENT, "pol-pat", "--extra-attempts", "1", "--reason", "by phone")
        assert "extension for pol-pat on policy-hw: due unchanged" in granted_here.stdout
        unknown = api.cli("extend", ASSIGNMENT, "nobody-here", "--extra-attempts", "1", check=False)
        assert unknown.returncode != 0 and "no user 'nobody-here'" in unknown.stderr, unknown.stderr
        listed = ivy.get(f"/api/v1/assignments/{ASSIGNMENT}/extensions").json()["items"]
        grants = [(row["reason"], row["granted_by"]) for row in listed]
        assert grants == [("doctor's note", "pol-ivy"), ("by phone", None)]
