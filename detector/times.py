"""How mailstorm writes a time: ISO 8601 in UTC with a ``Z`` where it is stored or read by
programs (the warehouse, ``incidents.json``), and in the display zone with its
abbreviation where people read it (the HTML pages, the text summary)."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from detector.errors import UsageError


def iso_z(ts: datetime | None) -> str | None:
    """``2016-11-14T09:58:00Z``; a naive time is taken as UTC; None stays None."""
    if ts is None:
        return None
    ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    return ts.isoformat().replace("+00:00", "Z")

#: how a year source that was guessed begins (a file's year-less stamps dated by its
#: modification time); the report warns about those
GUESSED_YEAR = "guessed from the modification time"


def display_zone(name: str) -> ZoneInfo:
    """The IANA zone times are shown in (``--display-tz``); a usage error when unknown."""
    try:
        return ZoneInfo(name)
    # ValueError: "../etc" or an empty name; OSError: a folder ("Europe")
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise UsageError(f"unknown time zone {name!r} (an IANA name such as "
                         "Europe/London or UTC)") from exc


def shown_time(value: datetime | str | None, zone: tzinfo, *, seconds: bool = True) -> str | None:
    """A stored time (UTC, or ISO 8601 text of one) as people read it in ``zone``, with
    the zone's abbreviation of that moment: ``2016-07-14 10:58:00 BST``. Text that is not
    an ISO time is returned as it is (a report must render whatever it is given)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return value
        value = parsed
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value
    local = value.astimezone(zone)
    return local.strftime("%Y-%m-%d %H:%M:%S %Z" if seconds else "%Y-%m-%d %H:%M %Z")
