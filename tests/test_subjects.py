from __future__ import annotations

import functools

import duckdb
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.model.subjects import (
    decode_rfc2047,
    has_reply_prefix,
    has_reply_prefix_sql,
    is_auto_subject,
    is_auto_subject_sql,
    normalize_subject,
    normalize_subject_sql,
)


def polars_eval(subjects: list[str | None]) -> pl.DataFrame:
    s = pl.col("subject")
    return pl.DataFrame({"subject": subjects}, schema={"subject": pl.String}).select(
        norm=normalize_subject(s), reply=has_reply_prefix(s), auto=is_auto_subject(s)
    )


def duckdb_eval(subjects: list[str | None]) -> pl.DataFrame:
    frame = pl.DataFrame(
        {"i": range(len(subjects)), "subject": subjects},
        schema={"i": pl.Int64, "subject": pl.String},
    )
    con = _memory_db()
    con.register("subjects", frame)
    query = (
        f"SELECT {normalize_subject_sql('subject')} AS norm, "
        f"{has_reply_prefix_sql('subject')} AS reply, {is_auto_subject_sql('subject')} AS auto "
        "FROM subjects ORDER BY i"
    )
    try:
        return con.sql(query).pl()
    finally:
        con.unregister("subjects")


@functools.cache
def _memory_db() -> duckdb.DuckDBPyConnection:
    return duckdb.connect()  # one a process: a new database is 16 ms of DuckDB's catalog


def norm(subjects: list[str | None]) -> list[str | None]:
    return polars_eval(subjects)["norm"].to_list()


# --- prefix stripping ----------------------------------------------------------------------

NORMALIZE_CASES = [
    ("Re: test", "test"),
    ("RE: test", "test"),
    ("re:test", "test"),
    ("AW: Besprechung", "besprechung"),
    ("SV: Möte", "möte"),
    ("Sv: möte", "möte"),
    ("VS: kokous", "kokous"),
    ("Vs: kokous", "kokous"),
    ("Antw: vergadering", "vergadering"),
    ("Antwort: Termin", "termin"),
    ("Odp: spotkanie", "spotkanie"),
    ("Réf : réunion", "réunion"),
    ("RÉF: réunion", "réunion"),
    ("Ref: réunion", "réunion"),
    ("RIF: riunione", "riunione"),
    ("R: riunione", "riunione"),
    ("Vá: találkozó", "találkozó"),
    ("VÁ: találkozó", "találkozó"),
    ("回复：会议", "会议"),
    ("回复: 会议", "会议"),
    ("答复：会议", "会议"),
    ("回覆：會議", "會議"),
    ("転送: 会議", "会議"),
    ("Fwd: x", "x"),
    ("FW: x", "x"),
    ("Fw: x", "x"),
    ("WG: x", "x"),
    ("TR: x", "x"),
    ("Enc: x", "x"),
    ("RV: x", "x"),
    ("Doorst: x", "x"),
    ("Re[2]: x", "x"),
    ("Re(3): x", "x"),
    ("Re^2: x", "x"),
    ("Re：x", "x"),
    ("RE: AW: Re: test", "test"),
    ("RE: AW: Re: Fwd: x", "x"),
    ("Fwd: Re: x", "x"),
    ("Re:Re:Re:Re:Re:Re:Re:Re:Re:Re: deep", "deep"),
    ("[all-staff] RE: test", "test"),
    ("[all] RE: AW: Re: test", "test"),
    ("RE: [all-staff] Re: test", "test"),
    ("[List Name] Lunch", "lunch"),
    ("  Re:   Hello \t  World  ", "hello world"),
    ("Re:\u00a0Hello\u3000World", "hello world"),
    ("Re: Re: Out of Office", "out of office"),
    ("Report: Q3", "report: q3"),  # no colon right after the word: not a prefix
    ("Re Re: x", "re re: x"),
    ("Sale: FW shoes", "sale: fw shoes"),
    ("Re: ", ""),
    ("RE: [x]", ""),
    ("", ""),
    (None, None),
]


@pytest.mark.parametrize(("subject", "expected"), NORMALIZE_CASES)
def test_normalize_subject(subject: str | None, expected: str | None) -> None:
    assert norm([subject]) == [expected]


REPLY_CASES = [
    ("Re: x", True),
    ("RE: AW: x", True),
    ("[all-staff] RE: x", True),
    ("Fwd: Re: x", True),
    ("Re: Fwd: x", True),
    ("R: x", True),
    ("回复：x", True),
    ("Réf : x", True),
    ("Re[2]: x", True),
    ("Fwd: x", False),
    ("FW: WG: TR: x", False),
    ("[all] Fwd: x", False),
    ("Enc: Rv: Doorst: 転送: x", False),
    ("Report", False),
    ("Hello Re: x", False),
    ("", False),
    (None, None),
]


@pytest.mark.parametrize(("subject", "expected"), REPLY_CASES)
def test_has_reply_prefix(subject: str | None, expected: bool | None) -> None:
    assert polars_eval([subject])["reply"].to_list() == [expected]


AUTO_CASES = [
    ("Automatic reply: Lunch", True),
    ("Auto: Lunch", True),
    ("Autoreply: Lunch", True),
    ("Auto-Reply: Lunch", True),
    ("Out of Office: Lunch", True),
    ("out of office", True),
    ("Abwesenheitsnotiz: Lunch", True),
    ("Automatische Antwort: Lunch", True),
    ("Réponse automatique : Lunch", True),
    ("RÉPONSE AUTOMATIQUE: Lunch", True),
    ("Respuesta automática: Lunch", True),
    ("Risposta automatica: Lunch", True),
    ("Automatisch antwoord: Lunch", True),
    ("Undeliverable: Lunch", True),
    ("Undelivered Mail Returned to Sender", True),
    ("Delivery Status Notification (Failure)", True),
    ("Mail delivery failed: returning message to sender", True),
    ("Returned mail: see transcript for details", True),
    ("Read: Lunch", True),
    ("Gelesen: Lunch", True),
    ("Not read: Lunch", True),
    ("Recall: Lunch", True),
    ("Message Recall Failure: Budget update", True),
    ("Message Recall Success: Budget update", True),
    ("Zurückrufen: Lunch", True),
    ("Delivered: Lunch", True),
    ("RE: Automatic reply: Lunch", True),
    ("[all] AW: Abwesenheitsnotiz: x", True),
    ("Automobile for sale", False),
    ("Reading list", False),
    ("Re: Lunch", False),
    ("Lunch (Out of Office)", False),
    ("", False),
    (None, None),
]


@pytest.mark.parametrize(("subject", "expected"), AUTO_CASES)
def test_is_auto_subject(subject: str | None, expected: bool | None) -> None:
    assert polars_eval([subject])["auto"].to_list() == [expected]


# The same subjects through both engines: guards polars and DuckDB staying in step.
ENGINE_SUBJECTS = [s for s, _ in NORMALIZE_CASES] + [
    "RE: AW: Re: [all-staff] Fwd: Quarterly numbers",
    "Automatic reply: RE: Lunch",
    "ΟΔΟΣ ΣΤΟ ΣΠΙΤΙ",  # final sigma: Rust lowercases it to ς, DuckDB to σ
    "İstanbul toplantısı",  # Rust lowercases İ to two code points, DuckDB to one
    "Re:\nfolded\r\n line",
    "Re(12): Ünïcödé ÄÖÜ",
    "[a][b] Re: x",
    "Re: [a] [b]",
]


def test_polars_and_duckdb_agree_on_cases() -> None:
    assert len(ENGINE_SUBJECTS) >= 40
    assert_engines_agree(ENGINE_SUBJECTS)


def assert_engines_agree(subjects: list[str | None]) -> None:
    left, right = polars_eval(subjects), duckdb_eval(subjects)
    for column in ("norm", "reply", "auto"):
        assert left[column].to_list() == right[column].to_list(), column


# --- RFC 2047 -------------------------------------------------------------------------------

DECODE_CASES = [
    ("=?UTF-8?B?w6l0w6k=?=", "été"),
    ("=?utf-8?b?w6l0w6k?=", "été"),  # missing padding
    ("=?iso-8859-1?Q?caf=E9_au_lait?=", "café au lait"),
    ("=?UTF-8?B?SGVsbG8g?= =?UTF-8?B?V29ybGQ=?=", "Hello World"),  # space between words dropped
    ("=?UTF-8?Q?a?=\r\n =?UTF-8?Q?b?=", "ab"),  # folded
    ("=?UTF-8?Q?=E2=82?= =?UTF-8?Q?=AC?=", "€"),  # character split across words
    ("Re: =?UTF-8?Q?R=C3=A9union?= demain", "Re: Réunion demain"),
    ("=?UTF-8?Q?a?= plain =?UTF-8?Q?b?=", "a plain b"),
    ("=?UTF-8*en?Q?hi?=", "hi"),  # RFC 2231 language
    ("=?gb2312?B?u+HS6Q==?=", "会议"),
    ("=?UTF-8?B?!!!broken?=", "=?UTF-8?B?!!!broken?="),
    ("=?UTF-8?B?QQ?= =?UTF-8?B?!!?= =?UTF-8?B?QQ?=", "A =?UTF-8?B?!!?= A"),
    ("=?x-unknown?Q?abc?= tail", "=?x-unknown?Q?abc?= tail"),
    ("=?UTF-8?Q?=FF=FE?=", "=?UTF-8?Q?=FF=FE?="),  # not UTF-8
    ("=?unicode_escape?Q?=5Cud800?=", "=?unicode_escape?Q?=5Cud800?="),  # lone surrogate
    ("=?hex?Q?41?=", "=?hex?Q?41?="),  # not a text codec
    ("a =? b", "a =? b"),
    ("no encoding here", "no encoding here"),
    ("", ""),
    (None, None),
]


@pytest.mark.parametrize(("raw", "expected"), DECODE_CASES)
def test_decode_rfc2047(raw: str | None, expected: str | None) -> None:
    assert decode_rfc2047(pl.Series([raw], dtype=pl.String)).to_list() == [expected]


def test_decode_rfc2047_keeps_order_and_repeats() -> None:
    raw = ["=?UTF-8?B?w6l0w6k=?=", None, "x", "=?UTF-8?B?w6l0w6k=?=", "=?UTF-8?Q?a?="]
    out = decode_rfc2047(pl.Series("subject", raw))
    assert out.name == "subject"
    assert out.to_list() == ["été", None, "x", "été", "a"]
    assert decode_rfc2047(pl.Series([None, None])).to_list() == [None, None]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.builds(
            "=?{}?{}?{}?= ".format,
            st.sampled_from(["utf-8", "iso-8859-1", "utf-16", "unicode_escape", "x", "hex"]),
            st.sampled_from("BbQq"),
            st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="?")),
        ).map(str.strip)
        | st.text(),
        max_size=8,
    )
)
def test_decode_rfc2047_never_raises(values: list[str]) -> None:
    out = decode_rfc2047(pl.Series(values, dtype=pl.String))
    assert len(out) == len(values)


# --- properties -----------------------------------------------------------------------------

# Scripts whose lowercase mappings are stable across Unicode versions (DuckDB's utf8proc lags
# Rust's tables for letters added in Unicode 16), plus the characters that trip engines up.
_CHARS = st.one_of(
    st.characters(min_codepoint=1, max_codepoint=0x24F),
    st.characters(min_codepoint=0x370, max_codepoint=0x4FF),
    st.characters(min_codepoint=0x2000, max_codepoint=0x206F),
    st.characters(min_codepoint=0x3000, max_codepoint=0x303F),
    st.characters(min_codepoint=0x4E00, max_codepoint=0x4FFF),
    st.characters(min_codepoint=0xFF00, max_codepoint=0xFFEF),
    st.sampled_from("İΣ：:[]()^ \t\n\u00a0\u3000"),
)
# fmt: off
PREFIXES = [
    "Re: ", "RE:", "re :", "Re[2]: ", "Re(3):", "Re^2: ", "AW: ", "SV:", "VS: ", "Antw: ",
    "Antwort: ", "Odp: ", "Réf : ", "RÉF: ", "Ref: ", "RIF: ", "R: ", "Vá: ", "VÁ:", "回复：",
    "答复: ", "回覆：", "転送: ", "Fwd: ", "FW: ", "Fw:", "WG: ", "TR: ", "Enc: ", "RV: ",
    "Doorst: ", "[all-staff] ", "[List Name]", " ", "\t", "\u3000", "Re：",
]
# fmt: on
_SUBJECTS = st.lists(st.sampled_from(PREFIXES) | st.text(_CHARS, max_size=12), max_size=5).map(
    "".join
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_SUBJECTS, min_size=1, max_size=10))
def test_normalize_is_idempotent(subjects: list[str]) -> None:
    once = norm(subjects)
    assert norm(once) == once


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.lists(st.sampled_from(PREFIXES), max_size=6), _SUBJECTS), max_size=8))
def test_prefixes_normalize_back(pairs: list[tuple[list[str], str]]) -> None:
    bases = norm([subject for _, subject in pairs])
    prefixed = ["".join(prefixes) + base for (prefixes, _), base in zip(pairs, bases, strict=True)]
    assert norm(prefixed) == bases


@settings(max_examples=200, deadline=None)
@given(st.lists(_SUBJECTS | st.none(), min_size=1, max_size=10))
def test_polars_and_duckdb_agree_on_generated(subjects: list[str | None]) -> None:
    assert_engines_agree(subjects)
