"""Inline SVG charts for the static HTML reports.

The SVG is assembled from numbers and ``markupsafe.escape``-d strings only: titles may
carry subjects or addresses taken from logs, which an attacker controls. There is no
``xmlns`` attribute on purpose: inline SVG in HTML does not need one, and the reports
must contain no URLs at all. The output is also well-formed XML, so tests can parse it.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from markupsafe import Markup, escape

# Plot margins (px): room for the y labels left/right and the time ticks below.
_LEFT, _RIGHT, _TOP, _BOTTOM = 52, 52, 38, 36
_TICK_STEPS_MIN = (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440)
_MAX_TICKS = 6
_BAR, _BAR_PEAK, _LINE, _PEAK, _AXIS, _MUTED = (
    "#6f9fd8",
    "#1f4e8c",
    "#c2410c",
    "#b3261e",
    "#57606a",
    "#8c959f",
)
_FONT = 'font-family="system-ui, sans-serif" font-size="11"'
# Characters XML 1.0 forbids even when escaped; log text can contain them.
_XML_FORBIDDEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def timeline_svg(
    points: list[dict[str, Any]],
    width: int = 720,
    height: int = 220,
    *,
    title: str | None = None,
    peak: str | None = None,
) -> Markup:
    """Deliveries per minute (bars, left scale) and messages per minute (line, right scale).

    ``points`` are ``{"minute": iso, "messages": int, "deliveries": int}``; minutes absent
    from the list are drawn as gaps. ``peak`` (ISO minute) marks the busiest minute; by
    default the minute with the most deliveries. ``title`` is free text and is escaped.
    """
    label = title or "Deliveries and messages per minute"
    if not points:
        return _no_data(width, label)
    slots, span, ticks, times = _layout(points)
    x0, x1, y0, y1 = _LEFT, width - _RIGHT, _TOP, height - _BOTTOM
    slot_w = (x1 - x0) / span
    d_max = max(max(d for d, _ in slots.values()), 1)
    m_max = max(max(m for _, m in slots.values()), 1)
    peak_slot = _peak_slot(slots, times, peak)

    def x_at(slot: float) -> float:
        return x0 + slot * slot_w

    def y_at(value: float, top: float) -> float:
        return y1 - value / top * (y1 - y0)

    peak_d, peak_m = slots[peak_slot]
    peak_label = _slot_label(peak_slot, times)
    desc = (
        f"{len(slots)} minutes with traffic between {_slot_label(0, times)} and "
        f"{_slot_label(max(slots), times)} UTC; peak at {peak_label} with "
        f"{_fmt(peak_d)} deliveries and {_fmt(peak_m)} messages; "
        f"at most {_fmt(d_max)} deliveries and {_fmt(m_max)} messages in one minute."
    )
    out = [
        f'<svg class="timeline" role="img" aria-label="{_esc(label + ". " + desc)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" {_FONT}>',
        f"<title>{_esc(label)}</title><desc>{_esc(desc)}</desc>",
    ]
    # Axes and scale labels: left = deliveries (bar colour), right = messages (line colour).
    out.append(
        f'<path d="M{x0} {y0}V{y1}H{x1}V{y0}" fill="none" stroke="{_AXIS}" stroke-width="1"/>'
    )
    out.append(
        f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="{_MUTED}" stroke-dasharray="2 3"/>'
    )
    out.append(_text(x0 - 6, y0 + 4, _fmt(d_max), "end", _BAR_PEAK))
    out.append(_text(x0 - 6, y1 + 4, "0", "end", _AXIS))
    out.append(_text(x1 + 6, y0 + 4, _fmt(m_max), "start", _LINE))
    out.append(_text(x1 + 6, y1 + 4, "0", "start", _AXIS))
    # Legend above the plot.
    out.append(f'<rect x="{x0}" y="8" width="10" height="10" fill="{_BAR}"/>')
    out.append(_text(x0 + 14, 17, "deliveries per minute (left)", "start", _AXIS))
    out.append(
        f'<line x1="{x0 + 190}" y1="13" x2="{x0 + 206}" y2="13" stroke="{_LINE}"/>'
        f'<circle cx="{x0 + 198}" cy="13" r="3" fill="{_LINE}"/>'
    )
    out.append(_text(x0 + 212, 17, "messages per minute (right)", "start", _AXIS))
    for slot, tick in ticks:
        x = x_at(slot)
        out.append(f'<line x1="{x:.1f}" y1="{y1}" x2="{x:.1f}" y2="{y1 + 4}" stroke="{_AXIS}"/>')
        out.append(_text(x, y1 + 16, tick, "middle", _AXIS))
    out.append(_text(x1, height - 4, "time (UTC)", "end", _MUTED))
    # Bars centred in their minute, with a gap when wide, capped so one minute is no slab.
    gap = slot_w * 0.12 if slot_w > 4 else 0.0
    bar_w = min(max(slot_w - 2 * gap, 0.5), 48.0)
    for slot, (d, _) in sorted(slots.items()):
        top = y_at(d, d_max)
        fill = _BAR_PEAK if slot == peak_slot else _BAR
        out.append(
            f'<rect x="{x_at(slot + 0.5) - bar_w / 2:.1f}" y="{top:.1f}" width="{bar_w:.1f}" '
            f'height="{y1 - top:.1f}" fill="{fill}"/>'
        )
    out.append(_message_line(slots, x_at, lambda m: y_at(m, m_max), slot_w))
    # Peak marker: dashed rule through the busiest minute, labelled just above the plot
    # (clear of the bars), clamped so the label never leaves the picture.
    px = x_at(peak_slot + 0.5)
    out.append(
        f'<line class="peak" x1="{px:.1f}" y1="{y0 - 2}" x2="{px:.1f}" y2="{y1}" '
        f'stroke="{_PEAK}" stroke-dasharray="4 3"/>'
    )
    short = _slot_label(peak_slot, times, short=True)
    lx = min(max(px, x0 + 34), x1 - 34)
    out.append(_text(lx, y0 - 6, f"peak {short}", "middle", _PEAK, bold=True))
    out.append("</svg>")
    return Markup("".join(out))


def _layout(
    points: list[dict[str, Any]],
) -> tuple[dict[int, tuple[float, float]], int, list[tuple[int, str]], datetime | None]:
    """Map points to integer minute slots. Returns (slot -> (deliveries, messages),
    number of slots, x ticks as (slot, label), time of slot 0 or None if minutes are not
    ISO times; then slots are list positions and tick labels come from the raw strings)."""
    parsed = [t for t in (_to_utc(p.get("minute")) for p in points) if t is not None]
    slots: dict[int, tuple[float, float]] = {}
    if len(parsed) == len(points):
        t0 = min(parsed)
        for p, t in zip(points, parsed, strict=True):
            slot = int((t - t0).total_seconds() // 60)
            d, m = slots.get(slot, (0.0, 0.0))
            slots[slot] = (d + _count(p.get("deliveries")), m + _count(p.get("messages")))
        span = max(slots) + 1
        return slots, span, _time_ticks(t0, span), t0
    for i, p in enumerate(points):
        slots[i] = (_count(p.get("deliveries")), _count(p.get("messages")))
    step = max(1, math.ceil(len(points) / _MAX_TICKS))
    ticks = [(i, _raw_minute(points[i].get("minute"))) for i in range(0, len(points), step)]
    return slots, len(points), ticks, None


def _time_ticks(t0: datetime, span: int) -> list[tuple[int, str]]:
    step = next((s for s in _TICK_STEPS_MIN if span / s <= _MAX_TICKS), None)
    if step is None:  # longer than ~6 days: whole days
        step = 1440 * math.ceil(span / _MAX_TICKS / 1440)
    fmt = "%m-%d" if step >= 1440 else "%H:%M"
    # Align ticks to round clock times (multiples of the step since midnight).
    first = -(t0.hour * 60 + t0.minute) % min(step, 1440)
    return [(off, (t0 + timedelta(minutes=off)).strftime(fmt)) for off in range(first, span, step)]


def _peak_slot(slots: dict[int, tuple[float, float]], t0: datetime | None, peak: str | None) -> int:
    when = _to_utc(peak)
    if t0 is not None and when is not None:
        slot = int((when - t0).total_seconds() // 60)
        if slot in slots:
            return slot
    # Busiest minute by deliveries; the earliest one on ties.
    return max(sorted(slots), key=lambda s: slots[s][0])


def _message_line(
    slots: dict[int, tuple[float, float]], x_at: Any, y_at: Any, slot_w: float
) -> str:
    """Messages as dots joined by a line; the line breaks where minutes are missing."""
    segments: list[str] = []
    dots: list[str] = []
    prev: int | None = None
    r = 2.5 if slot_w >= 4 else 1.5
    for slot, (_, m) in sorted(slots.items()):
        x, y = x_at(slot + 0.5), y_at(m)
        segments.append(f"{'L' if prev == slot - 1 else 'M'}{x:.1f} {y:.1f}")
        dots.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}"/>')
        prev = slot
    return (
        f'<path d="{" ".join(segments)}" fill="none" stroke="{_LINE}" stroke-width="1.5"/>'
        f'<g fill="{_LINE}">{"".join(dots)}</g>'
    )


def _no_data(width: int, label: str) -> Markup:
    height = 48
    return Markup(
        f'<svg class="timeline" role="img" aria-label="{_esc(label + ": no data")}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" {_FONT}>'
        f"<title>{_esc(label)}: no data</title>"
        f'<rect x="0.5" y="0.5" width="{width - 1}" height="{height - 1}" fill="none" '
        f'stroke="{_MUTED}" stroke-dasharray="4 3"/>'
        f"{_text(width / 2, 28, 'no data', 'middle', _AXIS)}</svg>"
    )


def _text(x: float, y: float, s: str, anchor: str, fill: str, bold: bool = False) -> str:
    weight = ' font-weight="bold"' if bold else ""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="{fill}"{weight}>'
        f"{_esc(s)}</text>"
    )


def _esc(s: str) -> Markup:
    return escape(_XML_FORBIDDEN.sub("\ufffd", str(s)))


def _slot_label(slot: int, t0: datetime | None, short: bool = False) -> str:
    if t0 is None:
        return f"minute {slot + 1}"
    return (t0 + timedelta(minutes=slot)).strftime("%H:%M" if short else "%Y-%m-%d %H:%M")


def _raw_minute(value: Any) -> str:
    text = str(value)
    return text[11:16] if len(text) >= 16 else text


def _to_utc(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        t = value
    elif isinstance(value, str):
        try:
            t = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _count(value: Any) -> float:
    try:
        n = float(value)
    except (TypeError, ValueError):
        return 0.0
    return n if math.isfinite(n) and n > 0 else 0.0


def _fmt(n: float) -> str:
    return f"{n:,.0f}" if float(n).is_integer() else f"{n:,.1f}"
