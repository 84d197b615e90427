"""How a report shows what it holds: the time zone people read, and redaction.

Stored data stay UTC and whole (the warehouse, ``incidents.json``'s times); the HTML pages
show every time in the display zone with its abbreviation of that moment (BST in summer,
GMT in winter), and with ``--redact`` every page and ``incidents.json`` show addresses
with hashed local parts. Which fields of the report's views are times is said once, here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

from jinja2 import Environment

from detector.redact import Redactor, warehouse_redactor
from detector.times import display_zone, shown_time
from detector.warehouse import Warehouse

#: the times of an incident view (incidents.json record), and of its nested rows
INCIDENT_TIMES = ("start", "end", "peak", "first_reported", "last_message")
INCIDENT_ROW_TIMES: dict[str, tuple[str, ...]] = {
    "root": ("ts",), "top_senders": ("first_ts",), "what_if": ("fires_at",)}
#: the times of the run summary, and of its rows
SUMMARY_TIMES = ("generated_at", "detected_since", "detected_until")
SUMMARY_ROW_TIMES: dict[str, tuple[str, ...]] = {
    "time_span": ("start", "end"), "inputs": ("first_ts", "last_ts"), "retention": ("cut",)}


@dataclass(frozen=True)
class Display:
    """The display zone (``name`` as given, e.g. Europe/London) and the redactor, if any."""

    zone: tzinfo = UTC
    name: str = "UTC"
    redactor: Redactor | None = field(default=None)

    def redacted(self, value: Any) -> Any:
        return self.redactor.value(value) if self.redactor else value

    def time(self, value: Any, seconds: bool = True) -> Any:
        """One time as shown; what is no time (None, a dash) as it is."""
        return shown_time(value, self.zone, seconds=seconds) \
            if isinstance(value, str) or hasattr(value, "astimezone") else value

    def incident(self, view: dict[str, Any]) -> dict[str, Any]:
        """A copy of an incident view with its times shown in the zone (the timeline's
        minutes stay ISO: the chart reads them)."""
        return _shown(self, view, INCIDENT_TIMES, INCIDENT_ROW_TIMES)

    def summary(self, view: dict[str, Any]) -> dict[str, Any]:
        return _shown(self, view, SUMMARY_TIMES, SUMMARY_ROW_TIMES)

    def clock(self, value: Any, date_too: bool = False) -> str:
        """An ISO time as ``HH:MM:SS`` in the zone (``YYYY-MM-DD HH:MM:SS`` with
        ``date_too``); what is no ISO time (one already shown) as it is."""
        try:
            t = datetime.fromisoformat(str(value))
        except ValueError:
            return str(value) if value is not None else "—"
        if t.tzinfo is not None:
            t = t.astimezone(self.zone)
        return t.strftime("%Y-%m-%d %H:%M:%S" if date_too else "%H:%M:%S")

    def install(self, env: Environment) -> None:
        """Filters for templates: ``when`` (a time in the zone), ``clock`` (its clock
        time in the zone), ``delay`` (seconds)."""
        env.filters.update(when=self.time, clock=self.clock, delay=format_delay)
        env.globals.update(display_zone=self.name)


def _shown(display: Display, view: dict[str, Any], keys: tuple[str, ...],
           rows: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    out = dict(view)
    for key in keys:
        if key in out:
            out[key] = display.time(out[key])
    for key, fields in rows.items():
        value = out.get(key)
        if isinstance(value, dict):
            out[key] = {k: display.time(v) if k in fields else v for k, v in value.items()}
        elif isinstance(value, list):
            out[key] = [{k: display.time(v) if k in fields else v for k, v in row.items()}
                        if isinstance(row, dict) else row for row in value]
    return out


def format_delay(seconds: Any) -> str:
    """A delivery delay as people read it: 0.4 s, 12 s, 3 min 20 s, 2 h 5 min."""
    if not isinstance(seconds, int | float) or seconds != seconds:  # None, NaN
        return "—"
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        minutes, secs = divmod(whole, 60)
        return f"{minutes} min" + (f" {secs} s" if secs else "")
    return f"{whole // 3600} h {whole % 3600 // 60} min"


@dataclass(frozen=True)
class DisplayOptions:
    """What ``--display-tz`` and ``--redact`` ask for, before a warehouse is open (the
    redaction key lives in it)."""

    zone: str = "UTC"
    redact: bool = False


def display_for(wh: Warehouse, options: DisplayOptions | None) -> Display:
    options = options or DisplayOptions()
    return Display(zone=display_zone(options.zone), name=options.zone,
                   redactor=warehouse_redactor(wh) if options.redact else None)
