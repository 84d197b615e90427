"""What a parser is told about the file a batch came from."""

from __future__ import annotations

from dataclasses import dataclass, field

from detector.formats.syslog import YearState


@dataclass
class ParseContext:
    """Per-file parse settings and the state carried from one batch to the next."""

    source_file: str
    tz: str = "UTC"
    years: YearState = field(default_factory=lambda: YearState(1970))
    #: the file's first lines (decoded), for formats whose header names the columns
    #: (Exchange ``#Fields:``, CSV exports): batches after the first do not contain it
    head: tuple[str, ...] = ()
