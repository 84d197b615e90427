"""The Mailman parser (2.1 and 3): one line per kind, stamps, batching independence, the
real corpus, the renderer, and a Mailman site's storm end to end."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from bench import sample_logs
from detector import pipeline
from detector.formats import ParseContext, mailman
from detector.formats import sniff as sniff_format
from detector.formats.syslog import YearState
from detector.schema import EVENTS_SCHEMA
from detector.simulate.mailman import MAX_RECIPIENTS, list_posts, render_mailman, write_mailman
from detector.simulate.sendmail import write_sendmail
from detector.sources import iter_batches
from tests.conftest import lines_frame

FIELDS = ["message_id", "sender", "recipient", "orig_to", "size", "nrcpt", "delay", "dsn",
          "status", "detail"]
S2 = "Nov 14 10:02:11 2016 (4521) "  # Mailman 2.1 and 3 share the stamp
MID = "<CAH+w=7bXk2@mail.gmail.com>"


def parse_mailman(lines: Sequence[str | None], *, tz: str = "UTC") -> pl.DataFrame:
    ctx = ParseContext(source_file="post", tz=tz, years=YearState(1999))
    return mailman.parse(lines_frame(lines), ctx).sort("line_no")


def case(kind: str, line: str, id: str, **fields: object) -> object:
    return pytest.param(line, kind, fields, id=f"{kind}-{id}")


CASES = [
    case("list_post", f"{S2}post to all.staff from alice@nhs.example, size=4321, "
         f"message-id={MID}, success", "mm2",
         orig_to="all.staff", sender="alice@nhs.example", size=4321,
         message_id="CAH+w=7bXk2@mail.gmail.com", detail="success"),
    case("list_post", f"{S2}post to all.staff from alice@nhs.example, size=4321, "
         "message-id=<a, size=1, b@x>, 3 failures", "mm2-failures-hostile-id",
         orig_to="all.staff", sender="alice@nhs.example", size=4321,
         message_id="a, size=1, b@x", detail="3 failures"),
    case("list_post", f"{S2}{MID} post to all.staff@nhs.example from alice@nhs.example, "
         "333 bytes", "mm3", orig_to="all.staff@nhs.example", sender="alice@nhs.example",
         size=333, message_id="CAH+w=7bXk2@mail.gmail.com"),
    case("list_smtp", f"{S2}{MID} smtp to all.staff for 2600 recips, completed in 3.213 "
         "seconds", "mm2", orig_to="all.staff", nrcpt=2600, delay=3.213,
         message_id="CAH+w=7bXk2@mail.gmail.com"),
    case("list_smtp", f"{S2}{MID} smtp to all.staff@nhs.example for 1 recips, completed in "
         "0.059294939041137695 seconds", "mm3-float-repr", orig_to="all.staff@nhs.example",
         nrcpt=1, delay=0.059294939041137695, message_id="CAH+w=7bXk2@mail.gmail.com"),
    case("list_smtp_failure", f"{S2}delivery to bob@example.org failed with code 550: 5.1.1 "
         "<bob@example.org>... User unknown", "mm2-permanent", recipient="bob@example.org",
         status="bounced", dsn="5.1.1", detail="5.1.1 <bob@example.org>... User unknown"),
    case("list_smtp_failure", f"{S2}{MID} delivery to bob@example.org failed with code 451, "
         "4.3.0 try again later", "mm3-temporary", recipient="bob@example.org",
         message_id="CAH+w=7bXk2@mail.gmail.com", status="deferred", dsn="4.3.0",
         detail="4.3.0 try again later"),
    case("list_smtp_failure", f"{S2}Low level smtp error: (111, 'Connection refused'), "
         f"msgid: {MID}", "low-level", message_id="CAH+w=7bXk2@mail.gmail.com",
         detail="Low level smtp error: (111, 'Connection refused')"),
    case("list_held", f"{S2}all.staff post from eve@x.example held, message-id={MID}: Post by "
         "non-member to a members-only list", "mm2", orig_to="all.staff",
         sender="eve@x.example", message_id="CAH+w=7bXk2@mail.gmail.com",
         detail="Post by non-member to a members-only list"),
    case("list_held", f"{S2}HOLD: all.staff@nhs.example post from eve@x.example held, "
         f"message-id={MID}: The message is not from a list member", "mm3",
         orig_to="all.staff@nhs.example", sender="eve@x.example",
         message_id="CAH+w=7bXk2@mail.gmail.com",
         detail="The message is not from a list member"),
    case("list_accept", f"{S2}ACCEPT: {MID}", "mm3", message_id="CAH+w=7bXk2@mail.gmail.com"),
    case("list_moderation", f"{S2}all.staff: held message approved, message-id: {MID}",
         "mm2-approved", orig_to="all.staff", message_id="CAH+w=7bXk2@mail.gmail.com",
         detail=f"held message approved, message-id: {MID}"),
    case("list_moderation", f"{S2}DISCARD: {MID}", "mm3-discard",
         message_id="CAH+w=7bXk2@mail.gmail.com"),
    case("list_subscribe", f"{S2}all.staff: new bob@example.org, admin mass sub", "mm2",
         orig_to="all.staff", recipient="bob@example.org",
         detail="new bob@example.org, admin mass sub"),
    case("list_bounce", f"{S2}all.staff: bob@example.org bounce score: 1.0", "mm2-score",
         orig_to="all.staff", recipient="bob@example.org", detail="bounce score: 1.0"),
    case("runner", f"{S2}OutgoingRunner qrunner started.", "mm2-started",
         detail="OutgoingRunner qrunner started."),
    case("http", '[12/Jul/2025:10:31:10 +0000] "POST /3.1/queues/in HTTP/1.1" 201 0 "-" '
         '"curl/7.88.1"', "mm3-rest", detail='"POST /3.1/queues/in HTTP/1.1" 201 0 "-" '
         '"curl/7.88.1"'),
    case("error", f"{S2}Uncaught runner exception: unknown encoding", "uncaught",
         detail="Uncaught runner exception: unknown encoding"),
    case("traceback", "Traceback (most recent call last):", "head"),
    case("traceback", '  File "/usr/lib/mailman/Mailman/Queue/Runner.py", line 120, in x',
         "frame"),
    case("traceback", "LookupError: unknown encoding: x-unknown", "exception"),
    case("unparsed", "hello world", "junk"),
    case("unparsed", f"{S2}Something nobody has seen before", "unknown-shape"),
]


@pytest.mark.parametrize(("line", "kind", "fields"), CASES)
def test_line_kind_and_fields(line: str, kind: str, fields: dict[str, object]) -> None:
    row = parse_mailman([line]).row(0, named=True)
    assert row["kind"] == kind
    for name in FIELDS:
        assert row[name] == fields.get(name), name
    assert row["queue_id"] is None and row["host"] is None
    assert row["raw"] == (line if kind in ("traceback", "unparsed") else None)
    assert row["program"] == (None if kind in ("traceback", "unparsed") and not
                              line.startswith("Nov") else "mailman")


def test_every_kind_has_a_case() -> None:
    assert {p.values[1] for p in CASES} == set(mailman.KINDS)


def test_all_cases_in_one_batch_match_one_by_one() -> None:
    lines = [p.values[0] for p in CASES]
    together = parse_mailman(lines)
    alone = pl.concat([parse_mailman([line]) for line in lines]).with_columns(
        line_no=pl.int_range(1, len(lines) + 1, dtype=pl.Int64))
    assert_frame_equal(together, alone)


@pytest.mark.parametrize(("line", "ts"), [
    (f"{S2}OutgoingRunner qrunner started.", datetime(2016, 11, 14, 10, 2, 11, tzinfo=UTC)),
    ("Jul 02 10:31:12 2025 (29) ACCEPT: <x@y>", datetime(2025, 7, 2, 9, 31, 12, tzinfo=UTC)),
    ("Jul  2 10:31:12 2025 (29) ACCEPT: <x@y>", datetime(2025, 7, 2, 9, 31, 12, tzinfo=UTC)),
    ("[2025-07-02 10:31:12] (29) ACCEPT: <x@y>", datetime(2025, 7, 2, 9, 31, 12, tzinfo=UTC)),
    ("[2025-07-02 10:31:12 +0000] [29] [INFO] Starting gunicorn 20.1.0",
     datetime(2025, 7, 2, 10, 31, 12, tzinfo=UTC)),
    ('[02/Jul/2025:10:31:12 +0200] "GET /3.1/lists HTTP/1.1" 200 90',
     datetime(2025, 7, 2, 8, 31, 12, tzinfo=UTC)),
])
def test_stamps_carry_the_year_and_are_local_time_unless_offset(line: str,
                                                                ts: datetime) -> None:
    """The year state (1999) is ignored: Mailman writes the year."""
    assert parse_mailman([line], tz="Europe/London")["ts"].item() == ts


def test_sniff_accepts_mailman_and_refuses_syslog() -> None:
    assert mailman.sniff(['[12/Jul/2025:10:31:10 +0000] "POST /3.1/queues/in"',
                          f"{S2}ACCEPT: {MID}"])
    assert mailman.sniff([f"[2016-11-14 10:02:11] (1234) {MID} smtp to a@b for 1 recips"])
    assert not mailman.sniff(["Nov 14 10:02:11 mx1 sendmail[1]: x", "hello"])
    assert sniff_format([f"{S2}post to all.staff from a@b, size=1, message-id=<x>, "
                         "success"]) == "mailman"


@pytest.mark.parametrize("lines", [
    pytest.param([p.values[0] for p in CASES], id="all-kinds"),
    pytest.param([], id="empty"),
    pytest.param([None, "x"], id="only-unparsed"),
])
def test_parse_returns_exactly_the_events_schema(lines: list[str | None]) -> None:
    out = parse_mailman(lines)
    assert out.schema == EVENTS_SCHEMA
    assert out["line_no"].to_list() == list(range(1, len(lines) + 1))


any_line = st.one_of(
    st.sampled_from([p.values[0] for p in CASES]), st.none(),
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\n"), max_size=60),
    st.builds(lambda mon, day, msg: f"{mon} {day:02d} 10:00:00 2016 (1) {msg}",
              st.sampled_from(["Jan", "Jun", "Dec"]), st.integers(1, 28),
              st.sampled_from([p.values[0][len(S2):] for p in CASES
                               if p.values[0].startswith(S2)])),
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(any_line, min_size=1, max_size=25), data=st.data())
def test_parsing_is_independent_of_batching(lines: list[str | None],
                                            data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(lines) - 1)), max_size=4)))
    whole = mailman.parse(lines_frame(lines), ParseContext("f", tz="Europe/Berlin"))
    ctx = ParseContext("f", tz="Europe/Berlin")
    bounds = [0, *(c for c in cuts if c < len(lines)), len(lines)]
    split = pl.concat([mailman.parse(lines_frame(lines[a:b], first_line_no=a + 1), ctx)
                       for a, b in zip(bounds, bounds[1:], strict=False) if b > a])
    assert_frame_equal(whole.sort("line_no"), split.sort("line_no"))
    assert whole["kind"].null_count() == 0
    assert set(whole["kind"]) <= set(mailman.KINDS)


# --- the real corpus ------------------------------------------------------------------------


def test_corpus(corpus_dir: Path) -> None:
    posts = 0
    for path in sorted((corpus_dir / "mailman").glob("*.log")):
        assert mailman.sniff(path.read_text().splitlines()[:200]), path.name
        ctx = ParseContext(str(path), years=YearState(2000))
        events = pl.concat([mailman.parse(b, ctx) for b, _ in iter_batches(str(path))])
        lines = len(path.read_text().splitlines())
        assert events["line_no"].sort().to_list() == list(range(1, lines + 1))
        unparsed = events.filter(pl.col("kind") == "unparsed").height
        print(f"{path.name}: {unparsed}/{lines} lines unparsed")
        assert unparsed == 0, path.name
        assert events["ts"].null_count() == 0
        assert events["ts"].dt.year().min() >= 2018  # from the stamps, not the year state
        rows = events.filter(pl.col("kind").is_in(["list_post", "list_smtp"]))
        posts += rows.height
        for col in ("message_id", "orig_to"):
            assert rows[col].null_count() == 0, (path.name, col)
    assert posts == 12  # 6 posts, each with its smtp line


# --- the renderer ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def storm_day() -> tuple:
    site, _, day2, truth = sample_logs.build()
    return site, day2, truth


@pytest.mark.parametrize("version", [2, 3])
def test_rendered_logs_name_every_list_post(storm_day: tuple, version: int) -> None:
    site, day2, truth = storm_day
    logs = render_mailman(site, day2, seed=4, version=version)
    assert logs == render_mailman(site, day2, seed=4, version=version)  # deterministic
    events = pl.concat([
        mailman.parse(lines_frame(lines), ParseContext(name)) for name, lines in logs.items()])
    assert "unparsed" not in set(events["kind"])
    expected = [(p.message.message_id, p.list_address, p.recipients)
                for m in day2 for p in list_posts(site, m)]
    smtp = events.filter(pl.col("kind") == "list_smtp").sort("ts")
    posts = events.filter(pl.col("kind") == "list_post")
    assert smtp.height == posts.height == len(expected)
    assert set(posts["message_id"]) == {mid for mid, _, _ in expected}
    lists = {lst if version == 3 else lst.split("@")[0] for _, lst, _ in expected}
    assert set(posts["orig_to"]) == lists
    assert sorted(smtp["nrcpt"]) == sorted(n for _, _, n in expected)
    storm = posts.filter(pl.col("message_id").is_in(truth[0]["message_ids"]))
    assert storm.height == truth[0]["messages"]


def test_list_posts_are_what_the_mta_renderer_uses(storm_day: tuple) -> None:
    site, day2, truth = storm_day
    root = next(m for m in day2 if m.message_id == truth[0]["root_message_id"])
    [post] = list_posts(site, root)
    assert post.handoff_us < post.accept_us < post.chunks[0][0] <= post.last_chunk_us
    assert post.last_chunk_us < post.done_us
    assert [len(part) for _, part in post.chunks][:-1] == [MAX_RECIPIENTS] * (
        len(post.chunks) - 1)
    assert sum(len(part) for _, part in post.chunks) == truth[0]["list_size"]


# --- end to end: an MTA that does not show the list, and Mailman's logs ---------------------


@pytest.mark.parametrize("version", [2, 3])
def test_mailman_site_storm_names_the_list(storm_day: tuple, tmp_path: Path,
                                           version: int) -> None:
    """The MTA log alone shows 2,600 direct recipients per post; Mailman's logs name the
    list (Mailman 2 by name only: the model finds the address from the copies' sender)."""
    site, day2, truth = storm_day
    [t] = truth
    write_sendmail(tmp_path / "logs" / "maillog", site, day2, seed=1, lists="mailman")
    write_mailman(tmp_path / "logs" / "mailman", site, day2, seed=1, version=version)
    result = pipeline.run([str(tmp_path / "logs")], tmp_path / "out", tz="UTC", year=2016)
    [inc] = [i for i in (x.to_record() for x in result.incidents) if i["kind"] == "reply_storm"]
    assert inc["list"] == t["list"] == "all.staff@nhs.example"
    assert inc["root_message_id"] == t["root_message_id"]
    assert (inc["messages"], inc["repliers"]) == (t["messages"], t["repliers"])
    # a reply-all's author, on the list too, gets one copy from Mailman and one direct:
    # the model counts the two (same recipient, no list named on either) once
    assert t["deliveries"] - t["replies"] <= inc["deliveries"] <= t["deliveries"]
