"""The incident page a reviewer can act on (issue 13, points 1, 2, 3 and 5), on the demo.

Every expectation comes from outside the code under test: the sample's ``truth.json``
and the raw lines of ``sample_logs/mail.log`` (and of the day before), read here with
regular expressions of their own; colour contrast from the WCAG formula.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
import statistics
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from email.header import decode_header, make_header
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from detector.charts import timeline_svg
from detector.cli import main
from detector.incidents.impact import format_seconds
from tests.logsynth import Site, storm, write_log

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_logs"
[TRUTH] = json.loads((SAMPLES / "truth.json").read_text())
_DELIVERY = re.compile(r"^(\w{3} +\d+ [\d:]{8}) \S+ postfix/\w+\[\d+\]: ([0-9A-F]+): "
                       r"to=<([^>]*)>,(?: orig_to=<([^>]*)>,)?.* delay=([\d.]+),.* "
                       r"dsn=([\d.]+), status=(\w+)")


def invoke(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _ts(stamp: str) -> datetime:
    return datetime.strptime(f"2016 {stamp}", "%Y %b %d %H:%M:%S").replace(tzinfo=UTC)


def _deliveries(lines: list[str]) -> list[dict[str, Any]]:
    out = []
    for line in lines:
        m = _DELIVERY.match(line)
        if m:
            out.append({"ts": _ts(m[1]), "qid": m[2], "to": m[3], "orig_to": m[4] or m[3],
                        "delay": float(m[5]), "dsn": m[6], "status": m[7]})
    return out


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    """The storm as the raw log shows it: its queue ids, subjects and delivery lines, and
    every delivery line of both days."""
    today = (SAMPLES / "mail.log").read_text().splitlines()
    before = gzip.decompress((SAMPLES / "mail.log.1.gz").read_bytes()).decode().splitlines()
    ids = set(TRUTH["message_ids"])
    qids = {m[1]: m[2] for line in today
            if (m := re.search(r" ([0-9A-F]+): message-id=<([^>]+)>", line)) and m[2] in ids}
    subjects = {}
    for line in today:
        m = re.search(r" ([0-9A-F]+): info: header Subject: (.*) from \S+\[[^\]]*\]; from=", line)
        if m and m[1] in qids:
            subjects[qids[m[1]]] = str(make_header(decode_header(m[2])))
    every = _deliveries(before + today)
    return {"qids": qids, "subjects": subjects, "every": every,
            "storm": [d for d in every if d["qid"] in qids]}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's demo, once for the module."""
    out = tmp_path_factory.mktemp("demo")
    res = invoke("run", str(SAMPLES), "--year", "2016", "--tz", "UTC", "--display-tz", "UTC",
                 "--out", str(out), "-q")
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def incident(demo: Path) -> dict[str, Any]:
    doc = json.loads((demo / "incidents.json").read_text())
    [inc] = [i for i in doc["incidents"] if i["kind"] == "reply_storm"]
    return inc


@pytest.fixture(scope="module")
def page(demo: Path, incident: dict[str, Any]) -> str:
    return (demo / "incidents" / f"{incident['id']}.html").read_text()


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def text_of(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    return re.sub(r"\s+", " ", " ".join(parser.parts))


def section(page: str, name: str) -> str:
    m = re.search(rf'<section id="{name}">(.*?)</section>', page, re.S)
    assert m, f"no section {name}"
    return m[1]


def rows_of(html: str) -> list[list[str]]:
    """The body rows of the tables in ``html``, as cell texts."""
    return [[text_of(c).strip() for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S)]
            for body in re.findall(r"<tbody>(.*?)</tbody>", html, re.S)
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_storm_duration_apart_from_the_delivery_tail(page: str, incident: dict[str, Any],
                                                     raw: dict[str, Any]) -> None:
    start, last = (datetime.fromisoformat(TRUTH[k]) for k in ("start", "end"))
    minutes, seconds = divmod(int((last - start).total_seconds()), 60)
    drained = max(d["ts"] for d in raw["storm"])  # the storm's last delivery line
    facts = text_of(section(page, "facts"))
    assert f"Storm (first to last message) {minutes} min {seconds} s" in facts
    assert f"Deliveries drained until (UTC) {drained:%Y-%m-%d %H:%M:%S} UTC" in facts
    assert incident["end"] == f"{drained:%Y-%m-%dT%H:%M:%SZ}"  # the contract field as before
    assert "Duration 3 h" not in facts


def test_every_message_listed_with_its_root_marked(demo: Path, page: str,
                                                   incident: dict[str, Any]) -> None:
    rows = read_csv(demo / "incidents" / f"{incident['id']}-messages.csv")
    assert sorted(r["message_id"] for r in rows) == sorted(TRUTH["message_ids"])
    assert [r["message_id"] for r in rows if r["root"] == "true"] == [TRUTH["root_message_id"]]
    assert {r["automatic"] for r in rows} == {"false"}  # the vacation notices are apart
    shown = rows_of(section(page, "messages"))
    assert len(shown) == TRUTH["messages"]
    roots = [r for r in shown if "root" in r[0]]
    assert len(roots) == 1 and roots[0][2] == TRUTH["root_sender"]
    assert sum(int(r[5].replace(",", "")) for r in shown) == TRUTH["deliveries"]


def test_repliers_complete_and_the_root_sender_is_none(page: str) -> None:
    rows = rows_of(section(page, "top-senders"))
    assert sorted(r[0] for r in rows) == sorted(TRUTH["replier_addresses"])
    assert sum(int(r[1]) for r in rows) == TRUTH["replies"]
    assert TRUTH["root_sender"] not in text_of(section(page, "top-senders"))


def test_the_replies_subjects_tell_the_story(page: str, raw: dict[str, Any]) -> None:
    said = text_of(section(page, "subjects"))
    assert set(raw["subjects"]) == set(TRUTH["message_ids"])
    for subject in raw["subjects"].values():
        assert f"“{subject}”" in said, subject
    for plea in ("PLEASE REMOVE ME", "Unsubscribe", "please remove me from this list"):
        assert f"“{plea}” (asks to be removed" in said


def test_deliveries_csv_holds_every_attempt_of_the_log(demo: Path, incident: dict[str, Any],
                                                       raw: dict[str, Any]) -> None:
    rows = read_csv(demo / "incidents" / f"{incident['id']}-deliveries.csv")
    assert Counter(r["status"] for r in rows) == Counter(d["status"] for d in raw["storm"])
    assert sum(1 for r in rows if r["status"] != "deferred") == TRUTH["deliveries"]
    assert {r["message_id"] for r in rows} == set(TRUTH["message_ids"])
    page_links = re.findall(r'href="([^"#]+\.csv)"', (demo / "incidents" /
                                                      f"{incident['id']}.html").read_text())
    assert set(page_links) == {f"{incident['id']}-messages.csv",
                               f"{incident['id']}-deliveries.csv"}


def test_bounces_and_deferrals_by_reason(page: str, raw: dict[str, Any]) -> None:
    bounced = [d for d in raw["storm"] if d["status"] == "bounced"]
    deferred = [d for d in raw["storm"] if d["status"] == "deferred"]
    dead = {d["to"] for d in bounced}
    said = text_of(section(page, "failures"))
    assert (f"{len(bounced)} bounced deliveries to {len(dead)} recipients" in said
            and f"{len(deferred)} deferred attempts" in said)
    table = rows_of(section(page, "failures"))
    by_code = Counter()
    for row in table:
        by_code[(row[0], row[1])] += int(row[4].replace(",", ""))
    assert by_code == Counter((d["status"], d["dsn"]) for d in bounced + deferred)
    assert any("no such user" in row[2] for row in table if row[1] == "5.1.1")


def _delay_row(rows: list[list[str]], label: str) -> list[str]:
    [row] = [r for r in rows if r[0] == label]
    return row


def _expected(deliveries: list[dict[str, Any]]) -> list[str]:
    final = [d["delay"] for d in deliveries if d["status"] != "deferred"]
    p95 = statistics.quantiles(final, n=20, method="inclusive")[18]
    return [f"{len(final):,}", format_seconds(statistics.median(final)), format_seconds(p95),
            format_seconds(max(final)),
            f"{sum(1 for d in deliveries if d['status'] == 'deferred'):,}"]


def test_service_impact_against_the_same_hours_the_day_before(page: str, raw: dict[str, Any],
                                                              incident: dict[str, Any]) -> None:
    t0, t1 = (datetime.fromisoformat(incident[k]) for k in ("start", "end"))
    rows = rows_of(section(page, "impact"))
    assert _delay_row(rows, "This incident's mail")[1:] == _expected(raw["storm"])
    others = [d for d in raw["every"] if t0 <= d["ts"] <= t1 and d["qid"] not in raw["qids"]]
    assert _delay_row(rows, "Other mail, the same hours")[1:] == _expected(others)
    day = timedelta(days=1)
    before = [d for d in raw["every"] if t0 - day <= d["ts"] <= t1 - day]
    assert _delay_row(rows, "All mail, the same hours the day before")[1:] == _expected(before)
    assert '<svg class="timeline"' in section(page, "impact")  # and on the time axis


def test_next_steps_are_drawn_from_this_storm(page: str, raw: dict[str, Any]) -> None:
    steps = text_of(section(page, "next-steps"))
    named = defaultdict(set)  # addresses each message named, before the list expanded
    for d in raw["storm"]:
        named[d["qid"]].add(d["orig_to"])
    root_q = next(q for q, mid in raw["qids"].items() if mid == TRUTH["root_message_id"])
    more = sum(1 for q, names in named.items() if q != root_q and len(names) > len(named[root_q]))
    dead = {d["to"] for d in raw["storm"] if d["status"] == "bounced"}
    for expected in (
        f"Restrict who may post to {TRUTH['list']} for good: each of its "
        f"{TRUTH['list_size']:,} members got every one of the {TRUTH['replies']} replies",
        f"-ReplyAllStormDetectionMinimumReplies up to {TRUTH['replies']} and "
        f"-ReplyAllStormDetectionMinimumRecipients up to {TRUTH['list_size']:,}",
        f"set to {len(named[root_q]) + 1} on {TRUTH['list']}, it would have held the {more} "
        "replies",
        f"no message here named more than {max(len(n) for n in named.values())} addresses",
        f"Remove the {len(dead)} dead addresses from {TRUTH['list']}",
        f"Tell {TRUTH['root_sender']}, who sent the first message, and the "
        f"{TRUTH['repliers']} people who replied",
    ):
        assert expected in steps, expected


def test_related_incidents_and_every_link_resolve(demo: Path, page: str,
                                                  incident: dict[str, Any]) -> None:
    related = section(page, "related")
    assert len(re.findall(r"<li>", related)) == len(incident["related"])
    ids = set(re.findall(r'id="([^"]+)"', page))
    for href in re.findall(r'<a href="([^"]+)"', page):
        target, _, anchor = href.partition("#")
        if target:
            assert (demo / "incidents" / target).resolve().is_file(), href
        else:
            assert anchor in ids, href
    for anchor in re.findall(r'href="#(m\d+)"', related):
        row = re.search(rf'<tr id="{anchor}"[^>]*>(.*?)</tr>', page, re.S)
        assert row is not None


def _luminance(colour: str) -> float:
    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.03928 else ((s + 0.055) / 1.055) ** 2.4
    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(colour: str) -> float:
    return 1.05 / (_luminance(colour) + 0.05)  # against white


def test_charts_meet_wcag_contrast_with_ticks_on_both_axes(page: str) -> None:
    svgs = [ET.fromstring(s) for s in re.findall(r"<svg.*?</svg>", page, re.S)]
    assert len(svgs) == 2  # the timeline and the delays
    for svg in svgs:
        assert svg.get("role") == "img" and svg.findtext("title") and svg.findtext("desc")
        for el in svg.iter():
            if el.tag == "text":
                assert contrast(el.get("fill", "#000000")) >= 4.5, el.text
                assert float(svg.get("font-size", "0")) >= 14
            elif el.tag in ("rect", "circle", "g") and el.get("fill", "none") != "none":
                assert contrast(el.get("fill")) >= 3, el.attrib
            elif el.tag == "path" and el.get("stroke"):
                assert contrast(el.get("stroke")) >= 3, el.attrib
        texts = [t.text or "" for t in svg.iter("text")]
        assert sum(1 for t in texts if re.fullmatch(r"\d\d:\d\d", t)) >= 3  # time ticks
        assert len(svg.findall("line[@class='grid']")) >= 6  # both axes


def test_storm_window_is_zoomed_and_the_tail_compressed(incident: dict[str, Any]) -> None:
    points = [{"minute": p["minute"], "messages": p["messages"],
               "deliveries": p["deliveries"]} for p in incident["timeline"]]
    svg = ET.fromstring(str(timeline_svg(points, storm_end=incident["last_message"])))
    plot = [float(svg.get("width")) * f for f in (0, 1)]
    cut = float(svg.find("line[@class='break']").get("x1"))
    t0, last, end = (datetime.fromisoformat(incident[k])
                     for k in ("start", "last_message", "end"))
    assert (last - t0) / (end - t0) < 0.25  # the storm is a fifth of the span...
    assert cut / plot[1] > 0.7  # ...and gets most of the width
    assert "compressed" in svg.findtext("desc")
    plain = ET.fromstring(str(timeline_svg(points)))
    assert plain.find("line[@class='break']") is None


def test_report_shows_what_run_showed(demo: Path, incident: dict[str, Any],
                                      tmp_path: Path) -> None:
    res = invoke("report", "--db", str(demo / "mailstorm.duckdb"), "--out", str(tmp_path),
                 "--display-tz", "UTC", "-q")
    assert res.exit_code == 0, res.output
    for suffix in (".html", "-messages.csv", "-deliveries.csv"):
        again = (tmp_path / "incidents" / f"{incident['id']}{suffix}").read_text()
        first = (demo / "incidents" / f"{incident['id']}{suffix}").read_text()
        if suffix == ".html":
            for name in ("facts", "impact", "subjects", "messages", "top-senders", "failures",
                         "next-steps", "related"):
                if name == "facts":  # the status line says what the record says
                    continue
                assert section(again, name) == section(first, name), name
        else:  # the same rows (the deliveries in no set order)
            assert sorted(again.splitlines()) == sorted(first.splitlines())


def test_csv_cells_cannot_run_as_formulas(tmp_path: Path) -> None:
    members = ["=1+1@site.example", "-2@site.example", "+3@site.example",
               *(f"m{i}@site.example" for i in range(26))]
    site = Site(lists={"all@site.example": members})
    write_log(tmp_path / "mail.log", site, storm(
        site, list_addr="all@site.example", start=datetime(2016, 11, 14, 9, 58), repliers=12,
        subject="=HYPERLINK(\"x\")"))
    res = invoke("run", str(tmp_path / "mail.log"), "--year", "2016", "--tz", "UTC", "--out",
                 str(tmp_path / "out"), "--set", "reply_storm.min_audience=20", "-q")
    assert res.exit_code == 0, res.output
    [inc] = json.loads((tmp_path / "out" / "incidents.json").read_text())["incidents"]
    for suffix in ("-messages.csv", "-deliveries.csv"):
        with (tmp_path / "out" / "incidents" / f"{inc['id']}{suffix}").open() as f:
            cells = [c for row in csv.reader(f) for c in row]
        assert not [c for c in cells if c[:1] in ("=", "+", "-", "@")], suffix
        assert "'=HYPERLINK(\"x\")" in cells and "'=1+1@site.example" in cells
    page = (tmp_path / "out" / "incidents" / f"{inc['id']}.html").read_text()
    # a log of one day: nothing to compare with, and the page says so
    assert "no data for the day before" in text_of(section(page, "impact"))


def test_charts_are_drawn_in_the_display_zone(demo: Path, incident: dict[str, Any],
                                              tmp_path: Path) -> None:
    """The storm began at 09:58 UTC (truth.json): 18:58 in Tokyo, on the chart's axis and
    in its text alternative, as on the rest of the page."""
    res = invoke("report", "--db", str(demo / "mailstorm.duckdb"), "--out", str(tmp_path),
                 "--display-tz", "Asia/Tokyo", "-q")
    assert res.exit_code == 0, res.output
    page = (tmp_path / "incidents" / f"{incident['id']}.html").read_text()
    start = datetime.fromisoformat(TRUTH["start"]) + timedelta(hours=9)
    assert "time (Asia/Tokyo)" in page and "time (UTC)" not in page
    assert f"between {start:%Y-%m-%d %H:%M} and" in page
