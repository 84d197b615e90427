"""Static report output: files, incidents.json contract, escaping, links, overrides."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from detector import pipeline
from detector.charts import timeline_svg
from detector.incidents import CONTRACT_FIELDS, Incident
from detector.reports import write_report
from tests.logsynth import Site, storm, write_log

HOSTILE_SUBJECT = "<script>alert(1)</script>"
HOSTILE_ADDRESS = '"><img src=x onerror=alert(1)>@x'
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


def make_summary(**over: Any) -> dict[str, Any]:
    summary = {
        "generated_at": "2016-11-15T02:00:00Z",
        "version": "0.1.0",
        "inputs": [
            {
                "path": "/var/log/mail.log",
                "format": "postfix",
                "host": "mx1",
                "lines": 123456,
                "unparsed": 2,
                "first_ts": "2016-11-14T00:00:01Z",
                "last_ts": "2016-11-14T23:59:59Z",
                "skipped": False,
            }
        ],
        "lines": 123456,
        "kinds": [{"kind": "smtp", "lines": 100000}, {"kind": "unparsed", "lines": 2}],
        "unparsed": 2,
        "unparsed_samples": [
            {"source_file": "/var/log/mail.log", "line_no": 7, "raw": f"junk {HOSTILE_SUBJECT}"}
        ],
        "time_span": {"start": "2016-11-14T00:00:01Z", "end": "2016-11-14T23:59:59Z"},
        "messages": 5000,
        "deliveries": 250000,
        "hosts": ["mx1", HOSTILE_ADDRESS],
        "rules": [{"name": "reply_storm", "kind": "reply_storm", "params": {"min_replies": 10}}],
    }
    return summary | over


LIST = "all.staff@site.example"
START = datetime(2016, 11, 14, 9, 58)


@pytest.fixture(scope="module")
def found(tmp_path_factory: pytest.TempPathFactory) -> list[Incident]:
    """Real incidents from the real rules: a storm whose subject is hostile text, logged
    as a Postfix header_checks line would log it."""
    tmp = tmp_path_factory.mktemp("real")
    site = Site(lists={LIST: [f"m{i}@site.example" for i in range(30)]})
    write_log(tmp / "mail.log", site, storm(site, list_addr=LIST, start=START, repliers=12,
                                            subject=HOSTILE_SUBJECT))
    result = pipeline.run([str(tmp / "mail.log")], tmp / "out", tz="UTC", year=2016,
                          overrides={"reply_storm.min_audience": "20"})
    assert [i.kind for i in result.incidents] == ["reply_storm"]
    assert result.incidents[0].subject == HOSTILE_SUBJECT
    return result.incidents


STORM = "reply_storm-3f2a9c1b7d4e"
LOOP = "mail_loop-00000000000a"
FANOUT = "fanout-0123456789ab"
BOUNCE = "bounce_storm-ffffffffffff"


def variant(real: Incident, incident_id: str, severity: str, deliveries: int,
            **over: Any) -> Incident:
    """The real storm under another id, severity and size (for order and page tests)."""
    return replace(real, id=incident_id, kind=incident_id.split("-")[0], severity=severity,
                   deliveries=deliveries, **over)


@pytest.fixture
def incidents(found: list[Incident]) -> list[Incident]:
    real = found[0]
    root = replace(real.root, sender=HOSTILE_ADDRESS) if real.root else None
    return [
        variant(real, LOOP, "low", 10),
        variant(real, STORM, "high", 500, list=HOSTILE_ADDRESS, root=root),
        variant(real, FANOUT, "high", 9000),
        variant(real, BOUNCE, "critical", 1),
    ]


class PageChecker(HTMLParser):
    """Checks tags nest and close, and collects links, tags, attributes and text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.hrefs: list[str] = []
        self.tags: set[str] = set()
        self.attrs: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.add(tag)
        self.attrs.update(name for name, _ in attrs)
        self.hrefs += [value for name, value in attrs if tag == "a" and name == "href"]
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        self.tags.add(tag)
        self.attrs.update(name for name, _ in attrs)

    def handle_endtag(self, tag: str) -> None:
        if self.stack and self.stack[-1] == tag:
            self.stack.pop()
        else:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def check_page(path: Path) -> PageChecker:
    checker = PageChecker()
    checker.feed(path.read_text(encoding="utf-8"))
    checker.close()
    assert checker.errors == [], path
    assert checker.stack == [], f"{path}: unclosed {checker.stack}"
    return checker


@pytest.fixture
def report(tmp_path: Path, incidents: list[Incident]) -> Path:
    out = tmp_path / "out"
    index = write_report(out, make_summary(), incidents)
    assert index == out / "index.html"
    return out


def html_files(out: Path) -> list[Path]:
    return [out / "index.html", *sorted((out / "incidents").glob("*.html"))]


def test_writes_index_pages_and_json(report: Path) -> None:
    assert (report / "index.html").is_file()
    assert (report / "incidents.json").is_file()
    pages = sorted(p.name for p in (report / "incidents").iterdir())
    assert pages == sorted(f"{i}.html" for i in (STORM, LOOP, FANOUT, BOUNCE))


def test_incidents_json_contract(report: Path, incidents: list[Incident]) -> None:
    text = (report / "incidents.json").read_text(encoding="utf-8")
    assert text.endswith("}\n")
    doc = json.loads(text)
    assert list(doc) == ["generated_at", "incidents"]
    assert doc["generated_at"] == "2016-11-15T02:00:00Z"
    by_id = {i.id: i for i in incidents}
    for record in doc["incidents"]:
        assert tuple(record)[: len(CONTRACT_FIELDS)] == CONTRACT_FIELDS
        assert record == by_id[record["id"]].to_record()  # evidence too, round-trip
        assert record["status"] == "new"
        assert record["start"] == "2016-11-14T09:58:00Z"
    assert [r["id"] for r in doc["incidents"]] == [BOUNCE, FANOUT, STORM, LOOP]


def test_json_has_no_nan(tmp_path: Path, found: list[Incident]) -> None:
    odd = replace(found[0], amplification=float("nan"))
    write_report(tmp_path, make_summary(), [odd])
    (record,) = json.loads((tmp_path / "incidents.json").read_text())["incidents"]
    assert record["amplification"] is None


def test_hostile_strings_escaped_everywhere(report: Path) -> None:
    for path in html_files(report):
        html = path.read_text(encoding="utf-8")
        assert HOSTILE_SUBJECT not in html, path
        assert HOSTILE_ADDRESS not in html, path
        assert "<img" not in html, path
        checker = check_page(path)
        assert "img" not in checker.tags
        assert not any(a.startswith("on") for a in checker.attrs), path
    index = (report / "index.html").read_text(encoding="utf-8")
    page = (report / "incidents" / f"{STORM}.html").read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in index
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;@x" in page
    # Shown to the reader as text, not dropped.
    assert HOSTILE_SUBJECT in "".join(check_page(report / "incidents" / f"{STORM}.html").text)


def test_svg_title_escapes_subject(report: Path) -> None:
    page = (report / "incidents" / f"{STORM}.html").read_text(encoding="utf-8")
    start = page.index("<svg")
    svg = ET.fromstring(page[start : page.index("</svg>", start) + len("</svg>")])
    assert HOSTILE_SUBJECT in svg.findtext("title", "")
    assert HOSTILE_SUBJECT in svg.get("aria-label", "")


def test_no_network_no_javascript(report: Path) -> None:
    for path in html_files(report):
        html = path.read_text(encoding="utf-8")
        lowered = html.lower()
        assert "http://" not in lowered and "https://" not in lowered, path
        assert "<script" not in lowered, path
        assert "default-src 'none'" in html
        assert '<meta charset="utf-8">' in html


def test_index_links_rows_to_existing_pages(report: Path) -> None:
    checker = check_page(report / "index.html")
    links = [h for h in checker.hrefs if h.startswith("incidents/")]
    assert links == [f"incidents/{i}.html" for i in (BOUNCE, FANOUT, STORM, LOOP)]
    for link in links:
        assert (report / link).is_file()
    for page in (report / "incidents").glob("*.html"):
        assert "../index.html" in check_page(page).hrefs


def test_index_shows_summary_numbers(report: Path) -> None:
    text = " ".join(check_page(report / "index.html").text)
    for expected in ("123,456", "250,000", "5,000", "9,000", "reply_storm", "min_replies"):
        assert expected in text
    assert "No incidents found" not in text


def test_no_incidents(tmp_path: Path) -> None:
    write_report(tmp_path, make_summary(), [])
    assert "No incidents found" in (tmp_path / "index.html").read_text(encoding="utf-8")
    assert json.loads((tmp_path / "incidents.json").read_text())["incidents"] == []


def test_incident_with_contract_fields_only_renders(tmp_path: Path,
                                                    found: list[Incident]) -> None:
    real = found[0]
    bare = Incident(**{f: getattr(real, f) for f in CONTRACT_FIELDS})
    write_report(tmp_path, {"generated_at": "2016-11-15T02:00:00Z"}, [bare])
    text = " ".join(check_page(tmp_path / "incidents" / f"{real.id}.html").text)
    assert "no data" in text or "No sender breakdown" in text


def test_stale_pages_removed(tmp_path: Path, incidents: list[Incident]) -> None:
    write_report(tmp_path, make_summary(), incidents)
    notes = tmp_path / "incidents" / "notes.html"
    notes.write_text("mine")
    write_report(tmp_path, make_summary(), [incidents[0]])
    assert sorted(p.name for p in (tmp_path / "incidents").glob("*.html")) == [
        f"{LOOP}.html",
        "notes.html",
    ]
    assert not list(tmp_path.rglob("*.tmp"))


def test_user_template_overrides_by_name(tmp_path: Path, incidents: list[Incident]) -> None:
    mine = tmp_path / "templates"
    mine.mkdir()
    (mine / "_summary.html.j2").write_text(
        "<p>CUSTOM SUMMARY {{ summary.lines|num }} {{ summary.hosts[1] }}</p>\n"
    )
    write_report(tmp_path / "out", make_summary(), incidents, templates_dir=mine)
    index = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert "CUSTOM SUMMARY 123,456" in index
    assert "Run summary" not in index  # the built-in partial's heading
    assert HOSTILE_ADDRESS not in index  # user templates are autoescaped too


@pytest.mark.parametrize(
    "bad_id",
    ["../evil", "reply_storm-3F2A9C1B7D4E", "reply_storm-3f2a9c1b7d4", "x-3f2a9c1b7d4e\n"],
)
def test_invalid_id_raises_and_writes_nothing(tmp_path: Path, bad_id: str,
                                              found: list[Incident]) -> None:
    with pytest.raises(ValueError, match="invalid incident id"):
        write_report(tmp_path / "out", make_summary(), [replace(found[0], id=bad_id)])
    assert not (tmp_path / "out").exists()


def test_duplicate_id_raises(tmp_path: Path, found: list[Incident]) -> None:
    twice = [variant(found[0], STORM, "low", 1), variant(found[0], STORM, "high", 2)]
    with pytest.raises(ValueError, match="duplicate"):
        write_report(tmp_path, make_summary(), twice)


def test_timeline_svg_well_formed() -> None:
    points = [{"minute": f"2016-11-14T10:0{m}:00Z", "messages": m, "deliveries": 3000 * m}
              for m in range(2, 8)]
    svg = ET.fromstring(str(timeline_svg(points, title=HOSTILE_SUBJECT + "\x1b")))
    assert svg.tag == "svg" and svg.get("role") == "img" and svg.get("aria-label")
    assert svg.findtext("title", "").startswith(HOSTILE_SUBJECT)
    assert len(svg.findall("rect")) == len(points) + 1  # bars + legend swatch
    assert svg.find("line[@class='peak']") is not None
    labels = [t.text for t in svg.iter("text")]
    # round time ticks, and round y ticks from 0 up past the busiest minute (21,000)
    assert {"10:02", "10:04", "10:06"} <= set(labels)
    assert {"0", "5,000", "20,000", "25,000"} <= set(labels) and "30,000" not in labels
    empty = ET.fromstring(str(timeline_svg([])))
    assert empty.get("role") == "img" and "no data" in empty.findtext("text", "")


def test_missing_templates_dir_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="templates folder not found"):
        write_report(tmp_path, make_summary(), [], templates_dir=tmp_path / "nope")


def test_reports_are_bounded_and_show_what_hides(tmp_path: Path) -> None:
    # issue 12.2: a runaway unparsed line is cut, a flood of hosts summarised, and text
    # that reorders or hides itself (a bidi override, a zero-width space) shown as escapes
    long_line = "x" * 5000
    hosts = [f"h{i:03d}" for i in range(250)] + ["evil\u202egnp.exe", "zero\u200bwidth"]
    summary = make_summary(hosts=hosts, unparsed_samples=[
        {"source_file": "/var/log/mail.log", "line_no": 9, "raw": long_line}])
    write_report(tmp_path, summary, [])
    index = (tmp_path / "index.html").read_text()
    assert "x" * 300 + "… (4,700 more characters)" in index
    assert "x" * 301 not in index
    assert "252: " in index and "and 52 more" in index
    assert "<code>h199</code>" in index and "<code>h200</code>" not in index
    assert "\u202e" not in index and "\u200b" not in index
    summary = make_summary(hosts=["evil\u202egnp.exe"])
    write_report(tmp_path, summary, [])
    assert "<code>evil\\u202egnp.exe</code>" in (tmp_path / "index.html").read_text()
