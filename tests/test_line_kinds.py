"""Every format's kind table, checked by one test: each sample line, parsed by its format,
gets exactly its kind, and every kind has a sample (Exchange and Microsoft 365 included).

The samples are real lines (from ../shared/corpus, or in the exact shape of the MTA's
documentation), each naming its source in the table (``detector/formats/<format>.py``).
"""

from __future__ import annotations

import polars as pl
import pytest

from detector.formats import FORMATS
from detector.formats.context import ParseContext
from detector.formats.kinds import Kind, Sample, descriptions, samples
from detector.formats.syslog import YearState

TABLES: dict[str, tuple[Kind, ...]] = {
    name: module.TABLE for name, module in FORMATS.items() if hasattr(module, "TABLE")}
CASES = [(fmt, kind, s) for fmt, table in TABLES.items() for kind, s in samples(table)]


def _kinds_of(fmt: str, sample: Sample) -> list[str]:
    lines = [*sample.before, sample.line]
    frame = pl.DataFrame({"raw": lines, "line_no": range(1, len(lines) + 1)})
    ctx = ParseContext("sample.log", "UTC", YearState(2024), head=tuple(lines))
    events = FORMATS[fmt].parse(frame, ctx)
    return events.filter(pl.col("line_no") == len(lines))["kind"].to_list()


def test_every_format_has_a_kind_table() -> None:
    assert set(TABLES) == set(FORMATS)


@pytest.mark.parametrize(("fmt", "kind", "sample"), CASES,
                         ids=[f"{f}-{k}-{i}" for i, (f, k, _) in enumerate(CASES)])
def test_each_sample_gets_exactly_its_kind(fmt: str, kind: str, sample: Sample) -> None:
    assert sample.source.strip(), "a sample names where it comes from"
    found = _kinds_of(fmt, sample)
    assert found, f"{fmt}: the sample gave no event: {sample.line!r}"
    assert set(found) == {kind}, f"{fmt}: {sample.line!r} ({sample.source})"


@pytest.mark.parametrize("fmt", sorted(TABLES))
def test_every_kind_has_a_sample(fmt: str) -> None:
    table = TABLES[fmt]
    with_samples = {k for k, _ in samples(table)}
    assert set(descriptions(table)) - with_samples == set()
    assert descriptions(table) == FORMATS[fmt].KINDS
