"""One SQL source, two engines: the few constructs that DuckDB and Spark SQL spell apart.

The model (detector/model/sql/*.sql), the rule templates (detector/rules/compiler.py) and
the scope SQL of detection are Jinja2 templates in the subset both engines read alike;
where they differ, a template calls this module (``{{ arg_min('list', 'ts', 'list') }}``)
and :func:`render` fills in the engine's form. Arguments are SQL expressions written by
our own code, never log text (that is bound as a parameter); regex patterns are Python
strings, quoted here as the engine's literal.

Traps behind the forms (measured on DuckDB 1.x and Spark 4.x):

* Spark's ``hash()`` is 32-bit: ``xxhash64``. The two engines' hashes differ in value, so
  a key hashed by one engine is never compared with one hashed by the other;
* DuckDB's ``regexp_replace`` replaces the first match unless given ``'g'``, Spark's every
  match (its fourth argument is a position);
* Spark parses backslashes in string literals as escapes (DuckDB does not), and reads
  ``'a''b'`` as two literals run together;
* DuckDB's ``lower`` and Java's differ on final sigma and dotted I: the subject patterns
  pin those first (detector/model/subjects.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import jinja2


@dataclass(frozen=True)
class Dialect:
    """How one engine spells the constructs the shared SQL needs."""

    name: str
    #: SQL type names
    string_type: str
    timestamp_type: str
    #: the keyword of ``t.* EXCLUDE (a, b)`` (DuckDB) / ``t.* EXCEPT (a, b)`` (Spark)
    star_except: str
    #: 64-bit hash of one or more values (DuckDB's UBIGINT ``hash``, Spark's ``xxhash64``)
    hash_function: str
    #: microseconds since the epoch of a timestamp
    epoch_us_function: str
    #: integer division operator
    int_div_operator: str
    #: ``'g'`` to replace every match (DuckDB); Spark always does
    all_matches_flag: str
    #: arg_min / arg_max (DuckDB) or min_by / max_by (Spark)
    min_by_function: str
    max_by_function: str
    #: whether backslashes in a string literal are escapes
    backslash_escapes: bool

    def string(self, value: str) -> str:
        """``value`` as a string literal of this engine (our own patterns and paths only;
        text from logs is bound as a parameter)."""
        if self.backslash_escapes:
            return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
        return "'" + value.replace("'", "''") + "'"

    def regex(self, pattern: str) -> str:
        """``pattern`` as a regex literal of this engine. Java's ``.``, ``^`` and ``$``
        know five line terminators, RE2's only ``\\n``: Spark's patterns read with
        UNIX_LINES ``(?d)``. (RE2's ``$`` is Java's ``\\z``: patterns end in ``\\z``.)"""
        return self.string(pattern if self.name == "duckdb" else f"(?d){pattern}")

    def hash64(self, *cols: str) -> str:
        """A 64-bit hash of the values (null hashes as the engine does)."""
        return f"{self.hash_function}({', '.join(cols)})"

    def key64(self, *cols: str) -> str:
        """A non-negative BIGINT hash of the values: the top 63 bits."""
        if self.name == "duckdb":  # hash is a UBIGINT
            return f"CAST({self.hash64(*cols)} >> 1 AS BIGINT)"
        return f"shiftrightunsigned({self.hash64(*cols)}, 1)"

    def _by(self, function: str, x: str, keys: tuple[str, ...]) -> str:
        if self.name == "duckdb":
            key = keys[0] if len(keys) == 1 else f"({', '.join(keys)})"
            return f"{function}({x}, {key})"
        # DuckDB's arg_min/arg_max pass over rows whose value is null, and order a null
        # in a row key after every value; Spark's min_by/max_by take the value of any
        # row (they pass over a null key only) and order null fields of a struct first
        flagged = ", ".join(f"({k}) IS NULL, {k}" for k in keys)
        key = keys[0] if len(keys) == 1 else f"struct({flagged})"
        return f"{function}({x}, CASE WHEN {x} IS NOT NULL THEN {key} END)"

    def arg_min(self, x: str, *keys: str) -> str:
        """``x`` of the row with the smallest ``keys`` (compared in order, a null after
        every value), among the rows where ``x`` is not null."""
        return self._by(self.min_by_function, x, keys)

    def arg_max(self, x: str, *keys: str) -> str:
        """``x`` of the row with the largest ``keys`` (compared in order, a null after
        every value), among the rows where ``x`` is not null."""
        return self._by(self.max_by_function, x, keys)

    def regexp_like(self, s: str, pattern: str) -> str:
        """Whether ``pattern`` matches anywhere in ``s``."""
        fn = "regexp_matches" if self.name == "duckdb" else "regexp_like"
        return f"{fn}({s}, {self.regex(pattern)})"

    def _replacement(self, text: str) -> str:
        # a literal replacement: RE2 (DuckDB) reads \1 as a group, Java $1 (and both escape \)
        if self.name == "duckdb":
            return self.string(text.replace("\\", "\\\\"))
        return self.string(text.replace("\\", "\\\\").replace("$", "\\$"))

    def regexp_replace_all(self, s: str, pattern: str, replacement: str) -> str:
        """``s`` with every match of ``pattern`` replaced by the literal ``replacement``."""
        return (f"regexp_replace({s}, {self.regex(pattern)}, {self._replacement(replacement)}"
                f"{self.all_matches_flag})")

    def regexp_replace_first(self, s: str, pattern: str, replacement: str) -> str:
        """``s`` with the first match of ``pattern`` replaced by the literal
        ``replacement``. Spark replaces every match: unless the pattern is anchored at
        the start, it is matched behind a lazy head, ``^(.*?)(?:pattern)``, and the head
        put back; the anchor stops a second match. (Not ``${name}`` groups: Spark
        substitutes ``${...}`` in SQL text with its variables.)"""
        if self.name == "duckdb" or pattern.startswith("^"):
            return (f"regexp_replace({s}, {self.regex(pattern)}, "
                    f"{self._replacement(replacement)})")
        java = replacement.replace("\\", "\\\\").replace("$", "\\$")
        return (f"regexp_replace({s}, {self.regex(f'^((?s:.*?))(?:{pattern})')}, "
                f"{self.string(f'$1{java}')})")

    def regexp_extract(self, s: str, pattern: str, group: int = 0) -> str:
        """The ``group`` of the first match of ``pattern`` in ``s``; '' when none."""
        return f"regexp_extract({s}, {self.regex(pattern)}, {group})"

    def epoch_us(self, ts: str) -> str:
        """Microseconds since 1970 of a timestamp, as BIGINT."""
        return f"{self.epoch_us_function}({ts})"

    def int_div(self, a: str, b: str) -> str:
        """Integer division (both engines truncate the non-negative times we divide)."""
        return f"{a} {self.int_div_operator} {b}"

    def string_agg_distinct_sorted(self, col: str, sep: str) -> str:
        """The distinct non-null values of ``col`` in byte order, joined by ``sep``; null
        when there are none."""
        if self.name == "duckdb":
            return f"string_agg(DISTINCT {col}, {self.string(sep)} ORDER BY {col})"
        return (f"CASE WHEN count({col}) > 0 THEN "
                f"array_join(array_sort(collect_set({col})), {self.string(sep)}) END")

    def except_columns(self, star: str, *cols: str) -> str:
        """``star`` (``t.*``) without the columns ``cols``."""
        return f"{star} {self.star_except} ({', '.join(cols)})"

    def cast_string(self, x: str) -> str:
        return f"CAST({x} AS {self.string_type})"

    def cast_timestamp(self, x: str) -> str:
        return f"CAST({x} AS {self.timestamp_type})"

    def functions(self) -> dict[str, Callable[..., str]]:
        """The calls a template may make, by name."""
        return {name: getattr(self, name) for name in TEMPLATE_FUNCTIONS}


#: the Dialect methods templates call by name (and docs/engines.md lists)
TEMPLATE_FUNCTIONS = ("string", "hash64", "key64", "arg_min", "arg_max", "regexp_like",
                      "regexp_replace_all", "regexp_replace_first", "regexp_extract",
                      "epoch_us", "int_div", "string_agg_distinct_sorted", "except_columns",
                      "cast_string", "cast_timestamp")

DUCKDB = Dialect(name="duckdb", string_type="VARCHAR", timestamp_type="TIMESTAMPTZ",
                 star_except="EXCLUDE", hash_function="hash", epoch_us_function="epoch_us",
                 int_div_operator="//", all_matches_flag=", 'g'", min_by_function="arg_min",
                 max_by_function="arg_max", backslash_escapes=False)
#: Spark SQL 4 (ANSI mode or not); session time zone UTC
SPARK = Dialect(name="spark", string_type="STRING", timestamp_type="TIMESTAMP",
                star_except="EXCEPT", hash_function="xxhash64",
                epoch_us_function="unix_micros", int_div_operator="div", all_matches_flag="",
                min_by_function="min_by", max_by_function="max_by", backslash_escapes=True)
DIALECTS = {d.name: d for d in (DUCKDB, SPARK)}


_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False,
                          keep_trailing_newline=True)


@cache
def _template(text: str) -> jinja2.Template:
    return _ENV.from_string(text)


def render(text: str, dialect: Dialect, **values: Any) -> str:
    """The template ``text`` in ``dialect``: the Dialect's functions and the model's SQL
    functions (thread_subject, list_of_copy... see sql_functions) are in scope, and
    ``values``; ``dialect`` names the engine (``{% if dialect == 'spark' %}`` is for what
    no function covers)."""
    scope: dict[str, Any] = {**dialect.functions(), **sql_functions(dialect),
                             "dialect": dialect.name, **values}
    return _template(text).render(**scope)


def render_resource(package: str, name: str, dialect: Dialect, **values: Any) -> str:
    """:func:`render` of a template shipped in ``package``."""
    return render(resources.files(package).joinpath(name).read_text("utf-8"), dialect,
                  **values)


#: the envelope sender of a list server's own copies: "<list>-bounces@domain" (Mailman),
#: also with VERP "<list>-bounces+member=host@domain"
LIST_COPY_SENDER = r"-bounces(\+[^@]*)?@"
#: the first Message-ID of a References header
FIRST_REFERENCE = r"<([^<>]+)>"


def sql_functions(dialect: Dialect) -> dict[str, Callable[..., str]]:
    """The model's own SQL functions as expressions (DuckDB once had them as macros; Spark
    has no SQL macros): the subject rules built from the one set of patterns in
    subjects.py, a list server's copies, and a thread's root."""
    from detector.model import subjects  # (subjects imports polars: only when rendering)

    def list_of_copy(s: str) -> str:
        # the list address a copy was sent for (list-bounces@d -> list@d), null otherwise
        return (f"CASE WHEN {dialect.regexp_like(s, LIST_COPY_SENDER)} THEN "
                f"{dialect.regexp_replace_first(s, LIST_COPY_SENDER, '@')} END")

    def root_ref(refs: str, in_reply_to: str) -> str:
        # the Message-ID a thread starts with: the first of References, else In-Reply-To
        return f"coalesce({dialect.regexp_extract(refs, FIRST_REFERENCE, 1)}, {in_reply_to})"

    return {
        "thread_subject": lambda s: subjects.normalize_subject_sql(s, dialect),
        "has_reply_prefix": lambda s: subjects.has_reply_prefix_sql(s, dialect),
        "is_auto_subject": lambda s: subjects.is_auto_subject_sql(s, dialect),
        "list_of_copy": list_of_copy,
        "root_ref": root_ref,
    }


#: each template function with example arguments, and what it is for (docs/engines.md)
_EXAMPLES: list[tuple[str, tuple[str, ...], str]] = [
    ("string", ("a\\b'c",), "a string literal of ours (log text is bound, never spliced)"),
    ("hash64", ("host", "queue_id"), "a 64-bit hash (keys, joins on integers)"),
    ("key64", ("host", "queue_id", "generation"), "a non-negative BIGINT key"),
    ("arg_min", ("sender", "first_seen", "sender"), "the value of the row first by keys"),
    ("arg_max", ("list", "depth", "list"), "the value of the row last by keys"),
    ("regexp_like", ("client", "(^|\\[)127\\."), "a regex found in a string"),
    ("regexp_replace_all", ("s", "[ \\t]+", " "), "every match replaced"),
    ("regexp_replace_first", ("s", "-bounces@", "@"), "the first match replaced"),
    ("regexp_extract", ("refs", "<([^<>]+)>", "1"), "a group of the first match, or ''"),
    ("epoch_us", ("first_seen",), "microseconds since 1970"),
    ("int_div", ("t", "w"), "integer division"),
    ("string_agg_distinct_sorted", ("host", ","), "distinct values, sorted, joined"),
    ("except_columns", ("k.*", "a", "b"), "all columns but some"),
    ("cast_string", ("size",), "a text cast"),
    ("cast_timestamp", ("?",), "an instant (DuckDB's TIMESTAMPTZ; Spark's session zone UTC)"),
]

#: constructs the templates use as they are, measured to read alike on both engines
PORTABLE = ("FILTER (WHERE ...) on aggregates, bool_or, bit_or, count(DISTINCT ...), "
            "median (also over a window), min_by/max_by with a struct key (Spark), "
            "GROUP BY ALL, WITH RECURSIVE (nested in a CTE, bounded by a depth column), "
            "named WINDOW clauses, INTERVAL 1 HOUR, USING joins, md5, split_part, contains, "
            "greatest/least, nullif, regexp_extract, ? positional parameters")


def engines_markdown() -> str:
    """docs/engines.md: the constructs the shared SQL spells per engine, from the
    Dialects themselves (tests/test_dialect.py keeps the file in step)."""
    rows = []
    for name, args, what in _EXAMPLES:
        call = f"{name}({', '.join(map(repr, args))})"
        forms = []
        for dialect in (DUCKDB, SPARK):
            fn = getattr(dialect, name)
            forms.append(fn(*args[:2], int(args[2])) if name == "regexp_extract"
                         else fn(*args))
        cells = [f"`{call}`", what, f"`{forms[0]}`", f"`{forms[1]}`"]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    body = "\n".join(rows)
    return f"""# Engines: one SQL source, DuckDB and Spark

Generated from `detector/dialect.py` (`engines_markdown`); `MAILSTORM_UPDATE_DOCS=1 pytest
tests/test_dialect.py` writes it again.

The model (`detector/model/sql/model.sql`, `threads.sql`), the rule templates
(`detector/rules/compiler.py`, `vocabulary.py`) and the scope SQL of detection
(`detector/incidents/execute.py`) are written once, in the SQL both engines read alike.
Where they differ, a template calls a `Dialect` function; `DUCKDB` and `SPARK` render it:

- `detector.model.build.model_statements(dialect)`: the model as `Statement(name, kind,
  sql)`, kind `table` (materialise the SELECT), `view` or `drop`, in order; the empty
  `_settled` first (a full build), the `threads` view last;
- `detector.rules.compiler.compile_rule(rule, source=..., dialect=...)`: a rule's SELECT
  with `?` parameters (DuckDB `execute(sql, params)`, Spark 4 `spark.sql(sql, args=params)`);
- `detector.incidents.execute.scope_sql(dialect)`, `scoped_table_sql(...)`.

| call | for | DuckDB | Spark |
|---|---|---|---|
{body}

The model's own functions expand inline on both engines (Spark has no SQL macros; the
DuckDB warehouse also keeps them as macros for analysts): `thread_subject(s)`,
`has_reply_prefix(s)`, `is_auto_subject(s)` (the patterns of
`detector/model/subjects.py`), `list_of_copy(s)`, `root_ref(refs, in_reply_to)`.

Used as they are: {PORTABLE}.

Traps (`tests/test_dialect.py` covers all but the first):

- Spark's `hash()` is 32-bit: `xxhash64`. The engines' hashes differ in value, so
  `message_key`, the `_relations` hashes, and the `message_uid` of an instance that has
  no Message-ID (it ends in its `message_key`) differ between a DuckDB and a Spark build,
  and so does the `thread_id` of such a message when it has no subject and no list (its
  thread is its `message_uid`). On a corpus of real logs of every format, every other
  column of every model table came out equal, row for row both ways (measured once, by
  hand: the Spark build is the Spark engine's to test).
- DuckDB's `regexp_replace` replaces the first match unless given `'g'`; Spark's replaces
  every match, so a first-match replace is rendered as `^((?s:.*?))(?:pattern)` with the
  head put back. A literal replacement escapes `\\` (both) and `$` (Java).
- Java's `.`, `^`, `$` know five line terminators, RE2's only `\\n`: Spark's patterns are
  read with `(?d)` (UNIX_LINES), and patterns end in `\\z`, not `$` (Java's `$` also
  matches before a final newline).
- Spark parses backslashes in string literals as escapes and reads `'a''b'` as two
  literals; it substitutes `${{...}}` in SQL text with its variables (so no `${{name}}`
  group references).
- Spark reads `sum(x) OVER g - y` as the window `g-y`: a named window in an expression is
  parenthesised.
- DuckDB's `arg_min`/`arg_max` pass over rows whose value is null and order a null key
  field after every value; Spark's `min_by`/`max_by` take a null value and order null
  struct fields first: the Spark form nulls the key of a null value and adds an
  `IS NULL` field before each key.
- `lower()` differs on final sigma and dotted I (Java maps them in context): the subject
  patterns pin them first.
- A chain of Spark temporary views is planned again by every statement that reads it:
  materialise each `table` statement (the test plans over empty tables).
"""
