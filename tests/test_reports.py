"""Static report output: files, incidents.json contract, escaping, links, overrides."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from detector.charts import timeline_svg
from detector.reports import CONTRACT_FIELDS, write_report

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


def make_incident(incident_id: str, severity: str, deliveries: int, **over: Any) -> dict:
    incident = {
        "id": incident_id,
        "kind": incident_id.split("-")[0],
        "severity": severity,
        "rule": "reply_storm",
        "list": "all.staff@nhs.example",
        "subject": "test",
        "root_message_id": "root@example",
        "start": "2016-11-14T10:02:11Z",
        "end": "2016-11-14T10:43:05Z",
        "peak": "2016-11-14T10:05:00Z",
        "messages": 40,
        "deliveries": deliveries,
        "senders": 38,
        "headline": "40 people replied to all 3,000 members of all.staff@nhs.example",
        "list_size": 3000,
        "amplification": 3000.0,
        "root": {
            "message_id": "root@example",
            "sender": HOSTILE_ADDRESS,
            "subject": "test",
            "ts": "2016-11-14T10:02:11Z",
            "deliveries": 3000,
        },
        "top_senders": [
            {"sender": HOSTILE_ADDRESS, "messages": 3, "deliveries": 9000, "first_ts": "x"}
        ],
        "timeline": [
            {"minute": f"2016-11-14T10:0{m}:00Z", "messages": m, "deliveries": 3000 * m}
            for m in range(2, 8)
        ],
        "rule_description": "Many senders reply to one thread.",
        "rule_params": {"min_replies": 10, "min_recipients": 2500},
        "window": "60m",
        "evidence": ["38 distinct senders replied"],
        "measures": {"replies": 40, "recipients": 3000},
    }
    return incident | over


STORM = "reply_storm-3f2a9c1b7d4e"
LOOP = "mail_loop-00000000000a"
FANOUT = "fanout-0123456789ab"
BOUNCE = "bounce_storm-ffffffffffff"


def incidents() -> list[dict]:
    return [
        make_incident(LOOP, "low", 10),
        make_incident(STORM, "high", 500, subject=HOSTILE_SUBJECT, list=HOSTILE_ADDRESS),
        make_incident(FANOUT, "high", 9000),
        make_incident(BOUNCE, "critical", 1),
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
def report(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    index = write_report(out, make_summary(), incidents())
    assert index == out / "index.html"
    return out


def html_files(out: Path) -> list[Path]:
    return [out / "index.html", *sorted((out / "incidents").glob("*.html"))]


def test_writes_index_pages_and_json(report: Path) -> None:
    assert (report / "index.html").is_file()
    assert (report / "incidents.json").is_file()
    pages = sorted(p.name for p in (report / "incidents").iterdir())
    assert pages == sorted(f"{i}.html" for i in (STORM, LOOP, FANOUT, BOUNCE))


def test_incidents_json_contract(report: Path) -> None:
    text = (report / "incidents.json").read_text(encoding="utf-8")
    assert text.endswith("}\n")
    doc = json.loads(text)
    assert list(doc) == ["generated_at", "incidents"]
    assert doc["generated_at"] == "2016-11-15T02:00:00Z"
    by_id = {i["id"]: i for i in incidents()}
    for record in doc["incidents"]:
        assert tuple(record)[: len(CONTRACT_FIELDS)] == CONTRACT_FIELDS
        assert record == by_id[record["id"]]  # extras, timeline included, round-trip
    assert [r["id"] for r in doc["incidents"]] == [BOUNCE, FANOUT, STORM, LOOP]


def test_json_keeps_serializable_extras_only(tmp_path: Path) -> None:
    odd = make_incident(STORM, "high", 5, amplification=float("nan"), handle=object())
    write_report(tmp_path, make_summary(), [odd])
    (record,) = json.loads((tmp_path / "incidents.json").read_text())["incidents"]
    assert record["amplification"] is None
    assert "handle" not in record


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


def test_sparse_incident_renders(tmp_path: Path) -> None:
    bare = {f: make_incident(STORM, "medium", 1)[f] for f in CONTRACT_FIELDS}
    write_report(tmp_path, {"generated_at": "2016-11-15T02:00:00Z"}, [bare])
    text = " ".join(check_page(tmp_path / "incidents" / f"{STORM}.html").text)
    assert "no data" in text or "No sender breakdown" in text


def test_stale_pages_removed(tmp_path: Path) -> None:
    write_report(tmp_path, make_summary(), incidents())
    notes = tmp_path / "incidents" / "notes.html"
    notes.write_text("mine")
    write_report(tmp_path, make_summary(), [make_incident(LOOP, "low", 10)])
    assert sorted(p.name for p in (tmp_path / "incidents").glob("*.html")) == [
        f"{LOOP}.html",
        "notes.html",
    ]
    assert not list(tmp_path.rglob("*.tmp"))


def test_user_template_overrides_by_name(tmp_path: Path) -> None:
    mine = tmp_path / "templates"
    mine.mkdir()
    (mine / "_summary.html.j2").write_text(
        "<p>CUSTOM SUMMARY {{ summary.lines|num }} {{ summary.hosts[1] }}</p>\n"
    )
    write_report(tmp_path / "out", make_summary(), incidents(), templates_dir=mine)
    index = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert "CUSTOM SUMMARY 123,456" in index
    assert "Run summary" not in index  # the built-in partial's heading
    assert HOSTILE_ADDRESS not in index  # user templates are autoescaped too


@pytest.mark.parametrize(
    "bad_id",
    ["../evil", "reply_storm-3F2A9C1B7D4E", "reply_storm-3f2a9c1b7d4", "x-3f2a9c1b7d4e\n", 7],
)
def test_invalid_id_raises_and_writes_nothing(tmp_path: Path, bad_id: Any) -> None:
    with pytest.raises(ValueError, match="invalid incident id"):
        write_report(tmp_path / "out", make_summary(), [make_incident(STORM, "low", 1, id=bad_id)])
    assert not (tmp_path / "out").exists()


def test_duplicate_id_raises(tmp_path: Path) -> None:
    twice = [make_incident(STORM, "low", 1), make_incident(STORM, "high", 2)]
    with pytest.raises(ValueError, match="duplicate"):
        write_report(tmp_path, make_summary(), twice)


def test_timeline_svg_well_formed() -> None:
    points = make_incident(STORM, "low", 1, subject=HOSTILE_SUBJECT)["timeline"]
    svg = ET.fromstring(str(timeline_svg(points, title=HOSTILE_SUBJECT + "\x1b")))
    assert svg.tag == "svg" and svg.get("role") == "img" and svg.get("aria-label")
    assert svg.findtext("title", "").startswith(HOSTILE_SUBJECT)
    assert len(svg.findall("rect")) == len(points) + 1  # bars + legend swatch
    assert svg.find("line[@class='peak']") is not None
    labels = [t.text for t in svg.iter("text")]
    assert "10:05" in labels and "21,000" in labels  # time tick, y max
    empty = ET.fromstring(str(timeline_svg([])))
    assert empty.get("role") == "img" and "no data" in empty.findtext("text", "")


def test_missing_templates_dir_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="templates folder not found"):
        write_report(tmp_path, make_summary(), [], templates_dir=tmp_path / "nope")
