"""The syslog header's fast path (one split per line, stamps converted once per run) must
give exactly what the general path gives, on any mix of layouts and damaged lines."""

from __future__ import annotations

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from detector.formats.syslog import (
    YearState,
    add_timestamps,
    assign_years,
    months_of_raw,
    parse_header,
    split_header,
)
from tests.conftest import lines_frame

MONTHS = ["Jan", "Feb", "Mar", "Jun", "Nov", "Dec", "Foo"]
TAGS = ["postfix/smtp[123]:", "postfix/qmgr:", "dovecot:", "sm-mta[9]:", "odd[x]:", "nocolon",
        "a:b[1]:", ""]
MESSAGES = ["ABC123DEF: to=<a@b>, relay=x", "", "connect from x[1.2.3.4]", "é ü: x", "  two"]

stamp = st.one_of(
    st.builds(lambda m, d, h, f: f"{m} {d:>2} {h:02d}:00:0{f}", st.sampled_from(MONTHS),
              st.integers(1, 31), st.integers(0, 25), st.sampled_from(["0", "1.25", "x"])),
    st.builds(lambda m, d: f"{m} {d} 10:00:00", st.sampled_from(MONTHS), st.integers(1, 31)),
    st.builds(lambda d, z: f"2016-11-{d:02d}T10:02:11.5{z}", st.integers(1, 31),
              st.sampled_from(["", "Z", "+01:00", "-0500"])),
    st.just("2013 Jun 10 06:27:30"),
)
header_line = st.builds(lambda s, sep, host, tag, msg: f"{s}{sep}{host} {tag} {msg}".rstrip(),
                        stamp, st.sampled_from([" ", "  "]), st.sampled_from(["mx1", "h-2", ""]),
                        st.sampled_from(TAGS), st.sampled_from(MESSAGES))
any_line = st.one_of(header_line, header_line, header_line, st.none(),
                     st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\n"),
                             max_size=40))


def _general(frame: pl.DataFrame, years: YearState) -> pl.DataFrame:
    return add_timestamps(split_header(frame), "Europe/Berlin", years)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(any_line, min_size=1, max_size=30), with_year=st.booleans())
def test_fast_header_agrees_with_the_general_path(lines: list[str | None],
                                                  with_year: bool) -> None:
    frame = lines_frame(lines)
    if with_year:  # as ingest hands batches over: years numbered ahead
        frame = frame.with_columns(assign_years(months_of_raw(frame["raw"]), YearState(2019)))
    fast_years, general_years = YearState(2019), YearState(2019)
    cols = ["raw", "line_no", "ts", "host", "prog", "msg"]
    fast = parse_header(frame, "Europe/Berlin", fast_years).select(cols).sort("line_no")
    general = _general(frame, general_years).select(cols).sort("line_no")
    assert_frame_equal(fast, general)
    assert fast_years == general_years


def test_fast_header_reads_each_layout() -> None:
    lines = ["Nov 14 10:02:11 mx1 postfix/smtp[1]: hello", "Nov  4 10:02:11 mx1 a: b",
             "2016-11-14T10:02:11.5+01:00 mx1 postfix/qmgr[2]: x: y"]
    for line in lines:
        out = parse_header(lines_frame([line, line]), "UTC", YearState(2016))
        assert out["host"].to_list() == ["mx1", "mx1"], line
        assert out["ts"].null_count() == 0, line
    iso = parse_header(lines_frame([lines[2]]), "UTC", YearState(2016))
    assert iso["ts"][0].isoformat() == "2016-11-14T09:02:11.500000+00:00"
    assert iso["prog"][0] == "postfix/qmgr" and iso["msg"][0] == "x: y"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(alphabet="JanFebMrApyulgSOctNovDcé \x00", max_size=6),
                          st.builds(lambda m, rest: m + rest,
                                    st.sampled_from(["Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
                                                     "jan", "NOV", "Se", "Decé"]),
                                    st.text(max_size=4))), max_size=30))
def test_the_month_of_a_line_is_that_of_its_first_three_characters(lines: list[str | None]
                                                                    ) -> None:
    names = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    want = [None if line is None or line[:3] not in names else names.index(line[:3]) + 1
            for line in lines]
    assert months_of_raw(pl.Series("raw", lines, dtype=pl.String)).to_list() == want
