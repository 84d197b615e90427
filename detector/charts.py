"""Inline SVG charts for the static HTML reports.

The SVG is assembled from numbers and ``markupsafe.escape``-d strings only: titles may
carry subjects or addresses taken from logs, which an attacker controls. There is no
``xmlns`` attribute on purpose: inline SVG in HTML does not need one, and the reports
must contain no URLs at all. The output is also well-formed XML, so tests can parse it.

Readable on any screen: the drawing is 500 units wide with 14-unit text, so shrunk to a
phone's 370 px its text stays above 10 px; every colour meets WCAG AA against the white
background (text 4.5:1, bars and lines 3:1); both axes have ticks and gridlines. When an
incident's deliveries trail on long after its last message (retries draining), the
storm window is drawn wide and the tail compressed, with a break marking the change.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from markupsafe import Markup, escape

WIDTH, HEIGHT, DELAY_HEIGHT = 500, 270, 220
# Plot margins: the legend above, y labels left and right, time ticks below.
_LEFT, _RIGHT, _TOP, _BOTTOM = 58, 44, 62, 44
_TICK_STEPS_MIN = (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440)
_MAX_TICKS = 5
#: share of the plot's width the storm window gets when its delivery tail is compressed,
#: and how long (as a share of the storm) a tail must be before it is compressed
ZOOM_SHARE, ZOOM_FROM = 0.78, 0.5
# colours, each with its contrast against white (WCAG AA: text 4.5, graphics 3)
COLOURS = {
    "bar": "#4a86c8",  # 3.8
    "bar_peak": "#1f4e8c",  # 8.3
    "line": "#c2410c",  # 5.2
    "peak": "#b3261e",  # 6.5
    "axis": "#57606a",  # 6.4
    "muted": "#59636e",  # 6.1
    "other": "#6e40c9",  # 6.5
}
_GRID = "#d0d7de"  # gridlines: decoration, the labels carry the values
_FONT = 'font-family="system-ui, sans-serif" font-size="14"'
# Characters XML 1.0 forbids even when escaped; log text can contain them.
_XML_FORBIDDEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@dataclass(frozen=True)
class _XScale:
    """Minute slots -> x, linear, or piecewise with the tail after ``cut`` compressed."""

    x0: float
    x1: float
    span: int  # slots
    cut: int | None  # first slot of the compressed tail

    @property
    def x_cut(self) -> float:
        return self.x0 + (self.x1 - self.x0) * ZOOM_SHARE

    def x(self, slot: float) -> float:
        if self.cut is None:
            return self.x0 + slot * (self.x1 - self.x0) / self.span
        if slot <= self.cut:
            return self.x0 + slot * (self.x_cut - self.x0) / self.cut
        return self.x_cut + (slot - self.cut) * (self.x1 - self.x_cut) / (self.span - self.cut)

    def width(self, slot: int) -> float:
        return self.x(slot + 1) - self.x(slot)


def timeline_svg(
    points: Sequence[Any],
    width: int = WIDTH,
    height: int = HEIGHT,
    *,
    title: str | None = None,
    peak: str | datetime | None = None,
    storm_end: str | datetime | None = None,
    zone: tzinfo = UTC,
    zone_name: str = "UTC",
) -> Markup:
    """Deliveries per minute (bars, left scale) and messages per minute (line, right scale).

    ``points`` are ``{"minute": iso, "messages": int, "deliveries": int}``; minutes absent
    from the list are drawn as gaps. ``peak`` (ISO minute) marks the busiest minute; by
    default the minute with the most deliveries. ``storm_end`` (the last message): a
    delivery tail after it longer than half the storm is compressed. ``title`` is free
    text and is escaped.
    """
    label = title or "Deliveries and messages per minute"
    if not points:
        return _no_data(width, label)
    slots, span, ticks, t0 = _layout(points)
    if t0 is not None and zone is not UTC:  # labelled in the display zone (times compare
        t0 = t0.astimezone(zone)           # the same: they are aware)
        ticks = _time_ticks(t0, span)
    x0, x1, y0, y1 = _LEFT, width - _RIGHT, _TOP, height - _BOTTOM
    scale = _XScale(x0, x1, span, _cut(t0, span, storm_end))
    d_max = max(max(d for d, _ in slots.values()), 1)
    m_max = max(max(m for _, m in slots.values()), 1)
    d_ticks, m_ticks = _nice_ticks(d_max), _nice_ticks(m_max)
    d_top, m_top = d_ticks[-1], m_ticks[-1]
    peak_slot = _peak_slot(slots, t0, peak)

    def y_at(value: float, top: float) -> float:
        return y1 - value / top * (y1 - y0)

    peak_d, peak_m = slots[peak_slot]
    desc = (
        f"{len(slots)} minutes with traffic between {_slot_label(0, t0)} and "
        f"{_slot_label(max(slots), t0)} {zone_name}; peak at {_slot_label(peak_slot, t0)} with "
        f"{_fmt(peak_d)} deliveries and {_fmt(peak_m)} messages; "
        f"at most {_fmt(d_max)} deliveries and {_fmt(m_max)} messages in one minute."
        + _zoom_desc(scale, t0))
    out = _open(width, height, label, desc)
    out.append(_legend(x0, [("bar", "deliveries per minute (left scale)"),
                            ("line", "messages per minute (right scale)")]))
    out += _y_grid(d_ticks, lambda v: y_at(v, d_top), x0, x1, COLOURS["bar_peak"])
    out += _y_labels(m_ticks, lambda v: y_at(v, m_top), x1, COLOURS["line"])
    out += _x_axis(scale, ticks, t0, y0, y1, height, zone_name)
    # Bars centred in their minute, with a gap when wide, capped so one minute is no slab.
    for slot, (d, _) in sorted(slots.items()):
        slot_w = scale.width(slot)
        gap = slot_w * 0.12 if slot_w > 4 else 0.0
        bar_w = min(max(slot_w - 2 * gap, 0.6), 40.0)
        top = y_at(d, d_top)
        fill = COLOURS["bar_peak"] if slot == peak_slot else COLOURS["bar"]
        out.append(
            f'<rect x="{scale.x(slot + 0.5) - bar_w / 2:.1f}" y="{top:.1f}" '
            f'width="{bar_w:.1f}" height="{y1 - top:.1f}" fill="{fill}"/>')
    out.append(_message_line(slots, scale, lambda m: y_at(m, m_top)))
    # Peak marker: dashed rule through the busiest minute, labelled just above the plot
    # (clear of the bars), clamped so the label never leaves the picture.
    px = scale.x(peak_slot + 0.5)
    out.append(
        f'<line class="peak" x1="{px:.1f}" y1="{y0 - 2}" x2="{px:.1f}" y2="{y1}" '
        f'stroke="{COLOURS["peak"]}" stroke-dasharray="4 3"/>')
    lx = min(max(px, x0 + 44), x1 - 44)
    out.append(_text(lx, y0 - 6, f"peak {_slot_label(peak_slot, t0, short=True)}", "middle",
                     COLOURS["peak"], bold=True))
    out.append("</svg>")
    return Markup("".join(out))


def delay_svg(
    minutes: Sequence[Any],
    width: int = WIDTH,
    height: int = DELAY_HEIGHT,
    *,
    title: str | None = None,
    storm_end: str | datetime | None = None,
    zone: tzinfo = UTC,
    zone_name: str = "UTC",
) -> Markup:
    """The 95th-percentile delivery delay per minute of the incident's mail (line) and of
    the other mail of the same minutes (second line), on the timeline's time axis.
    ``minutes`` are ``{"minute", "incident_p95", "others_p95"}`` (seconds or None)."""
    label = title or "Delivery delay per minute (95th percentile)"
    points = [{"minute": m["minute"], "a": m["incident_p95"], "b": m["others_p95"]}
              for m in minutes]
    values = [v for p in points for v in (p["a"], p["b"]) if v is not None]
    if not values:
        return _no_data(width, label + ": no delays logged")
    times = [_to_utc(p["minute"]) for p in points]
    if any(t is None for t in times):
        return _no_data(width, label)
    t0 = min(t for t in times if t is not None).astimezone(zone)
    span = int((max(t for t in times if t is not None) - t0).total_seconds() // 60) + 1
    x0, x1, y0, y1 = _LEFT, width - _RIGHT, _TOP, height - _BOTTOM
    scale = _XScale(x0, x1, span, _cut(t0, span, storm_end))
    ticks_s = _nice_ticks(max(values), _DELAY_STEPS)
    top = ticks_s[-1]

    def y_at(v: float) -> float:
        return y1 - v / top * (y1 - y0)

    series: dict[str, dict[int, float]] = {"a": {}, "b": {}}
    for p, t in zip(points, times, strict=True):
        slot = int((t - t0).total_seconds() // 60) if t else 0
        for key in series:
            if p[key] is not None:
                series[key][slot] = float(p[key])
    worst = max(series["a"].values(), default=None)
    desc = (f"95th-percentile delay per minute from {_slot_label(0, t0)} {zone_name}: this "
            f"incident's deliveries at most {_duration(worst)}, other mail at most "
            f"{_duration(max(series['b'].values(), default=None))}." + _zoom_desc(scale, t0))
    out = _open(width, height, label, desc)
    out.append(_legend(x0, [("bar_peak", "this incident's mail"), ("other", "other mail")],
                       lines=True))
    out += _y_grid(ticks_s, y_at, x0, x1, COLOURS["axis"], unit=_duration)
    out += _x_axis(scale, _time_ticks(t0, span), t0, y0, y1, height, zone_name)
    for key, colour in (("a", COLOURS["bar_peak"]), ("b", COLOURS["other"])):
        out.append(_series_line(series[key], scale, y_at, colour))
    out.append("</svg>")
    return Markup("".join(out))


def _cut(t0: datetime | None, span: int, storm_end: str | datetime | None) -> int | None:
    """The first slot of a tail worth compressing, or None."""
    end = _to_utc(storm_end)
    if t0 is None or end is None:
        return None
    cut = int((end - t0).total_seconds() // 60) + 1
    if cut < 1 or span - cut <= cut * ZOOM_FROM:
        return None
    return cut


def _zoom_desc(scale: _XScale, t0: datetime | None) -> str:
    if scale.cut is None:
        return ""
    return (f" The storm until {_slot_label(scale.cut, t0, short=True)} takes "
            f"{ZOOM_SHARE:.0%} of the width; the delivery tail after it is compressed.")


def _open(width: int, height: int, label: str, desc: str) -> list[str]:
    return [
        f'<svg class="timeline" role="img" aria-label="{_esc(label + ". " + desc)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" {_FONT}>',
        f"<title>{_esc(label)}</title><desc>{_esc(desc)}</desc>",
    ]


def _legend(x0: float, items: list[tuple[str, str]], lines: bool = False) -> str:
    out = []
    for row, (colour, text) in enumerate(items):
        y = 18 + row * 20
        c = COLOURS[colour]
        if colour.startswith("bar") and not lines:
            out.append(f'<rect x="{x0}" y="{y - 11}" width="12" height="12" fill="{c}"/>')
        else:
            out.append(f'<line x1="{x0 - 2}" y1="{y - 5}" x2="{x0 + 14}" y2="{y - 5}" '
                       f'stroke="{c}" stroke-width="2.5"/>')
        out.append(_text(x0 + 20, y, text, "start", COLOURS["axis"]))
    return "".join(out)


def _y_grid(ticks: list[float], y_at: Callable[[float], float], x0: float, x1: float,
            colour: str, unit: Callable[[float], str] | None = None) -> list[str]:
    """Horizontal gridlines at the ticks, labelled on the left; the axes' frame."""
    y1 = y_at(0)
    out = [f'<path d="M{x0} {y_at(ticks[-1]):.1f}V{y1:.1f}H{x1}V{y_at(ticks[-1]):.1f}" '
           f'fill="none" stroke="{COLOURS["axis"]}" stroke-width="1"/>']
    for v in ticks:
        y = y_at(v)
        if v:
            out.append(f'<line class="grid" x1="{x0}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" '
                       f'stroke="{_GRID}"/>')
        out.append(f'<line x1="{x0 - 4}" y1="{y:.1f}" x2="{x0}" y2="{y:.1f}" '
                   f'stroke="{COLOURS["axis"]}"/>')
        out.append(_text(x0 - 7, y + 5, (unit or _fmt)(v), "end", colour))
    return out


def _y_labels(ticks: list[float], y_at: Callable[[float], float], x1: float,
              colour: str) -> list[str]:
    """The right-hand scale: ticks and labels, no gridlines (the left scale's serve)."""
    out = []
    for v in ticks:
        y = y_at(v)
        out.append(f'<line x1="{x1}" y1="{y:.1f}" x2="{x1 + 4}" y2="{y:.1f}" '
                   f'stroke="{COLOURS["axis"]}"/>')
        out.append(_text(x1 + 7, y + 5, _fmt(v), "start", colour))
    return out


def _x_axis(scale: _XScale, ticks: list[tuple[int, str]], t0: datetime | None, y0: float,
            y1: float, height: int, zone_name: str = "UTC") -> list[str]:
    """Time ticks with vertical gridlines; with a compressed tail, the storm's own ticks,
    a break at the cut and the tail's last minute."""
    out = []
    if scale.cut is not None and t0 is not None:
        ticks = [(s, label) for s, label in _time_ticks(t0, scale.cut) if s <= scale.cut]
        end = scale.span - 1
        ticks = [(s, label) for s, label in ticks if scale.x_cut - scale.x(s) >= 44]
        ticks += [(scale.cut, _slot_label(scale.cut, t0, short=True)),
                  (end, _slot_label(end, t0, short=True))]
        xc = scale.x_cut
        out.append(f'<line class="break" x1="{xc:.1f}" y1="{y0}" x2="{xc:.1f}" y2="{y1}" '
                   f'stroke="{COLOURS["muted"]}" stroke-dasharray="6 4"/>')
        out.append(f'<path d="M{xc - 5:.1f} {y1 + 5}L{xc - 1:.1f} {y1 - 5}M{xc + 1:.1f} '
                   f'{y1 + 5}L{xc + 5:.1f} {y1 - 5}" stroke="{COLOURS["axis"]}" fill="none"/>')
        out.append(_text((xc + scale.x1) / 2, y0 + 16, "tail", "middle", COLOURS["muted"]))
        out.append(_text((xc + scale.x1) / 2, y0 + 32, "compressed", "middle",
                         COLOURS["muted"]))
    last_x = -1e9
    for i, (slot, tick) in enumerate(ticks):
        x = scale.x(slot)
        anchor = "end" if i == len(ticks) - 1 and scale.cut is not None else "middle"
        out.append(f'<line class="grid" x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y1}" '
                   f'stroke="{_GRID}"/>')
        out.append(f'<line x1="{x:.1f}" y1="{y1}" x2="{x:.1f}" y2="{y1 + 5}" '
                   f'stroke="{COLOURS["axis"]}"/>')
        if x - last_x >= 42 or anchor == "end":  # labels never overlap
            out.append(_text(x + (4 if anchor == "end" else 0), y1 + 19, tick, anchor,
                             COLOURS["axis"]))
            last_x = x
    out.append(_text(scale.x1, height - 4, f"time ({zone_name})", "end", COLOURS["muted"]))
    return out


#: round steps of a delay axis, in seconds
_DELAY_STEPS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200,
                10800, 21600, 43200, 86400, 172800, 432000)


def _nice_ticks(top: float, steps: Sequence[float] = ()) -> list[float]:
    """0 and up to five round steps reaching ``top``: one of ``steps``, else 1, 2, 2.5 or
    5 times a power of ten (whole numbers: these are counts)."""
    for step in steps:
        n = math.ceil(max(top, step) / step)
        if n <= _MAX_TICKS:
            return [step * i for i in range(n + 1)]
    top = max(top, 1.0)
    for exponent in range(int(math.floor(math.log10(top))) - 1, 20):
        for mantissa in (1, 2, 2.5, 5):
            step = mantissa * 10**exponent
            if step < 1 and top >= 1:  # counts: whole steps
                continue
            n = math.ceil(top / step)
            if n <= _MAX_TICKS:
                return [step * i for i in range(n + 1)]
    return [0.0, top]


def _layout(
    points: Sequence[Any],
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
    if step is None:  # longer than ~5 days: whole days
        step = 1440 * math.ceil(span / _MAX_TICKS / 1440)
    fmt = "%m-%d" if step >= 1440 else "%H:%M"
    # Align ticks to round clock times (multiples of the step since midnight).
    first = -(t0.hour * 60 + t0.minute) % min(step, 1440)
    return [(off, (t0 + timedelta(minutes=off)).strftime(fmt)) for off in range(first, span, step)]


def _peak_slot(slots: dict[int, tuple[float, float]], t0: datetime | None,
               peak: str | datetime | None) -> int:
    when = _to_utc(peak)
    if t0 is not None and when is not None:
        slot = int((when - t0).total_seconds() // 60)
        if slot in slots:
            return slot
    # Busiest minute by deliveries; the earliest one on ties.
    return max(sorted(slots), key=lambda s: slots[s][0])


def _message_line(slots: dict[int, tuple[float, float]], scale: _XScale,
                  y_at: Callable[[float], float]) -> str:
    """Messages as dots joined by a line; the line breaks where minutes are missing."""
    segments: list[str] = []
    dots: list[str] = []
    prev: int | None = None
    for slot, (_, m) in sorted(slots.items()):
        x, y = scale.x(slot + 0.5), y_at(m)
        r = 3 if scale.width(slot) >= 4 else 1.8
        segments.append(f"{'L' if prev == slot - 1 else 'M'}{x:.1f} {y:.1f}")
        dots.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}"/>')
        prev = slot
    return (
        f'<path d="{" ".join(segments)}" fill="none" stroke="{COLOURS["line"]}" '
        f'stroke-width="2"/><g fill="{COLOURS["line"]}">{"".join(dots)}</g>'
    )


def _series_line(points: dict[int, float], scale: _XScale, y_at: Callable[[float], float],
                 colour: str) -> str:
    segments, dots, prev = [], [], None
    for slot, v in sorted(points.items()):
        x, y = scale.x(slot + 0.5), y_at(v)
        segments.append(f"{'L' if prev == slot - 1 else 'M'}{x:.1f} {y:.1f}")
        dots.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2"/>')
        prev = slot
    if not segments:
        return ""
    return (f'<path d="{" ".join(segments)}" fill="none" stroke="{colour}" '
            f'stroke-width="2"/><g fill="{colour}">{"".join(dots)}</g>')


def _no_data(width: int, label: str) -> Markup:
    height = 48
    return Markup(
        f'<svg class="timeline" role="img" aria-label="{_esc(label + ": no data")}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" {_FONT}>'
        f"<title>{_esc(label)}: no data</title>"
        f'<rect x="0.5" y="0.5" width="{width - 1}" height="{height - 1}" fill="none" '
        f'stroke="{COLOURS["muted"]}" stroke-dasharray="4 3"/>'
        f"{_text(width / 2, 29, 'no data', 'middle', COLOURS['axis'])}</svg>"
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


def _duration(seconds: float | None) -> str:
    """A delay as a tick label: seconds, minutes or hours."""
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:g} s"
    if seconds < 7200:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"
