"""Subject decoding and normalisation: RFC 2047 words, reply/forward prefixes, auto-replies.

The model stage groups messages by normalised subject in DuckDB SQL (and later Spark) while
parsers and tests use polars, so every pattern is written ONCE here in the common subset of
Rust ``regex`` (polars), RE2 (DuckDB) and java.util.regex (Spark):

* no look-around or backreferences (RE2/Rust have neither);
* no ``\\s``, ``\\d``, ``\\b``: Unicode-aware in Rust, ASCII-only in RE2 and Java. Whitespace is
  the explicit Unicode White_Space class ``_WS``, digits are ``[0-9]``;
* no ``(?i)``: ASCII-only in Java, and Rust/RE2 also fold K/S with the Kelvin sign and long s.
  ``_ci`` spells case out instead (``[Rr][Ee]``), so matching is the same everywhere;
* no ``.`` (newline handling differs) and no group references in replacements (``$1`` in
  polars, ``\\1`` in SQL): we only ever replace with ``''`` or ``' '``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable

import polars as pl

from detector.dialect import DUCKDB, Dialect

# Unicode White_Space, listed explicitly so all three engines agree on it.
_WS = (
    r"[\t\n\x0B\f\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]"
)
_COLON = rf"{_WS}*[:：]"  # French writes "Réf : x"; CJK clients use the full-width colon.


def _ci(phrase: str) -> str:
    """Case-insensitive regex for a plain phrase, without relying on engine case folding."""
    out = []
    for ch in phrase:
        if ch == " ":
            out.append(f"{_WS}+")
        elif ch == ":":
            out.append(_COLON)
        elif ch == "-":
            out.append("-")
        elif ch.isalpha():
            up, low = ch.upper(), ch.lower()
            out.append(f"[{up}{low}]" if up != low and len(up) == 1 else ch)
        else:
            raise ValueError(f"unsupported character {ch!r} in {phrase!r}")
    return "".join(out)


def _alternation(words: tuple[str, ...]) -> str:
    # Longest first: all three engines take the first alternative that matches.
    return "(?:" + "|".join(_ci(w) for w in sorted(words, key=len, reverse=True)) + ")"


# fmt: off
REPLY_WORDS = ("re", "aw", "sv", "vs", "antw", "antwort", "odp", "réf", "ref", "rif", "r",
               "vá", "回复", "答复", "回覆")
FORWARD_WORDS = ("fwd", "fw", "wg", "tr", "enc", "rv", "doorst", "転送")
AUTO_PHRASES = (
    "automatic reply", "auto:", "autoreply", "auto-reply", "out of office", "abwesenheitsnotiz",
    "automatische antwort", "réponse automatique", "reponse automatique", "respuesta automática",
    "respuesta automatica", "risposta automatica", "automatisch antwoord", "undeliverable:",
    "undelivered mail returned to sender", "delivery status notification", "mail delivery failed",
    "returned mail:", "read:", "gelesen:", "not read:", "recall:", "zurückrufen:", "delivered:",
    "message recall failure:", "message recall success:", "message recall report",
)
# fmt: on

_COUNTER = r"(?:\[[0-9]+\]|\([0-9]+\)|\^[0-9]+)?"  # Re[2]: / Re(2): / Re^2:
_TAG = r"\[[^\[\]]*\]"  # mailing-list tag such as [all-staff]
_REPLY = _alternation(REPLY_WORDS) + _COUNTER + _COLON
_FORWARD = _alternation(FORWARD_WORDS) + _COUNTER + _COLON
_UNIT = rf"(?:{_TAG}|{_REPLY}|{_FORWARD}){_WS}*"

#: ONE leading reply/forward prefix or list tag, with its colon and following whitespace.
REPLY_PREFIX_PATTERN = rf"^{_WS}*{_UNIT}"
#: ONE leading forward-only prefix (Fwd/FW/WG/TR/Enc/Rv/Doorst/転送).
FORWARD_PREFIX_PATTERN = rf"^{_WS}*{_FORWARD}{_WS}*"
#: The whole leading run of prefixes and tags; regex replace cannot loop, so eat it at once.
PREFIX_RUN_PATTERN = rf"^{_WS}*(?:{_UNIT})+"
#: Tags/forwards then a reply prefix: a reply, even when forwarded ("Fwd: Re: x").
HAS_REPLY_PATTERN = rf"^{_WS}*(?:(?:{_TAG}|{_FORWARD}){_WS}*)*{_REPLY}"
#: Auto-replies, bounces, receipts and recalls, possibly behind reply prefixes.
AUTO_SUBJECT_PATTERN = rf"^{_WS}*(?:{_UNIT})*{_alternation(AUTO_PHRASES)}"
#: Whitespace runs, collapsed to one space.
WHITESPACE_RUN_PATTERN = f"{_WS}+"

# Characters whose lowercase differs between engines: Rust/Java map final Σ to ς and İ to
# "i̇" (two code points), DuckDB's per-code-point lower() gives σ and i. Pin them first.
# Letters new in Unicode 16 (Garay, some Latin Extended-D) still differ: DuckDB's tables lag.
_LOWER_FIXUPS = (("Σ", "σ"), ("İ", "i"))


def normalize_subject(expr: pl.Expr) -> pl.Expr:
    """Strip leading reply/forward prefixes and list tags, collapse whitespace, lowercase.

    Lowercasing first makes the result a fixed point (nothing left to strip on a second
    pass). Null stays null; a subject that was only prefixes becomes ''.
    """
    for src, dst in _LOWER_FIXUPS:
        expr = expr.str.replace_all(src, dst, literal=True)
    return (
        expr.str.to_lowercase()
        .str.replace(PREFIX_RUN_PATTERN, "")
        .str.replace_all(WHITESPACE_RUN_PATTERN, " ")
        # After the collapse only ' ' can sit at the ends, exactly what SQL trim() removes.
        .str.strip_chars(" ")
    )


def normalize_subject_sql(column_sql: str, dialect: Dialect = DUCKDB) -> str:
    """SQL doing exactly what :func:`normalize_subject` does to ``column_sql``.

    ``column_sql`` is a trusted identifier/expression from our own code, never log data.
    """
    sql = f"({column_sql})"
    for src, dst in _LOWER_FIXUPS:
        sql = f"replace({sql}, {dialect.string(src)}, {dialect.string(dst)})"
    sql = dialect.regexp_replace_first(f"lower({sql})", PREFIX_RUN_PATTERN, "")
    sql = dialect.regexp_replace_all(sql, WHITESPACE_RUN_PATTERN, " ")
    return f"trim({sql})"


def _matches_sql(column_sql: str, pattern: str, dialect: Dialect) -> str:
    # regexp_extract exists in both engines with the same meaning, and our patterns never
    # match the empty string
    return f"({dialect.regexp_extract(f'({column_sql})', pattern)} <> '')"


def has_reply_prefix(expr: pl.Expr) -> pl.Expr:
    """True when the subject starts (maybe after tags/forwards) with a reply prefix."""
    return expr.str.contains(HAS_REPLY_PATTERN)


def has_reply_prefix_sql(column_sql: str, dialect: Dialect = DUCKDB) -> str:
    """SQL for :func:`has_reply_prefix`."""
    return _matches_sql(column_sql, HAS_REPLY_PATTERN, dialect)


def is_auto_subject(expr: pl.Expr) -> pl.Expr:
    """True for auto-replies, out-of-office, bounces, read receipts and recalls."""
    return expr.str.contains(AUTO_SUBJECT_PATTERN)


def is_auto_subject_sql(column_sql: str, dialect: Dialect = DUCKDB) -> str:
    """SQL for :func:`is_auto_subject`."""
    return _matches_sql(column_sql, AUTO_SUBJECT_PATTERN, dialect)


# --- RFC 2047 -------------------------------------------------------------------------------
# Python per-value code, but only over the distinct values containing "=?": subjects are a
# small share of lines and repeat heavily. email.header is not used because it gives up on
# the whole header for one bad word and can emit lone surrogates (unknown-8bit) that polars
# cannot store; here each undecodable word is simply left as written.

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([BbQq])\?([^?\s]*)\?=")
_CHARSET_ALIASES = {"gb2312": "gb18030", "iso-8859-8-i": "iso-8859-8"}  # labels mailers misuse


def _word_bytes(kind: str, text: str) -> bytes | None:
    try:
        if kind in "Bb":  # many mailers drop the '=' padding
            return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        return binascii.a2b_qp(text.encode("ascii"), header=True)  # '_' is a space
    except ValueError:  # binascii.Error and UnicodeEncodeError are ValueErrors
        return None


def _decode_group(value: str, group: list[tuple[str, bytes, int, int]]) -> str:
    # Adjacent words in one charset are joined as bytes first: mailers split multi-byte
    # characters across words.
    charset = group[0][0].split("*", 1)[0].lower()  # drop RFC 2231 language ("utf-8*en")
    if "escape" in charset or charset in ("punycode", "idna"):  # codecs, not charsets
        return value[group[0][2] : group[-1][3]]
    try:
        text = b"".join(g[1] for g in group).decode(_CHARSET_ALIASES.get(charset, charset))
        text.encode("utf-8")  # rejects lone surrogates (e.g. charset=unicode_escape)
        return text
    except (LookupError, ValueError):
        return value[group[0][2] : group[-1][3]]


def _decode_value(value: str) -> str:
    parts: list[str] = []
    run: list[tuple[str, bytes, int, int]] = []  # decodable words separated by whitespace only
    pos = 0

    def flush() -> None:
        start = 0
        for i in range(1, len(run) + 1):
            if i == len(run) or run[i][0].lower() != run[start][0].lower():
                parts.append(_decode_group(value, run[start:i]))
                start = i
        run.clear()

    for m in _ENCODED_WORD.finditer(value):
        data = _word_bytes(m[2], m[3])
        if data is None:
            continue  # stays plain text, inside the next gap
        gap = value[pos : m.start()]
        if not (run and gap.strip(" \t\r\n") == ""):  # RFC 2047 §6.2: drop whitespace
            flush()  # between adjacent encoded words only
            parts.append(gap)
        run.append((m[1], data, m.start(), m.end()))
        pos = m.end()
    flush()
    parts.append(value[pos:])
    return "".join(parts)


def decode_rfc2047(s: pl.Series) -> pl.Series:
    """Decode RFC 2047 encoded-words; values without ``=?`` and nulls pass through untouched."""
    s = s.cast(pl.String)
    return map_distinct(s, s.str.contains("=?", literal=True), _decode_value)


def map_distinct(s: pl.Series, where: pl.Series, fn: Callable[[str], str]) -> pl.Series:
    """``s`` with ``fn`` applied to the values where ``where`` holds: once per distinct
    value, and only those rows rewritten (a batch of a million delivery rows may hold a
    few hundred subjects). For per-value decoding no expression can do (RFC 2047)."""
    where = where.fill_null(False)
    if not where.any():
        return s
    rows = where.arg_true()
    values = s.gather(rows)
    distinct = values.unique()
    mapped = pl.Series([fn(v) for v in distinct.to_list()], dtype=pl.String)
    return s.scatter(rows, values.replace(distinct, mapped))
