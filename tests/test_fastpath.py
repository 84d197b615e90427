"""The Rust fast path (detector.fastpath, ./fastpath) against the Polars parser: the same
events, row for row and column for column, on the sample logs, the real corpus, a
generated day and mutated real-shaped lines. Skips without the module, unless
MAILSTORM_FASTPATH=required."""

from __future__ import annotations

import gzip
import os
import random
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from detector import fastpath
from detector.formats import postfix
from detector.formats.context import ParseContext
from detector.formats.syslog import YearState, assign_years, months_of_raw
from detector.simulate import make_site, traffic, utc
from detector.simulate.postfix import render_postfix

if not fastpath.available():
    if os.environ.get(fastpath.ENV) == "required":
        pytest.fail("MAILSTORM_FASTPATH=required but mailstorm_fastpath is not installed",
                    pytrace=False)
    pytest.skip("mailstorm_fastpath is not installed (make builds it where cargo is)",
                allow_module_level=True)

ROOT = Path(__file__).parents[1]
CORPUS = Path(__file__).parents[2] / "shared" / "corpus" / "postfix"


def _batch(lines: list[str], year: int = 2016) -> pl.DataFrame:
    frame = pl.DataFrame({"raw": lines, "line_no": range(1, len(lines) + 1)},
                         schema={"raw": pl.String, "line_no": pl.Int64})
    return frame.with_columns(assign_years(months_of_raw(frame["raw"]), YearState(year)))


def _both(lines: list[str], tz: str = "UTC", year: int = 2016) -> tuple[int, int]:
    """Parse both ways and hold them equal; (lines vouched, lines)."""
    batch = _batch(lines, year)
    slow = postfix.parse_lines(batch, ParseContext("f", tz=tz)).sort("line_no")
    fast = postfix.parse(batch, ParseContext("f", tz=tz))
    assert_frame_equal(fast, slow)
    vouched, _ = fastpath.split(batch, ParseContext("f", tz=tz))
    return vouched.height, batch.height


def _read(path: Path) -> list[str]:
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return data.decode("utf-8", "replace").splitlines()


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "sample_logs").iterdir()
                                        if p.name.startswith("mail.log")))
def test_sample_logs_equal(name: str) -> None:
    vouched, total = _both(_read(ROOT / "sample_logs" / name))
    assert vouched > 0.95 * total  # the hot shapes do take the fast path


def test_sample_log_equal_in_a_zone_with_dst() -> None:
    _both(_read(ROOT / "sample_logs" / "mail.log")[:20000], tz="Europe/London")


@pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus is absent")
def test_corpus_equal() -> None:
    for path in sorted(CORPUS.iterdir()):
        if path.is_file() and path.suffix in (".log", ".gz"):
            _both(_read(path))


def test_generated_day_equal() -> None:
    rng = random.Random(5)
    site = make_site(rng, "nhs.example", lists={"all.staff": 300})
    start = utc(2016, 2, 28, 22, 0)  # into Feb 29 of a leap year
    day, _ = traffic.background(site, rng, start, 120)
    storm, _ = traffic.storm(site, rng, start + timedelta(hours=1),
                             list_address="all.staff@nhs.example", list_size=300,
                             repliers=5, duration=timedelta(minutes=20))
    lines = list(render_postfix(site, day + storm, seed=5))
    vouched, total = _both(lines)
    assert vouched > 0.9 * total


_H = "Nov 14 10:02:11 mx1 "
# one real-shaped line per hot kind (shapes of ../shared/corpus and postfix.org's docs)
HOT = {
    "delivery": _H + "postfix/smtp[10248]: DBED828417: to=<jamor@dplanet.com>, "
    "relay=mail.dplanet.com[67.23.8.134]:25, delay=1.6, delays=0.17/0.04/0.88/0.48, "
    "dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as C1EBF731439)",
    "qmgr_from": _H + "postfix/qmgr[9572]: DBED828417: from=<macaco@monos.org>, size=890, "
    "nrcpt=2 (queue active)",
    "queue_removed": _H + "postfix/qmgr[9572]: DBED828417: removed",
    "smtpd_client": "Jun  3 10:40:57 mail postfix/submission/smtpd[9708]: 4AA091855DA0: "
    "client=some.domain.name[1.2.3.4], sasl_method=PLAIN, sasl_username=user@sender.com",
    "cleanup_message_id": _H + "postfix/cleanup[10247]: DBED828417: "
    "message-id=<465387.531879486-sendEmail@huginn>",
    "smtpd_connect": _H + "postfix/smtpd[5530]: connect from nms.active24.cz[81.95.96.49]",
    "smtpd_disconnect": "Jun  3 10:40:57 mail postfix/submission/smtpd[9708]: disconnect from "
    "some.domain.name[1.2.3.4] ehlo=2 starttls=1 auth=1 mail=1 rcpt=1 data=1 quit=1 commands=8",
    "header_subject": _H + "postfix/cleanup[4468]: 3D770111AF50: info: header Subject: "
    "Manquants LASTNAME from unknown[10.1.1.1]; from=<foo@corp.com> to=<first.last@corp.com> "
    "proto=ESMTP helo=<SUBDOMAIN.CORP.COM>",
    "header_in_reply_to": _H + "postfix/cleanup[4468]: 4F1B61F4B8: info: header In-Reply-To: "
    "<5F3A2B1C.4010203@example.com> from mail.example.com[192.0.2.10]; "
    "from=<alice@example.com> to=<bob@example.org> proto=ESMTP helo=<mail.example.com>",
    "header_references": _H + "postfix/cleanup[4468]: 4F1B61F4B8: info: header References: "
    "<4E2A1B0C.3020100@example.com> <5F3A2B1C.4010203@example.com> from "
    "mail.example.com[192.0.2.10]; from=<alice@example.com> to=<bob@example.org> proto=ESMTP",
    "foreign": "Jun  3 10:40:57 mail opendkim[235]: 4AA091855DA0: DKIM-Signature field added "
    "(s=mail, d=mail.sender.com)",
    "tls": "Jun  3 10:40:57 mail postfix/submission/smtpd[9708]: Anonymous TLS connection "
    "established from some.domain.name[1.2.3.4]: TLSv1.2 with cipher "
    "ECDHE-RSA-AES256-GCM-SHA384 (256/256 bits)",
    "pickup": "Feb  1 13:17:02 mail postfix/pickup[28541]: 08ACF1541B01: uid=0 from=<root>",
    "bounce_notification": "Oct  1 12:18:16 u86 postfix/bounce[12107]: 72FEB28781: sender "
    "non-delivery notification: B876628785",
}


@pytest.mark.parametrize("kind", sorted(HOT))
def test_hot_kind_is_vouched(kind: str) -> None:
    line = HOT[kind]
    assert _both([line]) == (1, 1)
    events, _ = fastpath.split(_batch([line]), ParseContext("f"))
    assert events["kind"].to_list() == [kind]


def test_delivery_fields() -> None:
    line = (_H + "postfix/local[2]: ABCDEF1234: to=<a@x.example>, orig_to=<list@x.example>, "
            "relay=local, conn_use=2, delay=0.25, delays=0/0/0/0.25, dsn=2.0.0, status=sent "
            "(forwarded as 9F8E7D6C5B)")
    events, rest = fastpath.split(_batch([line]), ParseContext("f"))
    assert rest.height == 0
    row = events.row(0, named=True)
    assert (row["recipient"], row["orig_to"], row["relay"], row["delay"], row["dsn"],
            row["status"], row["detail"], row["next_queue_id"]) == (
        "a@x.example", "list@x.example", "local", 0.25, "2.0.0", "sent",
        None, "9F8E7D6C5B")  # a successful delivery's reply is not kept


@pytest.mark.parametrize("line", [
    "Feb 29 10:02:11 mx1 postfix/qmgr[1]: DBED828417: removed",  # leap day: Polars decides
    "Nov 14 10:02:11.5 mx1 postfix/qmgr[1]: DBED828417: removed",  # fraction
    "2016 Nov 14 10:02:11 mx1 postfix/qmgr[1]: DBED828417: removed",  # year prefix
    "<13>Nov 14 10:02:11 mx1 postfix/qmgr[1]: DBED828417: removed",  # PRI
    "Nov 14 10:02:11 mx1 postfix/qmgr[1]: DBED828417: from=<a>, size=1234567890123456789012345,"
    " nrcpt=1 (queue active)",  # a size Polars casts to null
    "Nov 14 10:02:11 mx1 postfix/cleanup[1]: DBED828417: info: header Subject: "
    "=?utf-8?Q?Gr=C3=BC=C3=9Fe?= from x[1.2.3.4]; from=<a> to=<b>",  # RFC 2047
    "Nov 14 10:02:11 mx1 postfix/smtp[1]: DBED828417: to=<a>, delay=1, relay=x, delays=1, "
    "dsn=2.0.0, status=sent (ok)",  # pairs out of order
    "Nov 14 10:02:11 mx1 postfix/smtpd[1]: NOQUEUE: reject: RCPT from x[1.2.3.4]: 554 no",
])
def test_unsure_lines_are_left_to_polars(line: str) -> None:
    assert _both([line]) == (0, 1)


_SEEDS = [line for kind, line in sorted(HOT.items())]
_BYTES = list(" :<>,;()=[]/.0123456789AXZaz-") + ["é", "\x00", "\t", "  ", "=?", ", status="]


@st.composite
def _mutated(draw: st.DrawFn) -> str:
    line = draw(st.sampled_from(_SEEDS))
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "swap", "huge"]))
        at = draw(st.integers(0, max(len(line) - 1, 0)))
        if op == "flip":
            line = line[:at] + draw(st.sampled_from(_BYTES)) + line[at + 1:]
        elif op == "cut":
            line = line[:at]
        elif op == "insert":
            line = line[:at] + draw(st.sampled_from(_BYTES)) + line[at:]
        elif op == "huge":
            line = line[:at] + "9" * draw(st.integers(15, 30)) + line[at:]
        else:  # two ", "-separated fields change places
            parts = line.split(", ")
            if len(parts) > 2:
                i, j = draw(st.integers(1, len(parts) - 1)), draw(st.integers(1, len(parts) - 1))
                parts[i], parts[j] = parts[j], parts[i]
            line = ", ".join(parts)
    return line


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_mutated(), min_size=1, max_size=40), st.sampled_from([2016, 2015, 1, 9999]))
def test_mutated_lines_equal(lines: list[str], year: int) -> None:
    _both(lines, year=year)


def test_equal_stamps_a_year_apart_keep_their_years() -> None:
    """Found by the property test: the lines left to Polars may hold one stamp twice with
    the fast path's lines (and a year's rollover) between; each keeps its own year."""
    _both(["Oct  1 12:18:16",
           "Feb  1 13:17:02 mail postfix/pickup[28541]: 08ACF1541B01: uid=0 from=<root>",
           "Oct  1 12:18:16 u86 postfix/bounce[12107]:  2FEB28781: sender non-delivery "
           "notification: B876628785"])


def test_lines_left_over_are_pooled_across_batches_and_read_the_same(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ingest pools the lines the fast path leaves over several batches before the Polars
    parser reads them (ingest.DEFER_LINES): a Postfix log with Sendmail lines in it (they
    go to their own parser) and a half-written last line, read in small batches with a
    small pool, gives the events and ledger of the Polars path alone."""
    import duckdb

    from detector import ingest as ingest_module
    from detector.ingest import ingest
    from detector.sources import discover
    from detector.warehouse import Warehouse

    lines = _read(ROOT / "sample_logs" / "mail.log")[:3000]
    sendmail = ("Nov 14 10:02:11 mx1 sendmail[4242]: u9EA2B0x004242: from=<root@mx1>, "
                "size=1234, class=0, nrcpts=1, msgid=<201611141002.u9EA2B0x004242@mx1>, "
                "relay=root@localhost")
    log = tmp_path / "mail.log"
    log.write_text("\n".join(lines[:1000] + [sendmail] + lines[1000:]) + "\n"
                   + lines[0][:30])  # no newline yet: a half-written line
    monkeypatch.setattr(ingest_module, "DEFER_LINES", 7)
    calls: list[bool] = []
    parse = ingest_module.parse_batch

    def counted(*args: object, **kw: object) -> ingest_module.ParsedBatch:
        calls.append(bool(kw.get("defer")))
        return parse(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(ingest_module, "parse_batch", counted)
    tables = {}
    for mode in ("1", "0"):
        monkeypatch.setenv(fastpath.ENV, mode)
        db = tmp_path / f"w{mode}.duckdb"
        with Warehouse(db) as wh:
            ingest(wh, discover([str(log)]), tz="UTC", year=2016, batch_bytes=16_384)
        tables[mode] = db
    assert calls.count(False) > 3  # the pooled lines were read in several flushes
    con = duckdb.connect()
    for mode, db in tables.items():
        con.execute(f"ATTACH '{db}' AS w{mode} (READ_ONLY)")
    for a, b in (("w1", "w0"), ("w0", "w1")):
        diff = con.execute(f"SELECT count(*) FROM (SELECT * FROM {a}.events EXCEPT ALL "
                           f"SELECT * FROM {b}.events)").fetchone()
        assert diff == (0,), (a, b)
    ledger = "SELECT format, bytes_ingested, lines, unparsed, first_ts, last_ts FROM {}.files"
    assert con.execute(ledger.format("w1")).fetchall() == \
        con.execute(ledger.format("w0")).fetchall()
    kinds = dict(con.execute("SELECT kind, count(*) FROM w1.events GROUP BY kind").fetchall())
    assert kinds.get("delivery", 0) > 100 and con.execute(
        "SELECT count(*) FROM w1.events WHERE program = 'sendmail'").fetchone() == (1,)


def test_lines_left_over_hold_no_buffer_of_their_batch() -> None:
    """The lines left to Polars are pooled across batches (ingest.DEFER_LINES): each must
    hold its own bytes, not the whole batch's buffers (a 10M-line night's ingest peaked at
    2 GB before they were compacted)."""
    lines = _read(ROOT / "sample_logs" / "mail.log")[:20000]
    split = fastpath.split_file_batch(_batch(lines), ParseContext("f"), "postfix",
                                      dispatch=True)
    assert split is not None
    _, rest = split
    assert 0 < rest.height < len(lines) // 10
    held = rest["raw"].to_arrow(compat_level=pl.CompatLevel.newest()).buffers()
    own = rest["raw"].str.len_bytes().sum() + 16 * rest.height  # its bytes and views
    assert sum(b.size for b in held if b is not None) < 2 * own + 4096
