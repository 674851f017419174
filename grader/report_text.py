"""A grade report as a readable table for the terminal (`grader grade` without --json)."""

from __future__ import annotations

import textwrap

from grader.domain.results import GradeReport


def render_report(report: GradeReport) -> str:
    width = max([len(part.id) for part in report.parts] + [4])
    lines = [f"{report.assignment} (rubric {report.rubric_version})", ""]
    lines.append(f"{'part':<{width}}  {'status':<12}  {'points':>13}  feedback")
    for part in report.parts:
        points = f"{part.points:g} / {part.max_points:g}"
        feedback = textwrap.shorten(part.feedback, width=90, placeholder=" ...") if part.feedback else ""
        lines.append(f"{part.id:<{width}}  {part.status!s:<12}  {points:>13}  {feedback}")
    lines += ["", f"score: {report.score:g} / {report.max_score:g}"]
    return "\n".join(lines)
