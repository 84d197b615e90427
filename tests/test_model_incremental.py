"""An incremental model build gives the rows a full build gives.

The oracle is the full build over the same events: a log read night by night (here, a
file that grows between runs, cut anywhere, even inside a message) must leave every model
table equal, row for row, to building it afresh from all the events at once.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from detector.ingest import ingest
from detector.model.build import MODEL_TABLES, MODEL_VIEWS, build_model
from detector.simulate.day import Options, build_day, write_day
from detector.sources import discover
from detector.warehouse import Warehouse

SAMPLES = Path(__file__).resolve().parents[1] / "sample_logs"
#: the tables the tests below read, as the incremental builds left them
RETURNED = ("messages", "logical_messages", "threads")


def _keep(wh: Warehouse) -> None:
    """Copy the model tables as the incremental builds left them into a database in
    memory (``kept``), for ``_assert_full_build_same`` to compare in DuckDB."""
    wh.con.execute("ATTACH IF NOT EXISTS ':memory:' AS kept")
    for table in MODEL_TABLES + MODEL_VIEWS:
        wh.con.execute(f"CREATE OR REPLACE TABLE kept.main.{table} AS SELECT * FROM {table}")


def _assert_full_build_same(wh: Warehouse) -> None:
    """Build afresh from all the events; every table must hold the kept rows, duplicates
    counted (EXCEPT ALL both ways)."""
    assert build_model(wh, full=True).full
    for table in MODEL_TABLES + MODEL_VIEWS:
        kept, full = f"kept.main.{table}", f"(SELECT * FROM {table})"
        got, rows = (wh.scalar(f"SELECT count(*) FROM {t}") for t in (kept, full))
        assert got == rows, f"{table}: {got} rows, a full build has {rows}"
        missing = wh.con.execute(f"SELECT * FROM {full} EXCEPT ALL SELECT * FROM {kept} "
                                 "LIMIT 3").fetchall()
        extra = wh.con.execute(f"SELECT * FROM {kept} EXCEPT ALL SELECT * FROM {full} "
                               "LIMIT 3").fetchall()
        assert not missing and not extra, f"{table}: missing {missing}, extra {extra}"


def _grow_and_build(tmp_path: Path, lines: list[bytes], cuts: list[int],
                    name: str = "mail.log") -> dict[str, list[tuple]]:
    """Write the log in pieces (the file grows between runs), ingest and build after each;
    return the tables, then check them against a full build."""
    return _grow_all_and_build(tmp_path, {name: (lines, cuts)})


def _grow_all_and_build(tmp_path: Path, logs: dict[str, tuple[list[bytes], list[int]]]
                        ) -> dict[str, list[tuple]]:
    """Each log (name -> its lines and where to cut them, as many cuts each) grows piece by
    piece, all of them between two runs; ingest and build after each piece; return the
    tables, then check them against a full build."""
    folder = tmp_path / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    pieces = {name: list(zip(bounds, bounds[1:], strict=False)) for name, bounds in
              ((name, [0, *sorted(cuts), len(lines)]) for name, (lines, cuts) in logs.items())}
    stages = {len(p) for p in pieces.values()}
    assert len(stages) == 1, "every log is cut as many times"
    for name in logs:
        (folder / name).write_bytes(b"")
    with Warehouse(tmp_path / "w.duckdb") as wh:
        fulls = []
        for stage in range(stages.pop()):
            for name, (lines, _) in logs.items():
                a, b = pieces[name][stage]
                with (folder / name).open("ab") as f:
                    f.writelines(lines[a:b])
            ingest(wh, discover([str(folder)]), year=2016)
            fulls.append(build_model(wh).full)
        assert fulls[0] and not any(fulls[1:]), "only the first build reads everything"
        _keep(wh)
        incremental = {t: wh.con.execute(f"SELECT * FROM {t}").fetchall() for t in RETURNED}
        _assert_full_build_same(wh)
    return incremental


FORMATS = ["postfix", "sendmail", "exim", "exchange", "m365", "mailman", "maillog"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_day_read_in_pieces_builds_what_it_builds_whole(tmp_path: Path, fmt: str) -> None:
    site, messages, truth = build_day(
        ["reply_storm", "mail_loop", "bounce_storm", "fanout"], seed=3,
        options=Options(list_size=120, repliers=12, background=250))
    log = write_day(tmp_path / "sim", fmt, site, messages, truth)
    lines = log.read_bytes().splitlines(keepends=True)
    rng = random.Random(fmt)
    cuts = rng.sample(range(1, len(lines)), 3)  # anywhere: inside messages, storms, lists
    tables = _grow_and_build(tmp_path, lines, cuts, name=log.name)
    assert tables["logical_messages"], "the day has messages"


def test_the_sample_storm_read_in_pieces(tmp_path: Path) -> None:
    lines = (SAMPLES / "mail.log").read_bytes().splitlines(keepends=True)
    n = len(lines)
    # cut in the storm's first minutes, in its middle, and in the delivery tail
    tables = _grow_and_build(tmp_path, lines, [n // 3, n // 2, 9 * n // 10])
    # the storm's thread, summed over its messages, is what the storm's truth file says:
    # its messages and the out-of-office answers (each to one person) to them
    truth = json.loads((SAMPLES / "truth.json").read_text("utf-8"))[0]
    (thread,) = [t for t in tables["threads"] if t[3] == truth["root_message_id"]]
    _, lst, subject, _, _, _, messages, replies, senders, deliveries = thread
    auto = truth["auto_replies"]
    assert (lst, subject, messages, replies, deliveries) == (
        truth["list"], truth["subject"], truth["messages"] + auto, truth["replies"] + auto,
        truth["deliveries"] + auto)
    people = len({truth["root_sender"], *truth["replier_addresses"]})
    assert people <= senders <= people + auto


def _corpus_folders() -> list[Path]:
    from tests.conftest import CORPUS_DIR

    if not CORPUS_DIR.is_dir():
        return []
    return sorted(p for p in CORPUS_DIR.iterdir() if p.is_dir())


@pytest.mark.parametrize("folder", _corpus_folders(), ids=lambda p: p.name)
def test_real_logs_read_in_pieces(corpus_dir: Path, tmp_path: Path, folder: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Lines from servers nobody here wrote, cut anywhere: every file of the corpus, the
    files of one folder growing together (a night's logs of several hosts), so that
    messages the samples share across files are related too.

    Their samples come from many servers and years, and the year of a stamp without one
    jumps where they were pasted together: an instance of a Message-ID can be a year
    from the other. The build looks for such relations within LOOKBACK only (by design:
    a night must not read all history), so here LOOKBACK spans the files."""
    monkeypatch.setattr("detector.model.build.LOOKBACK", timedelta(days=3650))
    logs = {}
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        lines = path.read_bytes().splitlines(keepends=True)
        if len(lines) < 4:  # too short to cut: read whole in the first piece
            logs[path.name] = (lines, [len(lines)] * 3)
            continue
        # the first piece holds half the file, so that its format can be told (a file of
        # headers alone is of no known format yet: a different matter)
        after = range(len(lines) // 2, len(lines))
        # (a short file cut twice at one place grows by nothing at a run: also a case)
        rng = random.Random(path.name)
        cuts = rng.sample(after, 3) if len(after) >= 3 else rng.choices(after, k=3)
        logs[path.name] = (lines, cuts)
    assert logs
    _grow_all_and_build(tmp_path, logs)


def _postfix(day: str, qid: str, mid: str, rcpt: str) -> list[bytes]:
    """One message through a Postfix host, as it logs it: arrival, delivery, removal."""
    return [line.encode() + b"\n" for line in (
        f"{day} 10:00:00 mx1 postfix/smtpd[100]: {qid}: client=a.example[192.0.2.1]",
        f"{day} 10:00:00 mx1 postfix/cleanup[101]: {qid}: message-id=<{mid}>",
        f"{day} 10:00:00 mx1 postfix/qmgr[102]: {qid}: from=<a@x.example>, size=900, "
        "nrcpt=1 (queue active)",
        f"{day} 10:00:01 mx1 postfix/smtp[103]: {qid}: to=<{rcpt}>, relay=y[192.0.2.2]:25, "
        "delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 ok)",
        f"{day} 10:00:01 mx1 postfix/qmgr[102]: {qid}: removed")]


def test_a_queue_id_used_again_weeks_later_leaves_its_first_use_alone(
        tmp_path: Path) -> None:
    """Postfix's short queue ids come back on a busy host. A night that reuses one read
    every earlier use of it again, and looked for incidents from there: a month's
    history for one line. The first use, long gone from the queue, is now kept as stored,
    and the new use is numbered after it, as a full build numbers it."""
    days = [_postfix("Nov  1", "3F2A81C0D4", "first@x.example", "b@y.example"),
            _postfix("Nov 20", "3F2A81C0D4", "second@x.example", "c@y.example"),
            _postfix("Nov 21", "3F2A81C0D4", "third@x.example", "d@y.example")]
    log = tmp_path / "mail.log"
    log.write_bytes(b"")
    with Warehouse(tmp_path / "w.duckdb") as wh:
        built = []
        for lines in days:
            with log.open("ab") as f:
                f.writelines(lines)
            ingest(wh, discover([str(log)]), year=2016)
            built.append(build_model(wh))
        # the nights after read only their own use of the queue id: the use of the day
        # before (within LOOKBACK) is over too, as nothing the new lines reach relates
        # to it; and each looks for incidents from its own lines on
        assert [b.messages for b in built] == [1, 1, 1]
        assert [b.since.day if b.since else None for b in built] == [1, 20, 21]
        assert wh.query("SELECT message_id, generation, removed_at IS NOT NULL "
                        "FROM messages ORDER BY first_seen").rows() == [
            ("first@x.example", 0, True), ("second@x.example", 1, True),
            ("third@x.example", 2, True)]
        _keep(wh)
        _assert_full_build_same(wh)


def test_a_message_back_under_its_queue_id_weeks_later_is_read_whole(
        tmp_path: Path) -> None:
    """The same Message-ID under the same queue id (a message logged again, or a copy of
    the log pasted a year on): its first use is read again, and the two make the one
    message a full build makes."""
    lines = (_postfix("Nov  1", "3F2A81C0D4", "same@x.example", "b@y.example")
             + _postfix("Nov 20", "3F2A81C0D4", "same@x.example", "b@y.example"))
    _grow_and_build(tmp_path, lines, [5])


def test_days_of_a_queue_that_reuses_its_ids_read_night_by_night(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A busy Postfix queue's short ids come back daily: here every day draws its ids
    from one pool of 400, so most of a day's queue ids were used the day before. Read
    night by night (and once inside the storm), the model is the one a full build
    makes: uses that are over are kept, the others read again."""
    from detector.simulate.day import utc
    from detector.simulate.processes import QueueIds

    pool = [f"{i:05X}{0x10000 + 7 * i:05X}" for i in range(400)]

    def new(self: QueueIds, t_us: int) -> str:  # unique within a day, as Postfix's are
        qid = next(q for q in self.rng.sample(pool, len(pool)) if q not in self.used)
        self.used.add(qid)
        return qid

    monkeypatch.setattr(QueueIds, "new", new)
    lines: list[bytes] = []
    cuts = []
    for d in (14, 15, 16):
        site, messages, truth = build_day(
            ["reply_storm"] if d == 15 else [], seed=3, day=utc(2016, 11, d),
            options=Options(list_size=60, repliers=6, background=200))
        log = write_day(tmp_path / f"day{d}", "postfix", site, messages, truth, seed=d)
        day_lines = log.read_bytes().splitlines(keepends=True)
        cuts += [len(lines)] + ([len(lines) + len(day_lines) // 2] if d == 15 else [])
        lines += day_lines
    tables = _grow_and_build(tmp_path / "w", lines, [c for c in cuts if c > 0])
    reused = Counter((m[1], m[2]) for m in tables["messages"])  # host, queue_id
    assert sum(n > 1 for n in reused.values()) > 100, "the days share most queue ids"
