"""The schema registry: README's column tables are generated from it, `mailstorm schema`
prints it, and its DDL builds tables DuckDB describes as the registry says.

Regenerate README's tables after changing a column or a description:
    MAILSTORM_UPDATE_DOCS=1 .venv/bin/pytest tests/test_schema.py
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from detector.cli import main
from detector.schema import EVENT_COLUMNS, TABLES, TYPES, markdown_columns

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"(<!-- schema:(\w+) -->\n).*?(<!-- /schema:\2 -->)", re.DOTALL)


def render_readme(text: str) -> str:
    """README with every ``<!-- schema:NAME -->`` block holding NAME's column table."""
    return _BLOCK.sub(lambda m: f"{m[1]}{markdown_columns(TABLES[m[2]])}\n{m[3]}", text)


def test_readme_tables_are_up_to_date() -> None:
    text = README.read_text(encoding="utf-8")
    assert sorted(m[2] for m in _BLOCK.finditer(text)) == sorted(TABLES)
    expected = render_readme(text)
    if os.environ.get("MAILSTORM_UPDATE_DOCS"):
        README.write_text(expected, encoding="utf-8")
    assert text == expected, ("README's tables are stale: run MAILSTORM_UPDATE_DOCS=1 "
                              "pytest tests/test_schema.py")


def test_events_are_the_parsers_columns() -> None:
    assert list(TABLES["events"].columns) == list(EVENT_COLUMNS)
    assert all(c.type in TYPES for t in TABLES.values() for c in t.columns.values())


def test_schema_json_is_the_registry() -> None:
    res = CliRunner().invoke(main, ["schema", "--format", "json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.output)
    assert list(got) == list(TABLES)
    for name, table in TABLES.items():
        assert got[name]["day"] == table.day
        assert [(c["name"], c["type"], c["description"]) for c in got[name]["columns"]] \
            == [(n, c.type, c.description) for n, c in table.columns.items()]


def test_schema_sql_builds_what_the_registry_says() -> None:
    res = CliRunner().invoke(main, ["schema", "--format", "sql"])
    assert res.exit_code == 0, res.output
    con = duckdb.connect()
    con.execute(res.output)
    for name, table in TABLES.items():
        described = [(r[0], r[1]) for r in con.execute(f"DESCRIBE {name}").fetchall()]
        assert described == [(n, c.duckdb_type) for n, c in table.columns.items()]
        comments = dict(con.execute("SELECT column_name, comment FROM duckdb_columns() "
                                    "WHERE table_name = ?", [name]).fetchall())
        assert comments == {n: c.description for n, c in table.columns.items()}


@pytest.mark.parametrize("fmt", ["text", "markdown"])
def test_one_table(fmt: str) -> None:
    res = CliRunner().invoke(main, ["schema", "threads", "--format", fmt])
    assert res.exit_code == 0, res.output
    assert all(name in res.output for name in TABLES["threads"].columns)
    assert "message_key" not in res.output


def test_unknown_table_is_a_usage_error() -> None:
    res = CliRunner().invoke(main, ["schema", "nope"])
    assert res.exit_code == 2
    assert "unknown table 'nope'" in res.output


def test_a_view_asked_for_again_unchanged_keeps_its_comments(tmp_path: Path) -> None:
    """Every open asks for its views again (the folder may have moved): one whose text is
    the same is not made again, so its comments stay; a changed one reads its new text."""
    from detector.warehouse import replace_views

    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        con.execute("CREATE TABLE t AS SELECT range AS n FROM range(5)")
        select = "select n from t  where n > 1"  # spacing and case as DuckDB does not keep
        replace_views(con, {"v": select})
        con.execute("COMMENT ON COLUMN v.n IS 'a number'")

        def state() -> tuple[str | None, int]:
            comment = con.execute("SELECT comment FROM duckdb_columns() "
                                  "WHERE table_name = 'v'").fetchall()[0][0]
            rows = con.execute("SELECT count(*) FROM v").fetchall()[0][0]
            return comment, rows

        replace_views(con, {"v": select})
        assert state() == ("a number", 3)
        replace_views(con, {"v": "SELECT n FROM t WHERE n > 3"})
        assert state() == (None, 1)
