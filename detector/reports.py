"""Static HTML reports and ``incidents.json`` (see DESIGN.md, "Output contract").

Subjects, addresses and raw lines in a summary or an incident come from logs that an
attacker can write to, so the templates autoescape everything and nothing here marks data
as safe; the only ``Markup`` is the chart, built from numbers and escaped text.
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import date, datetime
from pathlib import Path
from typing import Any

from jinja2 import (
    BaseLoader,
    BytecodeCache,
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
)
from jinja2.bccache import Bucket
from markupsafe import Markup

from detector import __version__, assets
from detector.charts import delay_svg, timeline_svg
from detector.daychart import traffic_svg
from detector.dayview import hours_of
from detector.display import Display
from detector.incidents import SEVERITIES, Incident, severity_rank
from detector.incidents.advice import next_steps
from detector.incidents.details import Details
from detector.incidents.exports import DELIVERIES_CSV, MESSAGES_CSV, Writer
from detector.incidents.impact import format_seconds
from detector.publish import PAGES_DIR, FileContent, publish_files
from detector.times import GUESSED_YEAR, iso_z

# Ids become file names: allow nothing that could climb out of the pages folder.
_ID_RE = re.compile(r"[a-z_]+-[0-9a-f]{12}")
# C0 controls other than tab/newline, shown as \xNN in raw log samples.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# characters that reorder or hide text (bidirectional overrides and isolates, zero-width
# joiners and spaces): a subject or address from a log could make the page say what the
# log does not ("Trojan Source"); shown as \uXXXX wherever they appear
_INVISIBLE = re.compile("[\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
#: longest raw line shown as an unparsed sample (the rest is counted, not shown)
SAMPLE_CHARS = 300
#: most hosts listed by name in the summary
LISTED_HOSTS = 200

# Keys the templates read, with what to show when a summary lacks them, so
# StrictUndefined still catches template typos but sparse data renders.
_SUMMARY_KEYS: dict[str, Any] = {
    "version": __version__, "inputs": [], "lines": None, "kinds": [], "unparsed": None,
    "unparsed_samples": [], "time_span": {}, "messages": None, "deliveries": None,
    "hosts": [], "rules": [],
}  # fmt: skip
_ROW_KEYS = {
    "inputs": ("path", "format", "host", "lines", "unparsed", "first_ts", "last_ts", "skipped",
               "why", "year_source"),
    "kinds": ("kind", "lines", "formats"),
    "unparsed_samples": ("source_file", "line_no", "raw"),
    "rules": ("name", "kind", "params"),
}


def write_report(
    out_dir: Path,
    summary: dict[str, Any],
    incidents: Sequence[Incident],
    templates_dir: Path | None = None,
    details: Mapping[str, Details] | None = None,
    exports: Mapping[str, Writer] | None = None,
    *,
    day: dict[str, Any] | None = None,
    display: Display | None = None,
) -> Path:
    """Write index.html, incidents/<id>.html and incidents.json; return index.html's path.

    ``day`` (``dayview.day_overview``) adds the day overview, ``day.html``; ``display``
    says the zone the pages show times in and whether addresses are redacted
    (default: UTC, not redacted).

    ``templates_dir`` holds user templates that override the built-in ones by file name.
    ``details`` (read from the warehouse, ``incidents.details``) and ``exports`` (CSV
    writers by file name, ``incidents.exports``) add to each incident's page; a report
    without them shows what the incidents themselves hold.
    Everything is rendered before anything is written (a bad id or template writes
    nothing), then published as one folder (``publish.publish_files``): no reader sees
    half a file or parts of two reports.
    """
    if "generated_at" not in summary:
        raise ValueError("summary has no 'generated_at'")
    ordered = sort_incidents(incidents)
    records = [incident_record(i) for i in ordered]
    ids = [r["id"] for r in records]
    duplicated = sorted(k for k, n in Counter(ids).items() if n > 1)
    if duplicated:
        raise ValueError(f"duplicate incident ids: {', '.join(duplicated)}")

    display = display or Display()
    records = display.redacted(records)
    env = make_environment(templates_dir)
    display.install(env)
    views = [_incident_view(r) for r in records]
    common = {
        "summary": display.summary(_summary_view(display.redacted(summary))),
        "generated_at": display.time(_plain(summary["generated_at"])),
        "version": summary.get("version") or __version__,
        "day_page": day is not None,
    }
    page_tpl = env.get_template("incident.html.j2")
    by_id = {i.id: i for i in ordered}
    pages = {
        v["id"]: page_tpl.render(incident=display.incident(v), chart=_chart(v, display), root="../",
                                 **_page_extras(by_id[v["id"]], (details or {}).get(v["id"]),
                                                exports or {}, display),
                                 **common)
        for v in views
    }
    shown = [display.incident(v) for v in views]
    index = env.get_template("index.html.j2").render(
        incidents=shown, severity_counts=_severity_counts(views), root="", **common
    )
    doc = {"generated_at": _plain(summary["generated_at"]), "incidents": records}
    extra = {} if day is None else {
        "day.html": _day_page(env, display.redacted(day), views, display, common)}

    files: dict[str, FileContent] = {
        f"{PAGES_DIR}/{incident_id}.html": html for incident_id, html in pages.items()}
    # an incident's CSVs (named <id>-<what>.csv) beside its page (redacted as it is)
    files.update({f"{PAGES_DIR}/{name}": write for name, write in (exports or {}).items()
                  if name.rsplit("-", 1)[0] in pages})
    files["incidents.json"] = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    files.update(extra)
    files["index.html"] = index  # last: it links to the pages above
    return publish_files(Path(out_dir), files)


def _day_page(env: Environment, day: dict[str, Any], incidents: list[dict[str, Any]],
              display: Display, common: dict[str, Any]) -> str:
    """The day overview: its chart (incidents shaded), and each bucket's incidents
    (``incidents``: the views, whose times are still ISO)."""
    traffic = day["traffic"]
    active = [hours_of(r["start"], r["end"], incidents) for r in traffic]
    chart = traffic_svg(traffic, [bool(a) for a in active], display.zone,
                        bucket=day["bucket"])
    return env.get_template("day.html.j2").render(
        day=day, traffic=list(zip(traffic, active, strict=True)), chart=chart, root="",
        **common)


class _CompiledTemplates(BytecodeCache):
    """Compiled templates kept for the life of the process, by name and source checksum:
    a second report in one process (the test suite, a caller reporting again) does not
    compile them again; an edited template is compiled afresh."""

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: Bucket) -> None:
        code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: Bucket) -> None:
        self._code[bucket.key] = bucket.bytecode_to_string()


_COMPILED = _CompiledTemplates()


def make_environment(templates_dir: Path | None = None) -> Environment:
    """Jinja environment over the user's templates (if any) then the built-in ones."""
    loaders: list[BaseLoader] = [FileSystemLoader(assets.builtin_templates_dir())]
    if templates_dir is not None:
        if not Path(templates_dir).is_dir():
            raise ValueError(f"templates folder not found: {templates_dir}")
        loaders.insert(0, FileSystemLoader(templates_dir))
    env = Environment(
        loader=ChoiceLoader(loaders),
        # Everything, whatever the file extension: .j2 would escape nothing otherwise.
        autoescape=True,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_shown,
        bytecode_cache=_COMPILED,
    )
    env.filters.update(
        num=format_number, pct=format_percent, severity_class=severity_class, visible=visible,
        clip=clip, clock=Display().clock, seconds=format_seconds,
    )
    env.globals.update(LISTED_HOSTS=LISTED_HOSTS)
    env.globals.update(timeline_svg=timeline_svg, SEVERITIES=SEVERITIES)
    env.globals.update(display_zone="UTC")  # Display.install names the zone shown
    return env


def sort_incidents(incidents: Sequence[Incident]) -> list[Incident]:
    """Most severe first, then most deliveries, then earliest; id breaks ties."""
    return sorted(incidents, key=lambda i: (-severity_rank(i.severity), -i.deliveries,
                                            i.start, i.id))


def incident_record(incident: Incident) -> dict[str, Any]:
    """The incidents.json form: contract fields in order, then the evidence."""
    if not _ID_RE.fullmatch(incident.id):
        raise ValueError(f"invalid incident id {incident.id!r}: expected kind-<12 hex digits>")
    return incident.to_record()


def format_number(value: Any, digits: int | None = None) -> str:
    """Thousands separators; floats get ``digits`` decimals, or up to two by default."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        f = float(value)
        if not math.isfinite(f):
            return "n/a"
        if digits is not None:
            return f"{f:,.{digits}f}"
        if f.is_integer():
            return f"{f:,.0f}"
        return f"{f:,.2f}".rstrip("0").rstrip(".") if abs(f) >= 1 else f"{f:.3g}"
    return str(value)


def format_percent(share: Any) -> str:
    """A 0..1 share as a percentage that never rounds a few lines down to 0%."""
    if not isinstance(share, numbers.Real) or not math.isfinite(share):
        return "—"
    pct = 100 * float(share)
    if 0 < pct < 0.1:
        return "<0.1%"
    return f"{pct:.1f}%" if pct < 10 else f"{pct:,.0f}%"


def severity_class(severity: Any) -> str:
    """CSS class of a severity badge; unknown values get a neutral one."""
    return f"sev-{severity}" if severity in SEVERITIES else "sev-unknown"


def visible(text: Any) -> str:
    """Show control characters of raw log lines as \\xNN instead of passing them through."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


def _shown(value: Any) -> Any:
    """Every value a template prints: None as a dash, text with its invisible characters
    made visible."""
    if value is None:
        return "—"
    if isinstance(value, str) and not isinstance(value, Markup):  # ours: already safe
        return _INVISIBLE.sub(lambda m: f"\\u{ord(m.group()):04x}", value)
    return value


def clip(text: Any, limit: int = SAMPLE_CHARS) -> str:
    """At most ``limit`` characters of ``text``, saying how many were left out."""
    text = str(text)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit:,} more characters)"


def _plain(value: Any) -> Any:
    """A JSON-ready copy; TypeError for what JSON cannot hold. NaN/inf become null."""
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, datetime):
        return iso_z(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("dict keys must be strings")
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    raise TypeError(f"not JSON-serializable: {type(value).__name__}")


def _rows(rows: Any, keys: tuple[str, ...]) -> list[dict[str, Any]]:
    return [{**dict.fromkeys(keys), **row} for row in rows or [] if isinstance(row, dict)]


def _summary_view(summary: dict[str, Any]) -> dict[str, Any]:
    view = dict(_SUMMARY_KEYS)
    for key, value in summary.items():
        with contextlib.suppress(TypeError):
            view[key] = _plain(value)
    for key in ("inputs", "kinds", "unparsed_samples", "rules"):
        view[key] = _rows(view[key], _ROW_KEYS[key])
    view["time_span"] = {"start": None, "end": None, **(view["time_span"] or {})}
    view["hosts"] = view["hosts"] or []
    lines, unparsed = view["lines"], view["unparsed"]
    numeric = isinstance(lines, int | float) and isinstance(unparsed, int | float)
    view["unparsed_share"] = unparsed / lines if numeric and lines > 0 else None
    # lines of programs that carry no mail (dovecot, cron...): stored, not read as mail,
    # so never counted among the parsed ones
    # files whose year-less stamps got their year from a modification time: a copied or
    # touched file would date a whole log wrong
    view["guessed_years"] = sum(1 for i in view["inputs"]
                                if str(i["year_source"] or "").startswith(GUESSED_YEAR))
    foreign = sum(int(k["lines"] or 0) for k in view["kinds"] if k["kind"] == "foreign")
    view["foreign"] = foreign
    view["foreign_share"] = foreign / lines if isinstance(lines, int | float) and lines > 0 \
        else None
    return view


def _incident_view(record: dict[str, Any]) -> dict[str, Any]:
    view = dict(record)
    view["page"] = f"{PAGES_DIR}/{view['id']}.html"
    view["duration"] = _duration(view["start"], view["end"])
    # the storm itself (first to last message), apart from its deliveries draining after
    view["storm_duration"] = _duration(view["start"], view.get("last_message") or view["end"])
    view["why"] = _condition_rows(view["conditions"], view["measures"])
    return view


_OPS = {">=": "≥", ">": ">", "<=": "≤", "<": "<", "==": "="}


def _condition_rows(conditions: list[dict[str, Any]],
                    measures: dict[str, Any]) -> list[dict[str, Any]]:
    """The rule's own conditions (measure op param), then the other measures recorded."""
    rows = [{"parameter": c["param"], "op": _OPS.get(c["op"], c["op"]),
             "threshold": c["threshold"], "measure": c["measure"], "measured": c["value"]}
            for c in conditions]
    used = {c["measure"] for c in conditions}
    return rows + [{"parameter": None, "op": None, "threshold": None, "measure": k,
                    "measured": v} for k, v in measures.items() if k not in used]


def _duration(start: Any, end: Any) -> str | None:
    try:
        seconds = int((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds())
    except (TypeError, ValueError):  # missing, unparsable, or naive mixed with aware
        return None
    if seconds < 0:
        return None
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        minutes, secs = divmod(seconds, 60)
        return f"{minutes} min" + (f" {secs} s" if secs else "")
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"


def _chart(view: dict[str, Any], display: Display) -> Any:
    about = view["subject"] or view["list"] or view["id"]
    return timeline_svg(
        view["timeline"], title=f"Deliveries and messages per minute: {about}", peak=view["peak"],
        storm_end=view.get("last_message"), zone=display.zone, zone_name=display.name,
    )


def _page_extras(incident: Incident, details: Details | None,
                 exports: Mapping[str, Writer], display: Display) -> dict[str, Any]:
    """What an incident's page shows beyond its record: its details read from the
    warehouse (None without them), the next steps, the delay chart, its CSVs' names;
    addresses redacted as ``display`` says."""
    csv = {kind: incident.id + suffix for kind, suffix in
           (("messages", MESSAGES_CSV), ("deliveries", DELIVERIES_CSV))
           if incident.id + suffix in exports}
    view = display.redacted(_plain(asdict(details))) if details is not None else None
    delay_chart = None
    if details is not None and details.impact is not None and details.impact.minutes:
        delay_chart = delay_svg(view["impact"]["minutes"] if view else [],
                                title="Delivery delay per minute (95th percentile)",
                                storm_end=incident.last_message, zone=display.zone,
                                zone_name=display.name)
    return {"details": view,
            "steps": display.redacted([asdict(s) for s in next_steps(incident, details)]),
            "csv": csv, "delay_chart": delay_chart}


def _severity_counts(views: list[dict[str, Any]]) -> list[tuple[str, int]]:
    counts = Counter(str(v["severity"]) for v in views)
    return [(s, counts[s]) for s in reversed(SEVERITIES) if counts[s]] + [
        (s, n) for s, n in counts.items() if s not in SEVERITIES
    ]


