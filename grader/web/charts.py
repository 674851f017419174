"""Charts as server-side SVG: every bar carries its numbers as data attributes and a title, so people (and
tests) can read the chart, not only look at it. No script, no CDN."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from markupsafe import Markup

WIDTH, HEIGHT, PAD = 360, 170, 24
BARS_WIDTH = 620
STATUS_COLOURS = {
    "correct": "var(--ok)",
    "partial": "var(--partial)",
    "incorrect": "var(--bad)",
    "invalid": "var(--bad-2)",
    "missing": "var(--muted)",
    "needs_review": "var(--review)",
    "error": "var(--error)",
}


def histogram(
    bins: Sequence[Mapping[str, Any]], *, name: str, label: str, unit: str = "", lines: Sequence[float] = ()
) -> Markup:
    """Bars for `bins` ({from, to, count}); `lines` are marks on the x axis (e.g. the 80 % and 90 % thresholds)."""
    if not bins:
        return Markup(f'<p class="empty" data-chart="{escape(name)}">No data yet.</p>')
    top = max([b["count"] for b in bins] + [1])
    low, high = bins[0]["from"], bins[-1]["to"]
    span = (high - low) or 1
    inner_w, inner_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD
    width = inner_w / len(bins)
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" data-chart="{escape(name)}" '
        f'aria-label="{escape(label)}"><title>{escape(label)}</title>'
    ]
    for index, item in enumerate(bins):
        h = inner_h * item["count"] / top
        x, y = PAD + index * width, PAD + inner_h - h
        text = f"{item['from']:g}–{item['to']:g}{unit}: {item['count']}"
        parts.append(
            f'<rect class="bar" x="{x + 1:.1f}" y="{y:.1f}" width="{width - 2:.1f}" height="{h:.1f}" '
            f'data-from="{item["from"]:g}" data-to="{item["to"]:g}" data-count="{item["count"]}">'
            f"<title>{escape(text)}</title></rect>"
        )
        if item["count"]:
            parts.append(f'<text class="count" x="{x + width / 2:.1f}" y="{y - 4:.1f}">{item["count"]}</text>')
        parts.append(f'<text class="tick" x="{x:.1f}" y="{HEIGHT - 8}">{item["from"]:g}</text>')
    for line in lines:
        x = PAD + inner_w * (line - low) / span
        parts.append(
            f'<line class="threshold" x1="{x:.1f}" x2="{x:.1f}" y1="{PAD - 6}" y2="{PAD + inner_h}" '
            f'data-at="{line:g}"><title>{line:g}{escape(unit)}</title></line>'
            f'<text class="threshold-label" x="{x + 3:.1f}" y="{PAD - 8}">{line:g}{escape(unit)}</text>'
        )
    parts.append(f'<line class="axis" x1="{PAD}" x2="{WIDTH - PAD}" y1="{PAD + inner_h}" y2="{PAD + inner_h}"/>')
    parts.append("</svg>")
    return Markup("".join(parts))


def part_bars(parts: Mapping[str, Mapping[str, Any]]) -> Markup:
    """One stacked bar per part: shares of correct / partial / incorrect / invalid / missing / needs review."""
    row_h, label_w, bar_w = 20, 190, BARS_WIDTH - 200
    height = row_h * len(parts) + 24
    out = [
        f'<svg class="chart bars" role="img" viewBox="0 0 {BARS_WIDTH} {height}" data-chart="parts" '
        f'aria-label="Share of each status per part"><title>Share of each status per part</title>'
    ]
    for row, (part_id, stats) in enumerate(parts.items()):
        y = row * row_h + 4
        out.append(f'<text class="part-label" x="0" y="{y + 13}">{escape(part_id)}</text>')
        x = float(label_w)
        for status, share in stats["share"].items():
            if share <= 0:
                continue
            w = bar_w * share
            tip = f"{part_id}: {status} {share * 100:.0f} %"
            out.append(
                f'<rect class="segment" x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row_h - 4}" '
                f'fill="{STATUS_COLOURS.get(status, "var(--muted)")}" data-part="{escape(part_id)}" '
                f'data-status="{escape(status)}" data-share="{share}"><title>{escape(tip)}</title></rect>'
            )
            x += w
    legend_y = height - 6
    x = 0
    for status, colour in STATUS_COLOURS.items():
        out.append(f'<rect x="{x}" y="{legend_y - 9}" width="10" height="10" fill="{colour}"/>')
        label = status.replace("_", " ")
        out.append(f'<text class="legend" x="{x + 13}" y="{legend_y}">{label}</text>')
        x += 26 + 7 * len(label)
    out.append("</svg>")
    return Markup("".join(out))


def timeline(points: Sequence[Mapping[str, Any]]) -> Markup:
    """Submissions per hour as bars."""
    bins = [{"from": index, "to": index + 1, "count": p["count"], "hour": p["hour"]} for index, p in enumerate(points)]
    if not bins:
        return Markup('<p class="empty" data-chart="per-hour">No submissions yet.</p>')
    top = max(b["count"] for b in bins)
    inner_w, inner_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD
    width = min(inner_w / len(bins), 30)
    out = [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" data-chart="per-hour" '
        'aria-label="Submissions per hour"><title>Submissions per hour</title>'
    ]
    for index, item in enumerate(bins):
        h = inner_h * item["count"] / top
        out.append(
            f'<rect class="bar" x="{PAD + index * width + 1:.1f}" y="{PAD + inner_h - h:.1f}" '
            f'width="{max(width - 2, 1):.1f}" height="{h:.1f}" data-hour="{escape(item["hour"])}" '
            f'data-count="{item["count"]}"><title>{escape(item["hour"])}: {item["count"]}</title></rect>'
        )
    out.append(f'<text class="tick" x="{PAD}" y="{HEIGHT - 8}">{escape(bins[0]["hour"][:13])}h</text>')
    last = PAD + width * len(bins)
    if len(bins) > 1:
        out.append(f'<text class="tick end" x="{last:.1f}" y="{HEIGHT - 8}">{escape(bins[-1]["hour"][11:13])}h</text>')
    out.append("</svg>")
    return Markup("".join(out))


def heatmap(matrix: Sequence[Sequence[int]], names: Sequence[str]) -> Markup:
    """A confusion matrix: rows are true classes, columns predicted; each cell holds its count."""
    size = len(matrix)
    if not size:
        return Markup("")
    cell, left, top_pad = 34, 80, 70
    width, height = left + cell * size + 4, top_pad + cell * size + 4
    top = max(max(row) for row in matrix) or 1
    out = [
        f'<svg class="chart heatmap" role="img" viewBox="0 0 {width} {height}" data-chart="confusion" '
        'aria-label="Confusion matrix: rows true class, columns predicted"><title>Confusion matrix</title>'
    ]
    for index, name in enumerate(names):
        y = top_pad + index * cell + 21
        out.append(f'<text class="tick" x="{left - 4}" y="{y}" text-anchor="end">{escape(name)}</text>')
        x = left + index * cell + 20
        out.append(f'<text class="tick" transform="translate({x},{top_pad - 4}) rotate(-60)">{escape(name)}</text>')
    for r, row in enumerate(matrix):
        for c, count in enumerate(row):
            shade = count / top
            out.append(
                f'<rect class="cell" x="{left + c * cell}" y="{top_pad + r * cell}" width="{cell - 1}" '
                f'height="{cell - 1}" style="fill-opacity:{0.08 + 0.92 * shade:.3f}" data-true="{r}" '
                f'data-predicted="{c}" data-count="{count}"><title>{escape(names[r])} → {escape(names[c])}: '
                f"{count}</title></rect>"
                f'<text class="cell-count{" light" if shade > 0.55 else ""}" x="{left + c * cell + cell / 2}" '
                f'y="{top_pad + r * cell + 21}">{count}</text>'
            )
    out.append("</svg>")
    return Markup("".join(out))
