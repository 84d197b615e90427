"""Shared fixtures: the real-log corpus beside the repository, and small parse helpers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl
import pytest

from detector.formats import ParseContext, postfix
from detector.formats.syslog import YearState

# /work/main (or a CI clone) has a ``shared/`` folder beside it holding the corpus.
CORPUS_DIR = Path(__file__).resolve().parents[2] / "shared" / "corpus"


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The shared corpus of real mail-server logs (skips the test when it is absent)."""
    if not CORPUS_DIR.is_dir():
        pytest.skip("shared corpus not present")
    return CORPUS_DIR


def lines_frame(lines: Sequence[str | None], first_line_no: int = 1) -> pl.DataFrame:
    """A batch as ``sources.iter_batches`` yields it: columns raw and line_no."""
    return pl.DataFrame(
        {"raw": list(lines), "line_no": range(first_line_no, first_line_no + len(lines))},
        schema={"raw": pl.String, "line_no": pl.Int64},
    )


def parse_postfix(
    lines: Sequence[str | None], *, year: int = 2024, tz: str = "UTC",
    ctx: ParseContext | None = None,
) -> pl.DataFrame:
    """Parse lines as one batch with the Postfix parser; rows in line order."""
    ctx = ctx or ParseContext(source_file="test.log", tz=tz, years=YearState(year))
    return postfix.parse(lines_frame(lines), ctx).sort("line_no")
