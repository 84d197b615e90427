"""One SQL source, two engines: every model statement, rule and scope query rendered for
Spark runs through Spark's analyzer, and the regex and subject expressions give the same
answers on DuckDB and on Spark over the same strings (the corpus' subjects among them).

The Spark tests start one local session for the module (``local[2]``) and skip, with the
reason, where pyspark or Java is missing.
"""

from __future__ import annotations

import os
import random
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from detector.assets import builtin_rules_dir
from detector.dialect import DUCKDB, SPARK, Dialect, engines_markdown, sql_functions
from detector.incidents.execute import (
    SCOPE_MARGIN,
    Scope,
    scope_params,
    scope_sql,
    scoped_table_sql,
)
from detector.model.build import PATTERNS, Statement, model_statements
from detector.model.subjects import normalize_subject
from detector.rules.compiler import compile_rule
from detector.rules.loader import load_rules
from detector.schema import EVENT_COLUMNS
from detector.sqltext import markers, split_with
from tests.test_subjects import AUTO_CASES, NORMALIZE_CASES, REPLY_CASES

CORPUS = Path("/work/shared/corpus")
RULES = load_rules(builtin_rules_dir())


def _spark_type(dtype: pl.DataType) -> str:
    if isinstance(dtype, pl.Datetime):
        return "TIMESTAMP"
    return {pl.String: "STRING", pl.Int64: "BIGINT", pl.Float64: "DOUBLE"}[type(dtype)]


def _duckdb_type(dtype: pl.DataType) -> str:
    if isinstance(dtype, pl.Datetime):
        return "TIMESTAMPTZ"
    return {pl.String: "VARCHAR", pl.Int64: "BIGINT", pl.Float64: "DOUBLE"}[type(dtype)]


#: how a DuckDB column type reads in Spark (the hashes: UBIGINT in DuckDB, BIGINT in Spark;
#: a working table's running sum: HUGEINT in DuckDB, cast to BIGINT where it is kept)
_SAME_TYPE = {"VARCHAR": "string", "BIGINT": "bigint", "UBIGINT": "bigint", "HUGEINT": "bigint",
              "INTEGER": "int", "BOOLEAN": "boolean", "DOUBLE": "double",
              "TIMESTAMP WITH TIME ZONE": "timestamp"}


def _empty_events(dialect: Dialect, cast: Any) -> str:
    cols = ", ".join(f"CAST(NULL AS {cast(t)}) AS {n}" for n, (t, _) in EVENT_COLUMNS.items())
    return f"SELECT {cols} WHERE false" if dialect is SPARK else f"SELECT {cols} LIMIT 0"


def _all_spark_sql() -> list[str]:
    now = datetime(2016, 11, 13, tzinfo=UTC)
    return ([s.sql for s in model_statements(SPARK)]
            + [compile_rule(r, dialect=SPARK).sql for r in RULES]
            + [compile_rule(r, source="_scope", dialect=SPARK).sql for r in RULES]
            + [scope_sql(SPARK), scoped_table_sql("deliveries", "deliveries", now, SPARK)])


# --- no engine needed -----------------------------------------------------------------------

#: constructs only DuckDB reads (or reads otherwise): none may reach a Spark statement
DUCKDB_ONLY = {
    "arg_min/arg_max": r"\barg_(min|max)\s*\(",
    "32/64-bit hash()": r"(?<![\w.])hash\s*\(",
    "// division": r"//",
    "epoch_us": r"\bepoch_us\s*\(",
    "EXCLUDE": r"\bEXCLUDE\b",
    "regexp_matches": r"\bregexp_matches\s*\(",
    "TIMESTAMPTZ": r"\bTIMESTAMPTZ\b",
    "VARCHAR": r"\bVARCHAR\b",
    "a macro": r"\bMACRO\b|\bthread_subject\s*\(|\blist_of_copy\s*\(|\broot_ref\s*\(|"
               r"\bhas_reply_prefix\s*\(|\bis_auto_subject\s*\(",
    "regexp_replace's 'g' flag": r",\s*'g'\s*\)",
    "a tuple sort key": r"\b(min|max)_by\([^()]*,\s*\(",
    "a template left unrendered": r"\{\{|\{%",
    "${...}, which Spark substitutes with its variables": r"\$\{",
}


def test_no_duckdb_only_construct_reaches_spark() -> None:
    for sql in _all_spark_sql():
        for what, pattern in DUCKDB_ONLY.items():
            found = re.search(pattern, sql, re.IGNORECASE)
            assert not found, f"{what} in Spark SQL: ...{sql[max(0, found.start() - 80):][:160]}"


def test_the_duckdb_rendering_keeps_its_own_forms() -> None:
    # the check above would pass on a rendering that dropped the constructs altogether
    duck = "\n".join(s.sql for s in model_statements(DUCKDB))
    spark = "\n".join(s.sql for s in model_statements(SPARK))
    for duck_form, spark_form in [("arg_min(", "min_by("), ("hash(", "xxhash64("),
                                  ("EXCLUDE (", "EXCEPT ("), ("regexp_matches(", "regexp_like("),
                                  ("string_agg(DISTINCT", "collect_set(")]:
        assert duck_form in duck and duck_form not in spark.replace("xxhash64(", "")
        assert spark_form in spark and spark_form not in duck
    assert "{{" not in duck


def test_statements_are_named_and_ordered() -> None:
    steps = model_statements(DUCKDB)
    assert steps[0] == Statement("_settled", "table", steps[0].sql)
    assert [s.name for s in steps if s.kind == "table" and not str(s.name).startswith("_")] == [
        "messages", "expansions", "list_posts", "deliveries", "logical_messages"]
    assert [(s.name, s.kind) for s in steps[-2:]] == [("_relations", "table"),
                                                      ("threads", "view")]
    assert ("_qev", "drop") in [(s.name, s.kind) for s in steps]
    assert [s.name for s in model_statements(DUCKDB, settled=False, views=False)] == [
        s.name for s in steps[1:-1]]


def test_spark_literals_escape_backslashes_and_quotes() -> None:
    assert SPARK.string(r"a\[b'c") == r"'a\\[b\'c'"
    assert DUCKDB.string(r"a\[b'c") == r"'a\[b''c'"


# --- Spark ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spark(spark_session: Any) -> Any:
    """The test session's one Spark session (tests/conftest.py): its start is the cost."""
    return spark_session


@pytest.fixture(scope="module")
def spark_model(spark: Any) -> dict[str, list[tuple[str, str]]]:
    """Every model statement planned by Spark over empty inputs, each table kept as an
    empty temporary view of the schema Spark gave it: the columns of each, by name."""
    spark.sql(_empty_events(SPARK, _spark_type)).createOrReplaceTempView("events")
    columns = {}
    for step in model_statements(SPARK):
        if step.kind == "drop":
            spark.sql(step.sql)
            continue
        frame = spark.sql(step.sql)  # the analyzer fails here on anything unsupported
        if step.kind == "table":  # (a chain of views would be planned again and again)
            frame = spark.createDataFrame([], frame.schema)
        frame.createOrReplaceTempView(step.name)
        columns[str(step.name)] = [(f.name, f.dataType.simpleString()) for f in frame.schema]
    return columns


def _duckdb_model() -> dict[str, list[tuple[str, str]]]:
    con = duckdb.connect()
    con.execute("CREATE TABLE events AS " + _empty_events(DUCKDB, _duckdb_type))
    columns = {}
    for step in model_statements(DUCKDB):
        if step.kind == "drop":
            con.execute(step.sql)
            continue
        con.execute(f"CREATE OR REPLACE {step.kind.upper()} {step.name} AS {step.sql}")
        columns[str(step.name)] = [(r[0], _SAME_TYPE[r[1]]) for r in
                              con.execute(f"DESCRIBE {step.name}").fetchall()]
    return columns


@pytest.mark.spark
def test_every_model_statement_plans_on_spark_with_duckdbs_columns(
        spark_model: dict[str, list[tuple[str, str]]]) -> None:
    assert spark_model == _duckdb_model()


@pytest.mark.spark
def test_every_rule_plans_on_spark(spark: Any, spark_model: dict[str, Any]) -> None:
    since = datetime(2016, 11, 13, tzinfo=UTC)
    scope = Scope(since=since, until=None)
    spark.sql(scope_sql(SPARK), args=scope_params(scope)).createOrReplaceTempView("_scope")
    # every rule over the model, and one over a scope (the same SQL but the table's name)
    for rule, source in [*((r, "logical_messages") for r in RULES), (RULES[0], "_scope")]:
        compiled = compile_rule(rule, source=source, dialect=SPARK)
        hits = spark.sql(compiled.sql, args=list(compiled.params))
        assert hits.columns[:4] == ["group_key", "anchor_uid", "anchor_ts", "window_start"]
        # planned to the physical operators (an unsupported frame fails there), not run:
        # a run on empty inputs would only add seconds of jobs
        hits._jdf.queryExecution().executedPlan()
    # the scoped tables' literal time is the instant DuckDB reads
    scoped = scoped_table_sql("deliveries", "deliveries", since, SPARK)
    assert spark.sql(scoped).collect() == []
    start = re.search(r"CAST\('[^']*' AS TIMESTAMP\)", scoped)
    assert start
    micros = spark.sql(f"SELECT {SPARK.epoch_us(start.group(0))} AS t").collect()[0].t
    assert micros == int((since - SCOPE_MARGIN).timestamp()) * 1_000_000


def test_split_with_sees_ctes_past_literals_and_comments() -> None:
    sql = ("WITH a AS (SELECT ')' AS x, '(?d)\\'' AS y -- (a comment?\n FROM t),\n"
           "-- between\nb AS (SELECT * FROM a WHERE z = ? AND (w IN (1, 2)))\n"
           "SELECT * FROM b WHERE v > ?")
    ctes, final = split_with(sql)
    assert [name for name, _ in ctes] == ["a", "b"]
    assert ctes[0][1].endswith("FROM t") and "')'" in ctes[0][1]
    assert [markers(body) for _, body in ctes] == [0, 1]
    assert final.strip() == "SELECT * FROM b WHERE v > ?" and markers(final) == 1
    assert split_with("WITH RECURSIVE up AS (SELECT 1) SELECT * FROM up")[0] == []
    assert split_with("SELECT 1") == ([], "SELECT 1")


def test_split_with_takes_every_rule_apart_and_back() -> None:
    for rule in RULES:
        compiled = compile_rule(rule, dialect=SPARK)
        ctes, final = split_with(compiled.sql)
        again = "WITH " + ", ".join(f"{n} AS ({b})" for n, b in ctes) + final
        assert " ".join(again.split()) == " ".join(compiled.sql.replace(",\n", ", ").split())
        assert sum(markers(b) for _, b in ctes) + markers(final) == len(compiled.params)


# --- the same answers on both engines -------------------------------------------------------

_WHITESPACE = ["\t", "\n", "\x0b", "\f", "\r", " ", "\x85", "\xa0", "\u1680", "\u2003",
               "\u2028", "\u202f", "\u3000", "\u200b"]  # (the last is no White_Space)
_TOKENS = ["Re", "RE", "re", "AW", "Aw", "SV", "Fwd", "FW", "WG", "TR", "Réf", "RÉF", "回复",
           "転送", "Antwort", "Odp", "R", "Vá", "VÁ", "Automatic reply", "AUTO:",
           "Out of Office", "Réponse automatique", "Undeliverable:", "Recall:",
           "Zurückrufen:", ":", "：", "[all-staff]", "[", "]", "[2]", "(3)", "^4", "Σ",
           "ΣΑΣ", "İstanbul", "ß", "ẞ", "K", "\u212a", "ſ", "=?utf-8?Q?Re=3A_caf=C3=A9?=",
           "=?ISO-8859-1?B?SWYgeW91IGNhbiByZWFkIHRoaXMgeW8=?=", "=?", "?=", "x", "Budget",
           "2016", "\\", "'", "$1", "%", "é", "😀"]


def _subjects() -> list[str | None]:
    """The subject cases of test_subjects, the subjects the corpus logs, and strings put
    together from prefixes, whitespace, case pairs and RFC 2047 leftovers."""
    cases: list[str | None] = [c[0] for c in (*NORMALIZE_CASES, *REPLY_CASES, *AUTO_CASES)]
    if CORPUS.is_dir():
        text = "\n".join(p.read_text("utf-8", errors="replace")
                         for p in sorted(CORPUS.rglob("*.log")))
        cases += sorted(set(re.findall(r"[Ss]ubject[:=] ?(.*?)(?: from | T=|$)", text,
                                       re.MULTILINE)))[:2000]
    pick = random.Random(14)
    for _ in range(1500):
        parts = [pick.choice(_TOKENS + _WHITESPACE) for _ in range(pick.randint(1, 8))]
        cases.append("".join(parts))
    return [None, "", *cases]


_ADDRESSES = [None, "", "list-bounces@x.org", "list-bounces+bob=y.org@x.org",
              "a-bounces@b-bounces@c", "LIST-BOUNCES@X.ORG", "bounces@x.org",
              "list-bounces", "x-bounces+@y", "it's-bounces@x", "a\\b-bounces@c",
              "$1-bounces@x", "-bounces@", "ä-bounces+é@ü"]
_RELAYS = [None, "", "none", "mx.example[192.0.2.1]:25", "[::1]:25", "local", "a:b[c]",
           "mailstore2.nhs.example[10.1.0.6]:24", "x\ny[1]", "127.0.0.1", "[127.0.0.1]",
           "host[::1]", "::1]", "1127.0.0.1"]
_REFS = [None, "", "<a@b>", "<a@b> <c@d>", "junk <x@y>", "<>", "<<a@b>>", "a@b", "<é@ü> <x>"]


def _expressions(d: Dialect) -> dict[str, str]:
    f = sql_functions(d)
    return {
        "thread_subject": f["thread_subject"]("s"),
        "has_reply_prefix": f["has_reply_prefix"]("s"),
        "is_auto_subject": f["is_auto_subject"]("s"),
        "list_of_copy": f["list_of_copy"]("s"),
        "root_ref": f["root_ref"]("s", "'fallback'"),
        "relay_host": d.regexp_replace_first("coalesce(s, 'none')", PATTERNS["RELAY_PORT"], ""),
        "loopback": d.regexp_like("s", PATTERNS["LOOPBACK_CLIENT"]),
        "first_x": d.regexp_replace_first("s", "x+", "<$1\\>"),
        "every_x": d.regexp_replace_all("s", "x+", "-"),
    }


def _run_both(spark: Any, strings: list[str | None]) -> tuple[list[Any], list[Any]]:
    frame = pl.DataFrame({"i": range(len(strings)), "s": strings},
                         schema={"i": pl.Int64, "s": pl.String})
    con = duckdb.connect()
    con.register("strings", frame)
    duck = con.execute("SELECT " + ", ".join(f"{sql} AS {name}" for name, sql in
                                             _expressions(DUCKDB).items())
                       + " FROM strings ORDER BY i").fetchall()
    spark.createDataFrame(list(zip(range(len(strings)), strings, strict=True)),
                          "i BIGINT, s STRING").createOrReplaceTempView("strings")
    rows = spark.sql("SELECT " + ", ".join(f"{sql} AS {name}" for name, sql in
                                           _expressions(SPARK).items())
                     + " FROM strings ORDER BY i").collect()
    return duck, [tuple(r) for r in rows]


def _differences(strings: list[str | None], duck: list[Any], spark_rows: list[Any]
                 ) -> list[str]:
    names = list(_expressions(DUCKDB))
    return [f"{names[k]}({s!r}): duckdb {a[k]!r}, spark {b[k]!r}"
            for s, a, b in zip(strings, duck, spark_rows, strict=True)
            for k in range(len(names)) if a[k] != b[k]]


@pytest.mark.spark
def test_subject_expressions_agree_on_both_engines(spark: Any) -> None:
    strings = _subjects()
    duck, spark_rows = _run_both(spark, strings)
    assert len(strings) > 1500
    assert _differences(strings, duck, spark_rows) == []
    # and both are the polars normalisation the parsers use
    polars = pl.DataFrame({"s": strings}, schema={"s": pl.String}).select(
        normalize_subject(pl.col("s")))["s"].to_list()
    assert [row[0] for row in duck] == polars


@pytest.mark.spark
def test_address_and_reference_expressions_agree_on_both_engines(spark: Any) -> None:
    strings = _ADDRESSES + _RELAYS + _REFS
    duck, spark_rows = _run_both(spark, strings)
    assert _differences(strings, duck, spark_rows) == []
    by = dict(zip(strings, duck, strict=False))
    names = list(_expressions(DUCKDB))
    # the first of two matches only, as DuckDB replaces (Spark would replace both)
    assert by["a-bounces@b-bounces@c"][names.index("list_of_copy")] == "a@b-bounces@c"
    assert by["mx.example[192.0.2.1]:25"][names.index("relay_host")] == "mx.example"


def test_docs_engines_md_is_the_rendered_dialects() -> None:
    doc = Path(__file__).resolve().parents[1] / "docs" / "engines.md"
    if os.environ.get("MAILSTORM_UPDATE_DOCS"):
        doc.write_text(engines_markdown(), "utf-8")
    assert doc.read_text("utf-8") == engines_markdown(), (
        "docs/engines.md is stale: run MAILSTORM_UPDATE_DOCS=1 pytest tests/test_dialect.py")


_ROWS: list[tuple[int, str | None, int | None, str | None]] = [
    (1, None, 1, "a"), (1, "b", 2, "b"),                 # a null value is passed over
    (2, "p", None, "p"), (2, "q", 5, "q"),               # a null key field sorts last
    (3, None, 1, None), (3, None, 2, "x"),               # no value at all
    (4, "a", 1, "z"), (4, "b", 1, "y"), (4, "b", 1, "y"),  # ties on the first key
    (5, "a", None, None), (5, "c", 3, "c"), (5, "b", 3, None),
    (6, "é", 7, "ü"), (6, "e", 7, "u"), (6, "E", -7, "U"), (6, None, -9, None),
]


@pytest.mark.spark
def test_aggregates_and_numbers_agree_on_both_engines(spark: Any) -> None:
    def query(d: Dialect) -> str:
        return ("SELECT g, "
                + ", ".join([d.arg_min("x", "k1", "k2"), d.arg_max("x", "k1", "k2"),
                             # (single keys without ties: a tie picks any row)
                             d.arg_min("x", "k2"), d.arg_max("x", "k2"),
                             d.arg_min("x", "-k1", "x"), d.arg_max("x", "k1 > 2", "k2", "x"),
                             d.string_agg_distinct_sorted("x", ","),
                             d.string_agg_distinct_sorted("k2", " | "),
                             f"min({d.epoch_us('ts')})",
                             f"max({d.int_div(d.epoch_us('ts'), '3600000000')})",
                             f"count(DISTINCT {d.key64('x', 'k1')})",
                             f"min({d.key64('x', 'k2')}) >= 0",
                             f"max({d.cast_string('k1')})"])
                + " FROM aggs GROUP BY g ORDER BY g")

    stamp = datetime(2016, 11, 13, 12, 34, 56, 789012, tzinfo=UTC)
    rows = [(*r, stamp.replace(hour=i % 24)) for i, r in enumerate(_ROWS)]
    frame = pl.DataFrame(rows, schema={"g": pl.Int64, "x": pl.String, "k1": pl.Int64,
                                       "k2": pl.String, "ts": pl.Datetime("us", "UTC")},
                         orient="row")
    con = duckdb.connect()
    con.register("aggs", frame)
    duck = con.execute(query(DUCKDB)).fetchall()
    spark.createDataFrame(rows, "g BIGINT, x STRING, k1 BIGINT, k2 STRING, ts TIMESTAMP"
                          ).createOrReplaceTempView("aggs")
    assert [tuple(r) for r in spark.sql(query(SPARK)).collect()] == duck
    # the oracle for the rows above, by hand: DuckDB's own rules, not either engine's output
    assert [(r[1], r[2]) for r in duck] == [("b", "b"), ("q", "p"), (None, None), ("b", "a"),
                                            ("c", "a"), ("E", "é")]
