"""Microsoft 365 message trace exports: Get-MessageTrace CSV, the historical search reports,
the Reporting Web Service's JSON records; statuses, times, sniffing, the real corpus, and
overlapping exports of one storm counting once."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench import sample_logs
from detector import pipeline
from detector.formats import ParseContext, m365
from detector.formats import sniff as sniff_format
from detector.schema import EVENTS_SCHEMA
from detector.simulate.exchange import (
    M365_SUMMARY_COLUMNS,
    M365_TRACE_COLUMNS,
    M365_TRACE_TYPE,
    render_m365,
)
from detector.simulate.postfix import render_postfix
from detector.sources import head_lines, iter_batches
from tests.conftest import lines_frame
from tests.test_exchange_format import per_message, second_copies

TRACE_HEAD = [M365_TRACE_TYPE, ",".join(f'"{c}"' for c in M365_TRACE_COLUMNS)]
TRACE_ID = "cf7a249a-5edd-4350-130a-08da8f69e0f6"


def trace_row(recipient: str, status: str, *, received: str = "11/14/2016 9:58:12 AM",
              trace: str = TRACE_ID, subject: str = "RE: test, again",
              to_ip: str = "") -> str:
    values = ["contoso.onmicrosoft.com", "<a1@contoso.com>", received, "alice@contoso.com",
              recipient, subject, status, to_ip, "10.20.1.2", "12345", trace, "", "", "0"]
    return ",".join('"' + v.replace('"', '""') + '"' for v in values)


def parse(lines: list[str], head: list[str] | None = None) -> pl.DataFrame:
    head = TRACE_HEAD if head is None else head
    ctx = ParseContext(source_file="trace.csv", head=tuple(head))
    return m365.parse(lines_frame(lines), ctx).sort("line_no", "kind")


@pytest.mark.parametrize("status, kind, expected", [
    ("Delivered", "delivery", "sent"), ("Failed", "delivery", "bounced"),
    ("Pending", "delivery", "deferred"), ("GettingStatus", "delivery", "deferred"),
    ("Quarantined", "delivery", "quarantined"), ("FilteredAsSpam", "delivery", "filtered"),
    ("None", "delivery", "none"), ("Expanded", "m365_expanded", None),
    ("Resolved", "m365_resolved", None),
])
def test_trace_status(status: str, kind: str, expected: str | None) -> None:
    out = parse([trace_row("bob@contoso.com", status)])
    rows = {r["kind"]: r for r in out.to_dicts()}
    assert set(rows) == {kind, "received"}
    r = rows[kind]
    assert (r["status"], r["recipient"], r["detail"]) == (
        expected, "bob@contoso.com", None if expected == "sent" else status)
    assert (r["queue_id"], r["message_id"], r["host"]) == (TRACE_ID, "a1@contoso.com",
                                                          "exchange-online")


def test_one_received_per_message_and_the_group_on_its_members() -> None:
    out = parse([trace_row("all.staff@contoso.com", "Expanded"),
                 trace_row("bob@contoso.com", "Delivered", to_ip="192.0.2.9"),
                 trace_row("carol@contoso.com", "Failed"),
                 trace_row("dave@other.example", "Delivered", trace="other-id")])
    received = out.filter(pl.col("kind") == "received")
    assert received["queue_id"].to_list() == [TRACE_ID, "other-id"]
    r = received.row(0, named=True)
    assert r["ts"] == datetime(2016, 11, 14, 9, 58, 12, tzinfo=UTC)
    assert (r["sender"], r["size"], r["client"]) == ("alice@contoso.com", 12345, "10.20.1.2")
    assert r["subject"] == "RE: test, again"
    d = out.filter(pl.col("kind") == "delivery")
    assert d["orig_to"].to_list() == ["all.staff@contoso.com"] * 2 + [None]
    assert d["relay"].to_list() == ["192.0.2.9", None, None]


@pytest.mark.parametrize("text, expected", [
    ("11/14/2016 9:58:12 PM", datetime(2016, 11, 14, 21, 58, 12, tzinfo=UTC)),
    ("1/4/2016 12:05:02 AM", datetime(2016, 1, 4, 0, 5, 2, tzinfo=UTC)),
    ("04/01/2016 12:05:02", datetime(2016, 1, 4, 12, 5, 2, tzinfo=UTC)),  # en-GB
    ("14.11.2016 09:58:12", datetime(2016, 11, 14, 9, 58, 12, tzinfo=UTC)),
    ("2022-09-05T18:10:13.4907658", datetime(2022, 9, 5, 18, 10, 13, 490765, tzinfo=UTC)),
    ("2022-10-21T17:25:36.969376Z", datetime(2022, 10, 21, 17, 25, 36, 969376, tzinfo=UTC)),
    ("/Date(1658751973240)/", datetime(2022, 7, 25, 12, 26, 13, 240000, tzinfo=UTC)),
])
def test_received_time_shapes(text: str, expected: datetime) -> None:
    out = parse([trace_row("bob@contoso.com", "Delivered", received=text)])
    assert set(out["ts"]) == {expected}


def test_bad_time_is_unparsed_with_its_text() -> None:
    line = trace_row("bob@contoso.com", "Delivered", received="yesterday")
    out = parse([line, "not a row \"at all", ""])
    assert out["kind"].to_list() == ["unparsed"] * 3
    assert out["raw"].to_list()[0] == line


def test_subject_with_a_newline_spans_two_lines() -> None:
    lines = trace_row("bob@contoso.com", "Delivered", subject='two\n"lines"').split("\n")
    out = parse([*lines, trace_row("carol@contoso.com", "Delivered")])
    assert out.filter(pl.col("kind") == "received")["subject"].to_list() == ['two\n"lines"']
    assert out.filter(pl.col("kind") == "delivery")["line_no"].to_list() == [1, 3]


def test_header_rows_and_concatenated_exports() -> None:
    summary_head = ",".join(M365_SUMMARY_COLUMNS)
    summary = ('2016-11-14T09:58:12.123Z,alice@contoso.com,"all.staff@contoso.com##Receive, '
               'Expand;bob@contoso.com##Receive, Deliver;gone@other.example##Receive, Send, '
               'Fail",test,4096,<a2@contoso.com>,nid-2,10.20.1.2,Originating,,Normal')
    out = parse([*TRACE_HEAD, trace_row("bob@contoso.com", "Delivered"), summary_head,
                 summary])
    assert out["kind"].to_list()[:2] == ["m365_header", "m365_header"]
    got = out.filter(pl.col("line_no") == 5)
    assert sorted(got["kind"]) == ["delivery", "delivery", "m365_expanded", "received"]
    d = got.filter(pl.col("kind") == "delivery").sort("recipient")
    assert d["recipient"].to_list() == ["bob@contoso.com", "gone@other.example"]
    assert d["status"].to_list() == ["sent", "bounced"]
    assert set(d["orig_to"]) == {"all.staff@contoso.com"}
    assert set(got["queue_id"]) == {"nid-2"}


def test_extended_report_rows_are_read_as_message_tracking() -> None:
    names = ["date_time_utc", "client_ip", "client_hostname", "server_ip", "server_hostname",
             "source_context", "connector_id", "source", "event_id", "internal_message_id",
             "message_id", "network_message_id", "recipient_address", "recipient_status",
             "total_bytes", "recipient_count", "related_recipient_address", "reference",
             "message_subject", "sender_address", "return_path"]
    common = ",,,,DB6PR07MB1234,,,{src},{ev},12345,<a3@contoso.com>,nid-3,{rcpt},,4096,2,"
    rows = ["2016-11-14T09:58:12.1234567Z" + common.format(
                src="SMTP", ev="RECEIVE", rcpt="all.staff@contoso.com") +
            ",,test,alice@contoso.com,alice@contoso.com",
            "2016-11-14T09:58:13.1234567Z" + common.format(
                src="ROUTING", ev="EXPAND", rcpt="bob@contoso.com;carol@contoso.com")
            + "all.staff@contoso.com,,test,alice@contoso.com,alice@contoso.com"]
    out = parse(rows, head=[",".join(names)])
    assert out["kind"].to_list() == ["received", "expansion", "expansion"]
    assert set(out["queue_id"]) == {"nid-3"} and set(out["host"]) == {"exchange-online"}
    assert out["orig_to"].to_list()[1:] == ["all.staff@contoso.com"] * 2


def test_sniff() -> None:
    assert m365.sniff(TRACE_HEAD) and m365.sniff(TRACE_HEAD[1:])
    assert m365.sniff([",".join(M365_SUMMARY_COLUMNS)])
    utf16 = [("\ufeff" + TRACE_HEAD[1]).encode("utf-16-le").decode("utf-8", "replace")]
    assert m365.sniff(utf16)  # a UTF-16 export, read as UTF-8 with NULs
    assert m365.sniff(['{"MessageTraceId":"x","Received":"2022-01-01T00:00:00"}'])
    assert not m365.sniff(["Jun 10 06:50:26 mx1 postfix/qmgr[6273]: 4F1B61F4B8: removed",
                           '"a","b","c"', '{"other": 1}'])
    assert sniff_format(TRACE_HEAD) == "m365"


@pytest.mark.parametrize("lines", [[], [""], TRACE_HEAD, ["x", None, "{bad json"]])
def test_parse_returns_exactly_the_events_schema(lines: list[str | None]) -> None:
    out = m365.parse(lines_frame(lines), ParseContext("f.csv", head=tuple(TRACE_HEAD)))
    assert out.schema == EVENTS_SCHEMA
    assert sorted(set(out["line_no"])) == list(range(1, len(lines) + 1))


# --- the real corpus: JSON records ----------------------------------------------------------


def test_corpus_every_line_gets_a_kind(corpus_dir: Path, capsys: pytest.CaptureFixture
                                       ) -> None:
    files = sorted((corpus_dir / "m365").glob("*"))
    assert len(files) >= 2
    shares, kinds = {}, set()
    for path in files:
        head = tuple(head_lines(str(path), 200))
        assert m365.sniff(list(head)), path.name
        ctx = ParseContext(str(path), head=head)
        out = pl.concat([m365.parse(b, ctx) for b, _ in iter_batches(str(path))])
        lines = len(path.read_text().splitlines())
        assert set(out["line_no"]) == set(range(1, lines + 1)), path.name
        assert out.schema == EVENTS_SCHEMA and set(out["kind"]) <= set(m365.KINDS)
        kinds |= set(out["kind"])
        unparsed = out.filter(pl.col("kind") == "unparsed")["line_no"].n_unique()
        shares[path.name] = unparsed / lines
        assert unparsed == 0, path.name
    assert {"delivery", "received"} <= kinds
    with capsys.disabled():
        print("\nm365 corpus unparsed share:", json.dumps(shares))


def test_corpus_envelope_holds_the_same_record_as_the_flat_line(corpus_dir: Path) -> None:
    path = corpus_dir / "m365" / "elastic-integrations.jsonl"
    out = m365.parse(lines_frame(path.read_text().splitlines()), ParseContext(str(path)))
    d = out.filter((pl.col("kind") == "delivery") & (pl.col("queue_id") == TRACE_ID))
    assert d["line_no"].to_list() == [1, 4]  # a flat record, and the {"value": [...]} one
    assert set(d["message_id"]) == {"a210cf91-4f2e-484c-8ada-3b27064ee5e3@az.uksouth."
                                    "production.microsoft.com"}


# --- overlapping exports of the storm -------------------------------------------------------


@pytest.fixture(scope="module")
def storm_day() -> tuple:
    site, _quiet, day2, _truth = sample_logs.build()
    # the storm's morning is enough (and keeps the test fast)
    lo, hi = (sample_logs.STORM_DAY + timedelta(hours=h) for h in (9, 12))
    return site, [m for m in day2 if lo <= m.time < hi]


def _incident(folder: Path, out: Path) -> dict:
    res = pipeline.run([str(folder)], out, tz="UTC", year=2016,
                       overrides={"reply_storm.min_senders": "5"})
    [inc] = [i for i in (x.to_record() for x in res.incidents) if i["kind"] == "reply_storm"]
    return inc


def test_overlapping_exports_count_each_delivery_once(storm_day: tuple, tmp_path: Path
                                                      ) -> None:
    """The storm in one export, and in two exports overlapping by 15 minutes of its peak
    (one written in another culture): the same incident, the same deliveries."""
    site, day2 = storm_day
    day = sample_logs.STORM_DAY
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    (one / "trace.csv").write_text("\n".join(render_m365(site, day2, seed=1)) + "\n")
    (two / "a.csv").write_text("\n".join(render_m365(
        site, day2, seed=1, end=day + timedelta(hours=10, minutes=15))) + "\n")
    (two / "b.csv").write_text("\n".join(render_m365(
        site, day2, seed=1, start=day + timedelta(hours=10), culture="en-GB")) + "\n")
    a = _incident(one, tmp_path / "one-out")
    b = _incident(two, tmp_path / "two-out")
    assert a["deliveries"] > 20_000
    for key in ("list", "root_message_id", "start", "messages", "senders", "deliveries"):
        assert a[key] == b[key], key
    # and the Postfix rendering of the same facts (no In-Reply-To/References: a trace has
    # none) finds the same storm; Postfix delivers twice to a member also addressed
    # directly, a trace lists the recipient once
    plain = [dataclasses.replace(m, in_reply_to=None, references=[]) for m in day2]
    pf = tmp_path / "pf"
    pf.mkdir()
    (pf / "mail.log").write_text("\n".join(render_postfix(site, plain, seed=1)) + "\n")
    p = _incident(pf, tmp_path / "pf-out")
    assert (p["list"], p["root_message_id"], p["messages"]) == \
        (a["list"], a["root_message_id"], a["messages"])
    start = [datetime.fromisoformat(i["start"]) for i in (a, p)]
    assert abs((start[0] - start[1]).total_seconds()) < 2
    mine, theirs = per_message(tmp_path / "one-out" / "mailstorm.duckdb"), \
        per_message(tmp_path / "pf-out" / "mailstorm.duckdb")
    copies = second_copies(site, plain)
    assert sum(copies.values()) > 0 and set(copies) <= set(mine)
    assert all(mine[i] == theirs[i] - copies[i] for i in copies)
    assert 0 < p["deliveries"] - a["deliveries"] <= sum(copies.values())


def test_json_records_and_other_json() -> None:
    records = [
        '{"MessageTraceId":"t1","MessageId":"\\u003cm1@x\\u003e","Received":"/Date(1658751973240)/",'
        '"SenderAddress":"a@x","RecipientAddress":"b@y","Status":"Failed","Size":10}',
        '{"odata.metadata":"m","value":[{"MessageTraceId":"t2","Received":"2022-09-05T18:10:13",'
        '"RecipientAddress":"c@y","Status":"Delivered"},{"MessageTraceId":"t2",'
        '"Received":"2022-09-05T18:10:13","RecipientAddress":"d@y","Status":"Delivered"}]}',
        '{"some":"other record"}',
    ]
    out = m365.parse(lines_frame(records), ParseContext("f.jsonl")).sort("line_no", "kind")
    d = out.filter(pl.col("kind") == "delivery")
    assert d.select("line_no", "recipient", "status").rows() == [
        (1, "b@y", "bounced"), (2, "c@y", "sent"), (2, "d@y", "sent")]
    assert out.filter(pl.col("kind") == "received")["queue_id"].to_list() == ["t1", "t2"]
    assert out.filter(pl.col("line_no") == 1)["message_id"].unique().to_list() == ["m1@x"]
    other = out.filter(pl.col("line_no") == 3)
    assert other["kind"].to_list() == ["m365_json"] and other["raw"][0] == records[2]


# --- batching --------------------------------------------------------------------------------

_STATUSES = ("Delivered", "Failed", "Pending", "Delivered", "Delivered")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 30), st.sampled_from(
    _STATUSES)), min_size=1, max_size=40), cuts=st.lists(st.integers(1, 39), max_size=4))
def test_deliveries_do_not_depend_on_batch_boundaries(rows: list, cuts: list) -> None:
    """However an export is cut into batches, the same recipient rows come out (each
    batch also restates a message's received facts; the model merges those)."""
    lines = [trace_row(f"u{u}@contoso.com", status, trace=f"trace-{m}",
                       received=f"11/14/2016 9:{m:02d}:12 AM")
             for m, u, status in rows]
    whole = parse(lines)
    bounds = sorted({c for c in cuts if c < len(lines)})
    parts = []
    for lo, hi in zip([0, *bounds], [*bounds, len(lines)], strict=True):
        ctx = ParseContext(source_file="trace.csv", head=tuple(TRACE_HEAD))
        frame = lines_frame(lines[lo:hi], first_line_no=lo + 1)
        parts.append(m365.parse(frame, ctx))
    cut = pl.concat(parts)

    def deliveries(frame: pl.DataFrame) -> list:
        return sorted(frame.filter(pl.col("kind") == "delivery").select(
            "line_no", "queue_id", "recipient", "status", "ts").rows())

    assert deliveries(cut) == deliveries(whole)
    facts = ["queue_id", "message_id", "sender", "subject"]
    assert (cut.filter(pl.col("kind") == "received").select(facts).unique().sort(facts).rows()
            == whole.filter(pl.col("kind") == "received").select(facts).unique()
            .sort(facts).rows())


def test_a_report_exchange_online_made_has_the_null_sender() -> None:
    # a trace shows no return path: the non-delivery reports Exchange Online makes come
    # from its system address (Microsoft's "Non-delivery reports in Exchange Online")
    ndr = trace_row("alice@contoso.com", "Delivered", subject="Undeliverable: RE: test")
    ndr = ndr.replace('"alice@contoso.com","alice@contoso.com"',
                      '"MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@contoso.com",'
                      '"alice@contoso.com"')
    out = parse([trace_row("bob@contoso.com", "Delivered"), ndr.replace(TRACE_ID, "t2")])
    senders = out.filter(pl.col("kind") == "received")["sender"].to_list()
    assert senders == ["alice@contoso.com", ""]
