"""Log formats: one module per format, each turning raw-line batches into events.

A format module exposes ``NAME``, ``KINDS`` (kind -> description, for the README and
``mailstorm kinds``), ``sniff(lines) -> bool`` and ``parse(lines, ctx) -> events``.
"""

from __future__ import annotations

from types import ModuleType

from detector.formats import postfix
from detector.formats.context import ParseContext

__all__ = ["FORMATS", "ParseContext", "sniff"]

FORMATS: dict[str, ModuleType] = {postfix.NAME: postfix}


def sniff(lines: list[str]) -> str | None:
    """Name of the first format whose sniffer accepts these opening lines, else None."""
    for name, module in FORMATS.items():
        if module.sniff(lines):
            return name
    return None
