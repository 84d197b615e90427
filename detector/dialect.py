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

    def hash64(self, *cols: str) -> str:
        """A 64-bit hash of the values (null hashes as the engine does)."""
        return f"{self.hash_function}({', '.join(cols)})"

    def key64(self, *cols: str) -> str:
        """A non-negative BIGINT hash of the values: the top 63 bits."""
        if self.name == "duckdb":  # hash is a UBIGINT
            return f"CAST({self.hash64(*cols)} >> 1 AS BIGINT)"
        return f"shiftrightunsigned({self.hash64(*cols)}, 1)"

    def _sort_key(self, keys: tuple[str, ...]) -> str:
        if len(keys) == 1:
            return keys[0]
        inner = ", ".join(keys)
        return f"({inner})" if self.name == "duckdb" else f"struct({inner})"

    def arg_min(self, x: str, *keys: str) -> str:
        """``x`` of the row with the smallest ``keys`` (compared in order)."""
        return f"{self.min_by_function}({x}, {self._sort_key(keys)})"

    def arg_max(self, x: str, *keys: str) -> str:
        """``x`` of the row with the largest ``keys`` (compared in order)."""
        return f"{self.max_by_function}({x}, {self._sort_key(keys)})"

    def regexp_like(self, s: str, pattern: str) -> str:
        """Whether ``pattern`` matches anywhere in ``s``."""
        fn = "regexp_matches" if self.name == "duckdb" else "regexp_like"
        return f"{fn}({s}, {self.string(pattern)})"

    def regexp_replace_all(self, s: str, pattern: str, replacement: str) -> str:
        """``s`` with every match of ``pattern`` replaced by the literal ``replacement``."""
        return (f"regexp_replace({s}, {self.string(pattern)}, {self.string(replacement)}"
                f"{self.all_matches_flag})")

    def regexp_replace_first(self, s: str, pattern: str, replacement: str) -> str:
        """``s`` with the first match of ``pattern`` replaced by the literal
        ``replacement``. Spark replaces every match: unless the pattern is anchored at
        the start, it is matched as ``(head)(pattern)(tail)`` and head and tail put back:
        a lazy head finds the first match, as DuckDB does (named groups, as the
        pattern's own are numbered)."""
        if self.name == "duckdb" or pattern.startswith("^"):
            return f"regexp_replace({s}, {self.string(pattern)}, {self.string(replacement)})"
        java = replacement.replace("\\", "\\\\").replace("$", "\\$")
        whole = f"(?s)^(?<head>.*?)(?:{pattern})(?<tail>.*)$"
        return (f"regexp_replace({s}, {self.string(whole)}, "
                f"{self.string(f'${{head}}{java}${{tail}}')})")

    def regexp_extract(self, s: str, pattern: str, group: int = 0) -> str:
        """The ``group`` of the first match of ``pattern`` in ``s``; '' when none."""
        return f"regexp_extract({s}, {self.string(pattern)}, {group})"

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
