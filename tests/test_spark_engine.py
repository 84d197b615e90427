"""Identical answers: ``mailstorm run`` on DuckDB and on Spark (``--engine spark``,
``local[2]``) over the same logs, compared table by table and incident by incident.

The oracle of each engine is the other: every model table of the dataset (events,
messages, deliveries, logical_messages, threads, expansions, list_posts) must hold the
same rows, compared both ways with EXCEPT ALL (so duplicates count), and incidents.json
the same incidents. The inputs are (a) the sample logs, (b) a day of several MTAs' logs
(Postfix, Exim, Exchange, Sendmail with Mailman) with (c) an incident of every kind the
built-in rules detect, injected by the simulator (whose truth says they are there).

``message_key`` is a 64-bit hash of (host, queue_id, generation) whose function differs
per engine (DuckDB's ``hash``, Spark's ``xxhash64``): rows are compared by that natural
key instead (a delivery by its message's). Everything else, message_uid and thread_id
included (model version 4 names a message without a Message-ID by host, queue id and
generation, not by its key), must be equal as written.
"""

from __future__ import annotations

import gzip
import json
import os
import sys
from importlib.util import find_spec as _find_spec
from pathlib import Path
from typing import Any

import duckdb
import pytest

from bench.quality_matrix import QUICK
from detector.dataset import dataset_dir_of
from detector.pipeline import run
from detector.rules.loader import load_rules
from detector.schema import TABLES
from detector.simulate.day import INCIDENTS, Options, build_day, write_day
from detector.simulate.stamps import utc

REPO = Path(__file__).resolve().parents[1]
#: the sample log the copies are cut from
COPY_SOURCE = "mail.log"
#: the model tables compared (the incidents are compared as incidents.json)
MODEL = ["events", "messages", "deliveries", "logical_messages", "threads", "expansions",
         "list_posts"]
#: fields of incidents.json that say when the run happened, not what it found
RUN_TIME = {"first_reported"}


def _both(spark: Any, logs: list[Path], out: Path, **options: Any) -> tuple[Path, Path]:
    """Run both engines on ``logs``; their output folders."""
    duck, spk = out / "duckdb", out / "spark"
    common: dict[str, Any] = {"tz": "UTC", "year": 2016, **options}
    run([str(p) for p in logs], duck, **common)
    run([str(p) for p in logs], spk, engine="spark", spark_master="local[2]", **common)
    return duck, spk


def _table(dataset: Path, name: str) -> str:
    pattern = dataset / name / ("*/*.parquet" if TABLES[name].day else "*.parquet")
    return f"read_parquet('{pattern}', hive_partitioning = false)"


def _comparable(con: duckdb.DuckDBPyConnection, dataset: Path, tag: str) -> dict[str, str]:
    """table -> SELECT of its rows with the engine's hashes replaced by natural keys."""
    con.execute(f"""CREATE OR REPLACE TEMP VIEW keys_{tag} AS
        SELECT message_key, host, queue_id, generation FROM {_table(dataset, 'messages')}""")
    selects = {}
    for name in MODEL:
        cols, joins = [], ""
        for col in TABLES[name].columns:
            if col != "message_key":
                cols.append(f't."{col}"')
        if name == "deliveries":  # a delivery's message by its natural key
            cols.append("k.generation")
            joins += f" LEFT JOIN keys_{tag} k ON k.message_key = t.message_key"
        selects[name] = f"SELECT {', '.join(cols)} FROM {_table(dataset, name)} t{joins}"
    return selects


def _differences(duck: Path, spk: Path) -> dict[str, tuple[int, int, int]]:
    """table -> (rows, rows only DuckDB's has, rows only Spark's has)."""
    con = duckdb.connect()
    a = _comparable(con, dataset_dir_of(duck), "a")
    b = _comparable(con, dataset_dir_of(spk), "b")
    found = {}
    for name in MODEL:
        def count(sql: str) -> int:
            row = con.execute(f"SELECT count(*) FROM ({sql})").fetchone()
            return int(row[0]) if row else 0
        found[name] = (count(a[name]), count(f"{a[name]} EXCEPT ALL {b[name]}"),
                       count(f"{b[name]} EXCEPT ALL {a[name]}"))
    return found


def _incidents(out: Path) -> list[dict[str, Any]]:
    found = json.loads((out / "incidents.json").read_text())["incidents"]
    return [{k: v for k, v in i.items() if k not in RUN_TIME} for i in found]


def _assert_same(duck: Path, spk: Path, *, tables: list[str]) -> None:
    diff = _differences(duck, spk)
    assert {n: d for n, d in diff.items() if d[1] or d[2]} == {}, diff
    for name in tables:  # the comparison compared something
        assert diff[name][0] > 0, f"{name} is empty: nothing was compared"
    a, b = _incidents(duck), _incidents(spk)
    assert [i["id"] for i in a] == [i["id"] for i in b]
    for x, y in zip(a, b, strict=True):
        assert x == y, x["id"]


@pytest.fixture(scope="module")
def mixed_day(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """Two days of four MTAs' logs: Postfix holding a reply, automatic-answer and bounce
    storm and a mail loop, Exim a fan-out the next day (at the quality matrix's sizes:
    tests/test_quality.py finds each; a fan-out the same day as the others is not
    reported as one of its own),
    and the ordinary mail of Exchange and Sendmail hosts."""
    work = tmp_path_factory.mktemp("mixed")
    site, messages, truth = build_day([k for k in INCIDENTS if k != "fanout"], seed=5,
                                      options=QUICK)
    write_day(work / "postfix", "postfix", site, messages, truth, seed=5)
    site, messages, fanout = build_day(["fanout"], seed=5, options=QUICK,
                                       day=utc(2016, 11, 15))
    write_day(work / "exim", "exim", site, messages, fanout, seed=5)
    quiet = Options(background=150)
    for i, fmt in enumerate(["exchange", "mailman"]):
        site, messages, _ = build_day([], seed=10 + i, options=quiet)
        write_day(work / fmt, fmt, site, messages, [], seed=10 + i)
    _copies(work / "copies" / "logs")
    return work, [*truth, *fanout]


#: lines of the log the copies are cut from, and where the shorter copies stop
COPY_LINES, COPY_CUT = 400, 150


def _copies(folder: Path) -> None:
    """Another relay's log three times over, as a careless rotation leaves it: the first
    150 lines and half of the next (no newline yet) gzipped, the same uncompressed,
    and the first 400 lines whole. The ledger reads each line once: the second file
    adds only the half line, the third goes on from the second's last newline."""
    folder.mkdir(parents=True)
    text = (REPO / "sample_logs" / COPY_SOURCE).read_bytes().replace(b" mx1 ", b" mx9 ")
    lines = text.splitlines(keepends=True)  # another host's: no message shared
    short = b"".join(lines[:COPY_CUT]) + lines[COPY_CUT][:40]
    (folder / "copy-1.log.gz").write_bytes(gzip.compress(short))
    (folder / "copy-2.log").write_bytes(short)
    (folder / "copy-3.log").write_bytes(b"".join(lines[:COPY_LINES]))


@pytest.mark.spark
def test_the_sample_logs_and_a_mixed_day_give_the_same_tables_and_incidents(
        spark_session: Any, mixed_day: tuple[Path, list[dict]], tmp_path: Path) -> None:
    """One run of each engine over the sample logs and the mixed day together: a Spark
    run costs about the same whatever its size at this scale (many small jobs), so one
    run compares both inputs for the price of one."""
    work, truth = mixed_day
    logs = [REPO / "sample_logs", *sorted(p for p in work.glob("*/logs"))]
    duck, spk = _both(spark_session, logs, tmp_path)
    _assert_same(duck, spk, tables=["events", "messages", "deliveries", "logical_messages",
                                    "threads"])
    kinds = {i["kind"] for i in _incidents(duck)}
    # every kind the built-in rules detect was there to compare
    assert {r.kind for r in load_rules(REPO / "rules")} <= kinds
    assert {str(t["kind"]) for t in truth} <= kinds
    # the ledger of the files read: the executors counted what ingest counts
    ledgers = []
    for out in (duck, spk):
        with duckdb.connect(str(out / "mailstorm.duckdb"), read_only=True) as con:
            ledgers.append(con.execute(
                "SELECT path, format, head_len, head_sha256, bytes_ingested, lines, unparsed, "
                "first_ts, last_ts, year_source FROM files ORDER BY path").fetchall())
    assert ledgers[0] == ledgers[1]
    samples = [row for row in ledgers[0] if "sample_logs" in row[0]]
    assert [row[5] for row in samples] == [60875, 25461]
    formats = {f for row in ledgers[0] for f in row[1].split("+")}
    assert {"postfix", "exim", "exchange", "sendmail"} <= formats
    # the copies: one row, the longest's, counting each of its lines once
    copies = [row for row in ledgers[0] if "/copies/" in row[0]]
    assert [(Path(row[0]).name, row[5]) for row in copies] == [("copy-3.log", COPY_LINES)]


#: the corpus's differential is CI's own step (.ci/run), apart from the test suite: a Spark
#: run over its 46 files takes about a minute and a half
CORPUS_STEP = "MAILSTORM_SPARK_CORPUS"


@pytest.mark.spark
@pytest.mark.skipif(os.environ.get(CORPUS_STEP) != "1",
                    reason=f"{CORPUS_STEP}=1 runs it (.ci/run does, after the suite)")
def test_the_corpus_gives_the_same_tables_and_incidents(
        spark_session: Any, corpus_dir: Path, tmp_path: Path) -> None:
    """Real logs of servers nobody here wrote (../shared/corpus, seven MTAs' formats),
    every table and incident compared."""
    duck, spk = _both(spark_session, [corpus_dir], tmp_path, skip_unknown=True)
    _assert_same(duck, spk, tables=["events", "messages", "deliveries", "logical_messages",
                                    "threads", "list_posts"])


def test_without_pyspark_the_spark_engine_is_a_one_line_usage_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from detector.cli import main

    monkeypatch.setitem(sys.modules, "pyspark", None)  # import pyspark fails, as uninstalled
    result = CliRunner().invoke(main, ["run", str(REPO / "sample_logs"), "--out",
                                       str(tmp_path / "out"), "--engine", "spark"])
    assert result.exit_code == 2, result.output
    assert "pip install 'mailstorm[spark]'" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()  # refused before anything was read or written


def test_spark_connect_without_its_client_is_a_one_line_usage_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sc:// needs the Connect client's packages (grpcio and others, in the spark extra)."""
    from click.testing import CliRunner

    from detector.cli import main

    pytest.importorskip("pyspark")
    monkeypatch.setattr("importlib.util.find_spec",  # grpc as if not installed
                        lambda name, *a: None if name == "grpc" else _find_spec(name, *a))
    result = CliRunner().invoke(main, ["run", str(REPO / "sample_logs"), "--out",
                                       str(tmp_path / "out"), "--engine", "spark",
                                       "--spark-master", "sc://localhost:15002"])
    assert result.exit_code == 2, result.output
    assert "Spark Connect client (grpc is missing)" in result.output
    assert "pip install 'mailstorm[spark]'" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()
