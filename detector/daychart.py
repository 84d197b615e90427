"""The day overview's chart: deliveries per hour (or day) as stacked bars, incidents shaded.

Inline SVG from numbers and escaped text only, like ``charts``; no URL, no script. Sized
so its text stays readable when a narrow screen scales it down (13 px at 480 px wide is
10 px on a 370 px column), with ticks and gridlines on both axes, and colours of at
least 4.5:1 against white for text and 3:1 for bars (WCAG AA).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, tzinfo
from typing import Any

from markupsafe import Markup, escape

WIDTH, HEIGHT = 480, 250
_LEFT, _RIGHT, _TOP, _BOTTOM = 54, 10, 34, 46
_FONT = 'font-family="system-ui, sans-serif" font-size="13"'
#: (field, legend, colour): stacked bottom to top. Contrast with white: 8.3, 5.6, 7.9
SERIES = (("delivered", "delivered", "#1f4e8c"), ("deferred", "deferred", "#a35200"),
          ("bounced", "bounced", "#a40e26"))
_TEXT, _GRID, _BAND, _BAND_TEXT = "#424a53", "#d0d7de", "#fde7e9", "#7a0916"
_LABEL_STEPS = (1, 2, 3, 4, 6, 12, 24, 48, 168)
_MAX_LABELS = 5


def traffic_svg(rows: Sequence[dict[str, Any]], marks: Sequence[bool], zone: tzinfo, *,
                bucket: str = "hour") -> Markup:
    """``rows`` are the overview's traffic buckets (``start`` a UTC datetime, counts per
    ``SERIES`` field); ``marks[i]`` says an incident was active in bucket i."""
    label = f"Deliveries per {bucket}"
    if not rows:
        return Markup(f'<svg class="daychart" role="img" aria-label="{escape(label)}: no '
                      f'data" width="{WIDTH}" height="40" viewBox="0 0 {WIDTH} 40" {_FONT}>'
                      f'<text x="{WIDTH / 2}" y="24" text-anchor="middle" fill="{_TEXT}">'
                      "no data</text></svg>")
    totals = [sum(int(r[f] or 0) for f, _, _ in SERIES) for r in rows]
    top, step = _scale(max(totals))
    x0, x1, y0, y1 = _LEFT, WIDTH - _RIGHT, _TOP, HEIGHT - _BOTTOM
    slot = (x1 - x0) / len(rows)

    def y_at(v: float) -> float:
        return y1 - v / top * (y1 - y0)

    busiest = max(range(len(rows)), key=lambda i: totals[i])
    shown = "%Y-%m-%d %H:%M %Z" if bucket == "hour" else "%Y-%m-%d %Z"
    desc = (f"{len(rows)} {bucket}s from {_local(rows[0]['start'], zone, shown)}; busiest "
            f"{_local(rows[busiest]['start'], zone, shown)} with {totals[busiest]:,} "
            f"deliveries; {sum(marks)} {bucket}(s) with an incident shaded. The table below "
            "gives every number.")
    out = [f'<svg class="daychart" role="img" aria-label="{escape(label + ". " + desc)}" '
           f'width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" {_FONT}>',
           f"<title>{escape(label)}</title><desc>{escape(desc)}</desc>"]
    for i, on in enumerate(marks):  # incident bands first, under everything
        if on:
            # a light band behind the bars: the hours' incidents are in the table and the
            # description too, so it is decoration to assistive technology
            out.append(f'<rect class="incident" aria-hidden="true" x="{x0 + i * slot:.1f}" '
                       f'y="{y0}" width="{slot:.1f}" height="{y1 - y0}" fill="{_BAND}"/>')
    v = 0
    while v <= top:  # y gridlines and labels
        out.append(f'<line x1="{x0}" y1="{y_at(v):.1f}" x2="{x1}" y2="{y_at(v):.1f}" '
                   f'stroke="{_GRID}"/>')
        out.append(_text(x0 - 5, y_at(v) + 4, f"{v:,}", "end"))
        v += step
    every = next((s for s in _LABEL_STEPS if len(rows) / s <= _MAX_LABELS), len(rows))
    previous_day = None
    for i in range(0, len(rows), every):  # x gridlines, ticks and local-time labels
        x = x0 + i * slot
        local = rows[i]["start"].astimezone(zone)
        out.append(f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y1 + 4}" '
                   f'stroke="{_GRID}"/>')
        first = local.strftime("%H:%M") if bucket == "hour" else local.strftime("%d %b")
        out.append(_text(x, y1 + 18, first, "middle"))
        day = local.strftime("%d %b")
        if bucket == "hour" and day != previous_day:
            out.append(_text(x, y1 + 34, day, "middle"))
            previous_day = day
    gap = 0.15 * slot if slot > 4 else 0.0
    for i, row in enumerate(rows):  # stacked bars
        base = 0
        for field, _, colour in SERIES:
            n = int(row[field] or 0)
            if n:
                out.append(f'<rect x="{x0 + i * slot + gap:.1f}" y="{y_at(base + n):.1f}" '
                           f'width="{max(slot - 2 * gap, 0.5):.1f}" '
                           f'height="{y_at(base) - y_at(base + n):.1f}" fill="{colour}"/>')
            base += n
    out.append(f'<path d="M{x0} {y0}V{y1}H{x1}" fill="none" stroke="{_TEXT}"/>')
    x = float(x0)  # legend above the plot
    for _, name, colour in SERIES:
        out.append(f'<rect x="{x:.1f}" y="8" width="12" height="12" fill="{colour}"/>')
        out.append(_text(x + 16, 19, name, "start"))
        x += 24 + 8 * len(name)
    if any(marks):
        out.append(f'<rect aria-hidden="true" x="{x:.1f}" y="8" width="12" height="12" '
                   f'fill="{_BAND}" stroke="{_BAND_TEXT}"/>')
        out.append(_text(x + 16, 19, "incident", "start", _BAND_TEXT))
    out.append(_text(WIDTH - _RIGHT, HEIGHT - 2, f"time ({_zone_names(rows, zone)})", "end"))
    out.append("</svg>")
    return Markup("".join(out))


def _scale(peak: int) -> tuple[int, int]:
    """A round top of the y axis and its gridline step (about four steps)."""
    if peak <= 0:
        return 4, 1
    raw = peak / 4
    magnitude = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    step = max(int(step), 1)
    return step * math.ceil(peak / step), step


def _local(value: datetime, zone: tzinfo, fmt: str) -> str:
    return value.astimezone(zone).strftime(fmt)


def _zone_names(rows: Sequence[dict[str, Any]], zone: tzinfo) -> str:
    """The zone's abbreviations over the chart, first to last ("GMT", or "BST/GMT")."""
    names: list[str] = []
    for row in (rows[0], rows[-1]):
        name = row["start"].astimezone(zone).strftime("%Z")
        if name not in names:
            names.append(name)
    return "/".join(names)


def _text(x: float, y: float, s: str, anchor: str, fill: str = _TEXT) -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="{fill}">'
            f"{escape(s)}</text>")
