"""The answer does not depend on how many threads computed it: the sample logs, run by the
CLI with one thread (``MAILSTORM_THREADS=1``, as the rest of the suite runs) and with four
(DuckDB's and Polars' pools of four on whatever cores there are), give the same rows in
every table of the dataset and the same incidents.

The oracle is the other run: parallel scans, joins and aggregates must not change a row,
an order-sensitive choice (a first sender, a root message) or an id.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from detector import THREADS_ENV
from detector.dataset import dataset_dir_of
from detector.schema import TABLES

REPO = Path(__file__).resolve().parents[1]
#: columns that say when a run happened, not what it found
RUN_TIME = {"first_reported"}


def _run(out: Path, threads: int) -> None:
    env = {**os.environ, THREADS_ENV: str(threads)}
    env.pop("POLARS_MAX_THREADS", None)  # this process's; the run sizes its own
    subprocess.run([sys.executable, "-m", "detector", "run", str(REPO / "sample_logs"),
                    "--year", "2016", "--tz", "UTC", "--out", str(out), "-q"],
                   env=env, check=True, cwd=out.parent)


def _rows(con: duckdb.DuckDBPyConnection, out: Path, table: str) -> str:
    folder = dataset_dir_of(out) / table
    pattern = folder / ("*/*.parquet" if TABLES[table].day else "*.parquet")
    cols = ", ".join(f'"{c}"' for c in TABLES[table].columns if c not in RUN_TIME)
    return f"SELECT {cols} FROM read_parquet('{pattern}', hive_partitioning = false)"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("threads")
    _run(work / "one", 1)
    _run(work / "four", 4)
    return work / "one", work / "four"


def test_one_thread_and_four_give_the_same_tables(runs: tuple[Path, Path]) -> None:
    one, four = runs
    con = duckdb.connect()
    differ, sizes = {}, {}
    for table in TABLES:
        a, b = _rows(con, one, table), _rows(con, four, table)
        sizes[table] = con.execute(f"SELECT count(*) FROM ({a})").fetchone()[0]
        only = [con.execute(f"SELECT count(*) FROM ({x} EXCEPT ALL {y})").fetchone()[0]
                for x, y in ((a, b), (b, a))]
        if any(only):
            differ[table] = only
    assert differ == {}
    # the comparison compared something: the sample's lines, messages and its storm
    assert sizes["events"] == 86_336 and sizes["messages"] == 3_177
    assert sizes["incidents"] >= 1


def test_one_thread_and_four_find_the_same_incidents(runs: tuple[Path, Path]) -> None:
    def found(out: Path) -> list[dict]:
        doc = json.loads((out / "incidents.json").read_text())
        return [{k: v for k, v in i.items() if k not in RUN_TIME}
                for i in doc["incidents"]]

    one, four = runs
    assert found(one) == found(four)
    assert [i["kind"] for i in found(one)] == ["reply_storm"]


@pytest.mark.parametrize("value", ["0", "x", "-2", "1.5"])
def test_a_bad_thread_count_is_a_one_line_usage_error(tmp_path: Path, value: str) -> None:
    env = {**os.environ, THREADS_ENV: value}
    done = subprocess.run([sys.executable, "-m", "detector", "run", str(REPO / "sample_logs"),
                           "--out", str(tmp_path / "out"), "-q"],
                          env=env, capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"Error: {THREADS_ENV} must be a whole number of threads, 1 or more (got {value!r})")
    assert not (tmp_path / "out" / "mailstorm.duckdb").exists()
