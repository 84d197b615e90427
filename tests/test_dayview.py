"""The day overview, the display zone, --redact and --summary text, end to end on the real
CLI. Oracles: the sample logs' own lines, counted here with plain Python (not the
parser), and a small log written across a daylight-saving change."""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner, Result

from detector.cli import main
from detector.display import format_delay
from tests.logsynth import Site, storm, write_log

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_logs"
LONDON = ZoneInfo("Europe/London")
_STAMP = re.compile(r"^(\w{3}) +(\d+) (\d\d):(\d\d):(\d\d) ")
_DELIVERY = re.compile(r": to=<([^>]*)>,(?: orig_to=<([^>]*)>,)? .*?delay=([\d.]+),.*"
                       r" status=(\w+)")
_REJECT = re.compile(r"\]: (?:NOQUEUE|[0-9A-F]+): (?:milter-)?reject: ")
_ADDRESS = re.compile(r"(?:from|to|orig_to)=<([^<>\s]+@[^<>\s]+)>|sasl_username=(\S+@[^\s,]+)")


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def sample_lines() -> list[str]:
    with gzip.open(SAMPLES / "mail.log.1.gz", "rt", encoding="utf-8") as f:
        older = f.read().splitlines()
    return older + (SAMPLES / "mail.log").read_text(encoding="utf-8").splitlines()


def stamp(line: str, year: int = 2016) -> datetime:
    m = _STAMP.match(line)
    assert m, line
    month = datetime.strptime(m.group(1), "%b").month
    return datetime(year, month, int(m.group(2)), int(m.group(3)), int(m.group(4)),
                    int(m.group(5)), tzinfo=UTC)


class Tables(HTMLParser):
    """Rows of every table with an id, as lists of cell texts; hrefs of the page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[list[str]]] = defaultdict(list)
        self.hrefs: list[str] = []
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.hrefs.append(str(a["href"]))
        if tag == "table":
            self._table = a.get("id")
        elif tag == "tr" and self._table:
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._table and self._row:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def tables_of(path: Path) -> Tables:
    parser = Tables()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def num(cell: str) -> int:
    return int(cell.replace(",", ""))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The demo run once, shown in London time with the text summary; its warehouse
    outside OUT, so that every file under OUT is a report file."""
    tmp = tmp_path_factory.mktemp("day")
    db = tmp / "wh" / "mailstorm.duckdb"
    db.parent.mkdir()
    res = invoke("run", str(SAMPLES), "--year", "2016", "--tz", "UTC", "--out",
                 str(tmp / "out"), "--db", str(db), "-q", "--display-tz", "Europe/London",
                 "--summary", "text")
    assert res.exit_code == 0, res.output
    return {"out": tmp / "out", "db": db, "stdout": res.stdout, "tmp": tmp}


def test_index_links_the_day_page(demo: dict[str, Any]) -> None:
    out = demo["out"]
    assert "day.html" in tables_of(out / "index.html").hrefs
    day = tables_of(out / "day.html")
    assert "index.html" in day.hrefs
    pages = {h for h in day.hrefs if h.startswith("incidents/")}
    assert pages and all((out / h).is_file() for h in pages)


def test_traffic_per_hour_is_what_the_log_lines_say(demo: dict[str, Any]) -> None:
    expected: dict[datetime, Counter[str]] = defaultdict(Counter)
    for line in sample_lines():
        d = _DELIVERY.search(line)
        hour = stamp(line).replace(minute=0, second=0)
        if d:
            status = d.group(4)
            expected[hour]["bounced" if status in ("bounced", "expired") else status] += 1
        elif _REJECT.search(line):
            expected[hour]["rejected"] += 1
    rows = tables_of(demo["out"] / "day.html").tables["traffic-table"]
    assert len(rows) == 48  # two days, every hour shown, quiet ones as zeros
    seen = {}
    for row in rows:
        local = datetime.strptime(row[0], "%Y-%m-%d %H:%M GMT").replace(tzinfo=LONDON)
        counts = dict(zip(("delivered", "deferred", "bounced", "rejected"),
                          map(num, row[2:6]), strict=True))
        seen[local.astimezone(UTC)] = {k: n for k, n in counts.items() if n}
    renamed = {h: {("delivered" if k == "sent" else k): n for k, n in c.items()}
               for h, c in expected.items()}
    assert seen == {h: renamed.get(h, {}) for h in seen}
    assert set(renamed) <= set(seen)
    # the storm's hours name the incident (09:58 to 10:36 UTC, GMT in November)
    [storm] = [i for i in json.loads((demo["out"] / "incidents.json").read_text())[
        "incidents"] if i["kind"] == "reply_storm"]
    marked = {r[0] for r in rows if "reply_storm" in r[6]}
    assert {"2016-11-14 09:00 GMT", "2016-11-14 10:00 GMT"} <= marked
    assert f"incidents/{storm['id']}.html" in tables_of(demo["out"] / "day.html").hrefs


def test_lists_and_domains_are_what_the_log_lines_say(demo: dict[str, Any]) -> None:
    per_list: Counter[str] = Counter()
    delivered: Counter[str] = Counter()
    longest: dict[str, float] = {}
    for line in sample_lines():
        d = _DELIVERY.search(line)
        if not d:
            continue
        to, orig, delay, status = d.group(1), d.group(2), float(d.group(3)), d.group(4)
        if orig and orig != to and status != "deferred":
            per_list[orig] += 1
        if status == "sent":
            domain = to.rsplit("@", 1)[1].lower()
            delivered[domain] += 1
            longest[domain] = max(longest.get(domain, 0.0), delay)
    page = tables_of(demo["out"] / "day.html")
    assert {r[0]: num(r[2]) for r in page.tables["lists-table"]} == dict(per_list)
    domains = page.tables["domains-table"]
    assert [(r[0], num(r[1])) for r in domains] == \
        sorted(delivered.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    assert {r[0]: r[6] for r in domains} == {r[0]: format_delay(longest[r[0]])
                                             for r in domains}


def test_reasons_account_for_every_deferral_bounce_and_reject(demo: dict[str, Any]) -> None:
    lines = Counter()
    for line in sample_lines():
        d = _DELIVERY.search(line)
        if d and d.group(4) != "sent":
            lines["bounced" if d.group(4) in ("bounced", "expired") else d.group(4)] += 1
        elif _REJECT.search(line):
            lines["rejected"] += 1
    rows = tables_of(demo["out"] / "day.html").tables["reasons-table"]
    shown = Counter()
    for row in rows:
        shown[row[0]] += num(row[3])
        assert "@" not in row[2], row  # grouped without the addresses
    assert shown == lines


def test_summary_text_is_the_headline_and_each_new_incident(demo: dict[str, Any]) -> None:
    incidents = json.loads((demo["out"] / "incidents.json").read_text())["incidents"]
    head, *stories = demo["stdout"].splitlines()
    assert head.startswith(f"mailstorm: {len(incidents)} incident")
    assert f"{len(incidents)} new or changed" in head
    assert len(stories) == len(incidents)  # the first run: every incident is new
    for inc in incidents:
        [line] = [s for s in stories if f"incidents/{inc['id']}.html" in s]
        start = datetime.fromisoformat(inc["start"]).astimezone(LONDON)
        assert line.startswith(f"NEW {inc['severity']} {inc['kind']} from "
                               f"{start:%Y-%m-%d %H:%M %Z}: {inc['headline']}")
    # a report after the run: nothing new or changed, so the headline alone
    again = invoke("report", "--db", str(demo["db"]), "--out", str(demo["tmp"] / "again"),
                   "-q", "--display-tz", "UTC", "--summary", "text")
    assert again.exit_code == 0
    assert again.stdout.splitlines()[0].startswith(f"mailstorm: {len(incidents)} incident")
    assert len(again.stdout.splitlines()) == 1


def test_redacted_report_holds_no_local_part_and_the_same_counts(
        demo: dict[str, Any]) -> None:
    red = demo["tmp"] / "redacted"
    res = invoke("report", "--db", str(demo["db"]), "--out", str(red), "-q", "--redact",
                 "--summary", "text")
    assert res.exit_code == 0
    addresses = {a or b for line in sample_lines() for a, b in _ADDRESS.findall(line)}
    assert len(addresses) > 500
    files = [p for p in red.rglob("*") if p.is_file() and not p.is_symlink()]
    assert any(p.name == "day.html" for p in files) and len(files) >= 4
    # the incidents' CSVs are written and redacted too (every file is read below), with
    # as many rows as the plain report's
    csvs = sorted(p for p in files if p.suffix == ".csv")
    assert csvs
    for p in csvs:
        plain_csv = demo["out"] / "incidents" / p.name
        assert len(p.read_text().splitlines()) == len(plain_csv.read_text().splitlines())
    texts = [p.read_text(encoding="utf-8").lower() for p in files] + [res.stdout.lower()]
    locals_ = {a: a.rsplit("@", 1)[0].lower() for a in addresses}
    # a local part can only occur inside a run of the characters local parts are made of:
    # searching the distinct runs (joined by a newline, not one of them) finds exactly what
    # searching every file would, without reading megabytes of CSV once per address
    alphabet = {c for local in locals_.values() for c in local} | {"@"}
    run = re.compile("[" + "".join(re.escape(c) for c in sorted(alphabet)) + "]+")
    runs = "\n".join({r for text in texts for r in run.findall(text)})
    for address, local in locals_.items():
        assert f"{local}@" not in runs, address
        if "." in local and len(local) > 5:  # a person's name, alone
            assert local not in runs, address
    plain = json.loads((demo["out"] / "incidents.json").read_text())["incidents"]
    hidden = json.loads((red / "incidents.json").read_text())["incidents"]
    keep = ("id", "kind", "severity", "messages", "deliveries", "senders", "start", "end")
    assert [{k: i[k] for k in keep} for i in hidden] == [{k: i[k] for k in keep} for i in plain]
    # one address, one stand-in, domain kept: the storm's list on the day page too
    [storm] = [i for i in hidden if i["kind"] == "reply_storm"]
    assert storm["list"].endswith("@nhs.example") and storm["list"] != "all.staff@nhs.example"
    lists = [r[0] for r in tables_of(red / "day.html").tables["lists-table"]]
    assert storm["list"] in lists


def test_times_shown_in_the_display_zone_across_a_dst_change(tmp_path: Path) -> None:
    # Europe/London went from GMT to BST at 01:00 UTC on 27 March 2016
    site = Site(lists={"all@site.example": [f"m{i}@site.example" for i in range(30)]})
    start = datetime(2016, 3, 27, 0, 40)
    log = tmp_path / "mail.log"
    write_log(log, site, storm(site, list_addr="all@site.example", start=start,
                               repliers=24, gap_s=300))
    res = invoke("run", str(log), "--year", "2016", "--tz", "UTC", "--out",
                 str(tmp_path / "out"), "-q", "--display-tz", "Europe/London",
                 "--set", "reply_storm.min_audience=20", "--summary", "text")
    assert res.exit_code == 0, res.output
    out = tmp_path / "out"
    [inc] = json.loads((out / "incidents.json").read_text())["incidents"]
    assert inc["start"] == "2016-03-27T00:40:00Z"  # stored and written in UTC
    assert "2016-03-27 00:40:00 GMT" in (out / "index.html").read_text()
    lines = log.read_text().splitlines()
    per_hour = Counter(stamp(ln).replace(minute=0, second=0) for ln in lines
                       if "status=sent" in ln)
    rows = tables_of(out / "day.html").tables["traffic-table"]
    shown = {r[0]: num(r[2]) for r in rows}
    expected = {f"{h.astimezone(LONDON):%Y-%m-%d %H:%M %Z}": n for h, n in per_hour.items()}
    assert shown == expected
    assert "2016-03-27 00:00 GMT" in shown and "2016-03-27 02:00 BST" in shown
    assert not any(label.startswith("2016-03-27 01:") for label in shown)  # skipped
    last = max(stamp(ln) for ln in lines).astimezone(LONDON)
    assert f"to {last:%Y-%m-%d %H:%M} BST" in res.stdout.splitlines()[0]
    assert "from 2016-03-27 00:40 GMT" in res.stdout


def test_unknown_display_zone_is_a_usage_error(tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["run", str(SAMPLES / "mail.log"), "--out",
                                    str(tmp_path / "out"), "--display-tz", "Mars/Olympus"])
    assert res.exit_code == 2
    assert "unknown time zone 'Mars/Olympus'" in res.output
    assert not (tmp_path / "out").exists()  # refused before anything was read or written


def test_summary_hour_buckets_cover_a_day(demo: dict[str, Any]) -> None:
    rows = tables_of(demo["out"] / "day.html").tables["traffic-table"]
    starts = [datetime.strptime(r[0], "%Y-%m-%d %H:%M GMT") for r in rows]
    assert all(b - a == timedelta(hours=1) for a, b in zip(starts, starts[1:], strict=False))


def test_redactor_hashes_local_parts_only_and_stably() -> None:
    from detector.redact import Redactor

    one, other = Redactor(b"k" * 32), Redactor(b"j" * 32)
    text = ("from=<Amelia.Gibson@nhs.example> to=<amelia.gibson@nhs.example> "
            "bounce=all.staff-bounces+amelia.gibson=nhs.example@nhs.example at 10:02 @ home")
    shown = one.text(text)
    assert "amelia" not in shown.lower() and shown.count("@nhs.example") == 3
    first, second = re.findall(r"<(\w+)@nhs\.example>", shown)
    assert first == second and re.fullmatch(r"h[0-9a-f]{10}", first)  # case-insensitive
    assert shown.endswith("at 10:02 @ home")  # no address: left alone
    assert other.text(text) != shown  # keyed: another warehouse, other stand-ins


@pytest.mark.parametrize("unit", ["minute", "hour", "day"])
def test_truncated_times_are_date_trunc_in_utc(unit: str) -> None:
    """The day overview's and the impact's buckets cut by integer arithmetic on
    microseconds: the instants date_trunc gives in a UTC session, before 1970 too; in
    another session zone, date_trunc itself."""
    import duckdb

    from detector.sqltext import truncated

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("""CREATE TABLE t AS SELECT to_timestamp(s) + INTERVAL (us) MICROSECONDS AS ts
                   FROM (SELECT unnest([-86_400 * 400 - 1, -1, 0, 1, 59, 60, 3599, 3600,
                                        86_399, 86_400, 1_479_117_494, 1_710_000_000])
                                AS s) CROSS JOIN (SELECT unnest([0, 1, 999_999]) AS us)""")
    differ = con.execute(f"SELECT count(*) FROM t WHERE {truncated('UTC', unit, 'ts')} "
                         f"IS DISTINCT FROM date_trunc('{unit}', ts)").fetchall()
    assert differ == [(0,)]
    assert truncated("Europe/London", unit, "ts") == f"date_trunc('{unit}', ts)"
