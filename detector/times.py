"""How mailstorm writes a time: ISO 8601 in UTC with a ``Z`` (reports, JSON, summaries)."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_z(ts: datetime | None) -> str | None:
    """``2016-11-14T09:58:00Z``; a naive time is taken as UTC; None stays None."""
    if ts is None:
        return None
    ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    return ts.isoformat().replace("+00:00", "Z")

#: how a year source that was guessed begins (a file's year-less stamps dated by its
#: modification time); the report warns about those
GUESSED_YEAR = "guessed from the modification time"
