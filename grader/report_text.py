"""Grade reports and progress for the terminal: the table `grader grade` and `grader submit` print, and a bar."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from typing import Any

from grader.domain.results import GradeReport


def render_report(report: GradeReport) -> str:
    return render_report_json(report.to_json())


def render_report_json(report: Mapping[str, Any]) -> str:
    """The table from the JSON shape: `GradeReport.to_json()`, or a submission as the REST API returns it, where
    a part hidden from a student before release has no points and the score may be null."""
    parts: list[Mapping[str, Any]] = report.get("parts") or []
    width = max([len(part["id"]) for part in parts] + [4])
    lines = [f"{report['assignment']} (rubric {report.get('rubric_version') or '?'})", ""]
    lines.append(f"{'part':<{width}}  {'status':<12}  {'points':>13}  feedback")
    for part in parts:
        points = f"{_number(part.get('points'))} / {_number(part['max_points'])}"
        feedback = part.get("feedback") or ""
        shown = textwrap.shorten(feedback, width=90, placeholder=" ...") if feedback else ""
        lines.append(f"{part['id']:<{width}}  {part['status']!s:<12}  {points:>13}  {shown}")
    lines += ["", f"score: {_number(report.get('score'))} / {_number(report.get('max_score'))}"]
    return "\n".join(lines)


def progress_bar(done: int, total: int, *, width: int = 30) -> str:
    """`[#########.....................]`: the share done, for a line redrawn in place."""
    filled = width * done // total if total else width
    return f"[{'#' * min(filled, width)}{'.' * max(width - filled, 0)}]"


def _number(value: float | None) -> str:
    # a part hidden before release (and its share of the score) has no points: shown as "?", never as 0
    return "?" if value is None else f"{value:g}"
