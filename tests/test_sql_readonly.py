"""Issue 12 point 4: `mailstorm sql` is read-only for real, and its output streams."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from detector import pipeline
from detector.cli import main

SAMPLES = Path(__file__).resolve().parents[1] / "sample_logs"


@pytest.fixture(scope="module")
def wh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real warehouse: the sample logs, run once for the module."""
    out = tmp_path_factory.mktemp("wh")
    pipeline.run([str(SAMPLES)], out, year=2016)
    return out / "mailstorm.duckdb"


def _sql(db: Path, query: str, *extra: str):
    return CliRunner().invoke(main, ["sql", query, "--db", str(db), *extra])


def _snapshot(*folders: Path) -> dict[str, tuple[int, int]]:
    """Every file under the folders with its size and modification time."""
    seen: dict[str, tuple[int, int]] = {}
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file():
                st = path.stat()
                seen[str(path)] = (st.st_size, st.st_mtime_ns)
    return seen


ATTACKS = [
    "COPY (SELECT '<script>alert(1)</script>') TO '{tmp}/x.html'",
    "COPY (SELECT 1) TO '{pq}/events/part-evil.parquet'",
    "COPY (SELECT 1) TO '{out}/index.html'",
    "EXPORT DATABASE '{tmp}/d'",
    "EXPORT DATABASE '{pq}/d'",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_csv('/etc/passwd', sep = ':')",
    "SELECT * FROM sniff_csv('/etc/passwd')",
    "SELECT * FROM read_blob('{out}/index.html')",
    "SELECT * FROM read_text('{pq}/../index.html')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM read_parquet('https://example.com/x.parquet')",
    "INSTALL httpfs",
    "LOAD httpfs",
    "CREATE SECRET s (TYPE s3, KEY_ID 'a', SECRET 'b')",
    "CREATE PERSISTENT SECRET s (TYPE s3, KEY_ID 'a', SECRET 'b')",
    "SET memory_limit = '100GB'",
    "SET enable_external_access = true",
    "SET allowed_directories = ['/']",
    "SET lock_configuration = false",
    "RESET lock_configuration",
    "ATTACH '{tmp}/a.duckdb'",
    "ATTACH '{pq}/a.duckdb'",
    "DELETE FROM events",
    "DELETE FROM incidents",
    "CREATE TABLE t (a INT)",
    "INSERT INTO meta VALUES ('k', 'v')",
    "SELECT 1; COPY (SELECT 1) TO '{tmp}/y.csv'",
    "PREPARE p AS COPY (SELECT 1) TO '{tmp}/z.csv'",
]


@pytest.mark.parametrize("attack", ATTACKS)
def test_attack_fails_in_one_line_and_changes_nothing(wh: Path, tmp_path: Path,
                                                      attack: str) -> None:
    query = attack.format(tmp=tmp_path, out=wh.parent, pq=wh.with_name("mailstorm.parquet"))
    before = _snapshot(wh.parent, tmp_path)
    res = _sql(wh, query)
    assert res.exit_code == 1, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    assert _snapshot(wh.parent, tmp_path) == before
    assert "root:" not in res.output


def test_the_memory_limit_is_the_projects(wh: Path) -> None:
    from detector.warehouse import default_memory_limit, parse_size

    res = _sql(wh, "SELECT current_setting('memory_limit') AS m", "--format", "csv")
    assert res.exit_code == 0, res.output
    shown = res.output.splitlines()[1]
    # DuckDB shows it in binary units: within 5% of the limit set
    assert abs(parse_size(shown) - parse_size(default_memory_limit())) \
        < parse_size(default_memory_limit()) * 0.05


@pytest.mark.parametrize("query", [
    "SELECT count(*) AS n FROM events",
    "SELECT count(*) AS n FROM deliveries",
    "SELECT count(*) AS n FROM logical_messages",
    "SELECT count(*) AS n FROM incidents",
    "SELECT kind, count(*) AS n FROM events GROUP BY kind ORDER BY n DESC",
    "DESCRIBE deliveries",
    "SUMMARIZE incidents",
    "SET VARIABLE k = 'reply_storm'; SELECT count(*) AS n FROM incidents "
    "WHERE kind = getvariable('k')",
])
def test_legitimate_queries_still_work(wh: Path, query: str) -> None:
    res = _sql(wh, query, "--format", "csv")
    assert res.exit_code == 0, res.output
    rows = list(csv.reader(io.StringIO(res.output)))
    assert len(rows) >= 2


def test_counts_match_the_warehouse(wh: Path) -> None:
    res = _sql(wh, "SELECT (SELECT count(*) FROM events) AS e, "
                   "(SELECT count(*) FROM deliveries) AS d", "--format", "json")
    assert res.exit_code == 0, res.output
    [row] = json.loads(res.output)
    assert row["e"] == 86336 and row["d"] > 50000


def test_allow_files_lets_copy_write_the_path_named(wh: Path, tmp_path: Path) -> None:
    target = tmp_path / "inc.csv"
    res = _sql(wh, f"COPY (SELECT kind, count(*) AS n FROM deliveries JOIN incidents "
                   f"ON false GROUP BY kind UNION ALL SELECT 'events', count(*) FROM events) "
                   f"TO '{target}'", "--allow-files", str(target))
    assert res.exit_code == 0, res.output
    assert target.read_text().splitlines() == ["kind,n", "events,86336"]
    # a folder opens everything under it
    res = _sql(wh, f"EXPORT DATABASE '{tmp_path / 'dump'}'", "--allow-files", str(tmp_path))
    assert res.exit_code == 0, res.output
    assert (tmp_path / "dump" / "schema.sql").is_file()


def test_allow_files_opens_only_the_path_named(wh: Path, tmp_path: Path) -> None:
    before = _snapshot(wh.parent, tmp_path)
    pq = wh.with_name("mailstorm.parquet")
    for query in (f"COPY (SELECT 1) TO '{tmp_path / 'other.csv'}'",
                  f"COPY (SELECT 1) TO '{pq / 'events' / 'part-evil.parquet'}'",
                  f"COPY (SELECT 1) TO '{next((pq / 'events').glob('part-*.parquet'))}'",
                  "SELECT * FROM read_text('/etc/passwd')"):
        res = _sql(wh, query, "--allow-files", str(tmp_path / "mine.csv"))
        assert res.exit_code == 1 and res.output.startswith("Error: "), res.output
    assert _snapshot(wh.parent, tmp_path) == before


def test_allow_files_refuses_the_warehouses_own_files(wh: Path) -> None:
    for own in (wh, wh.with_name("mailstorm.parquet"), wh.parent):
        res = _sql(wh, "SELECT 1", "--allow-files", str(own))
        assert res.exit_code != 0 and "warehouse's own files" in res.output, res.output


def test_formats_stream_the_same_rows(wh: Path) -> None:
    query = "SELECT i, i % 7 AS m, NULL AS z FROM range(5000) t(i) ORDER BY i"
    as_csv = list(csv.reader(io.StringIO(_sql(wh, query, "--format", "csv").output)))
    assert as_csv[0] == ["i", "m", "z"] and len(as_csv) == 5001 and as_csv[-1] == ["4999", "1", ""]
    as_json = json.loads(_sql(wh, query, "--format", "json").output)
    assert len(as_json) == 5000 and as_json[4999] == {"i": 4999, "m": 1, "z": None}
    assert json.loads(_sql(wh, "SELECT 1 WHERE false", "--format", "json").output) == []
    table = _sql(wh, query).output.splitlines()
    assert table[0].split() == ["i", "m", "z"] and len(table) == 5002


def test_pipe_into_head_ends_quietly(wh: Path) -> None:
    """A real pipe: the reader leaves after 5 lines; mailstorm exits 0, no traceback."""
    for fmt in ("table", "csv", "json"):
        proc = subprocess.Popen(
            [sys.executable, "-m", "detector", "sql", "SELECT * FROM range(3000000)",
             "--db", str(wh), "--format", fmt],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ})
        assert proc.stdout is not None and proc.stderr is not None
        head = [proc.stdout.readline() for _ in range(5)]
        proc.stdout.close()  # what head does after its 5 lines
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=120) == 0, err
        assert err == "", err
        assert all(head)


def test_pipe_into_head_shell(wh: Path) -> None:
    res = subprocess.run(
        ["bash", "-c", 'set -o pipefail; "$0" -m detector sql "SELECT * FROM range(3000000)" '
                       '--db "$1" --format csv | head -n 5', sys.executable, str(wh)],
        capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["range", "0", "1", "2", "3"]
    assert "Traceback" not in res.stderr and "Broken pipe" not in res.stderr
