"""Syslog timestamp prefixes, computed once per second instead of once per line.

Events are (POSIX microseconds, text) pairs already sorted by time, so a prefix only has
to be rebuilt when the second changes; that keeps timestamping out of the per-line cost.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from datetime import UTC, datetime, tzinfo
from operator import itemgetter
from zoneinfo import ZoneInfo

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
STYLES = ("rfc3164", "rfc3339")
_T = itemgetter(0)


class Stamper:
    """Prefix lines with an RFC 3164 (``Nov  4 10:02:11``) or RFC 3339 timestamp.

    ``tz`` renders local time of that zone (syslog writes local time); RFC 3164 carries
    no zone, RFC 3339 carries the offset valid at that instant.
    """

    def __init__(self, style: str = "rfc3164", tz: str | tzinfo | None = None) -> None:
        if style not in STYLES:
            raise ValueError(f"timestamp style must be one of {STYLES}, not {style!r}")
        self.style = style
        self.tz: tzinfo | None = ZoneInfo(tz) if isinstance(tz, str) else tz

    def local_parts(self, sec: int) -> tuple[int, int, int, int, int, int, int]:
        """(year, month, day, hour, minute, second, utc offset seconds) for a POSIX second."""
        if self.tz is None:
            t = time.gmtime(sec)
            return t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, 0
        d = datetime.fromtimestamp(sec, self.tz)
        off = int(d.utcoffset().total_seconds())  # type: ignore[union-attr]
        return d.year, d.month, d.day, d.hour, d.minute, d.second, off

    def rfc3164(self, sec: int) -> str:
        """``Mon dd hh:mm:ss`` in local time, day padded with a space (``Nov  4``)."""
        _, mo, d, h, mi, s, _ = self.local_parts(sec)
        return f"{MONTHS[mo - 1]} {d:2d} {h:02d}:{mi:02d}:{s:02d}"

    def _rfc3339_parts(self, sec: int) -> tuple[str, str]:
        y, mo, d, h, mi, s, off = self.local_parts(sec)
        sign = "-" if off < 0 else "+"
        oh, om = divmod(abs(off) // 60, 60)
        return f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}", f"{sign}{oh:02d}:{om:02d}"

    def lines(self, events: list[tuple[int, str]]) -> list[str]:
        """Whole lines for time-sorted (microseconds, 'host program[pid]: text') events."""
        out: list[str] = []
        n = len(events)
        lo = 0
        if self.style == "rfc3164":
            while lo < n:  # one prefix per second, joined by a comprehension (C speed)
                sec = events[lo][0] // 1_000_000
                hi = bisect_left(events, (sec + 1) * 1_000_000, lo, key=_T)
                pre = self.rfc3164(sec) + " "
                out += [pre + text for _, text in events[lo:hi]]
                lo = hi
            return out
        while lo < n:
            sec = events[lo][0] // 1_000_000
            hi = bisect_left(events, (sec + 1) * 1_000_000, lo, key=_T)
            day, off = self._rfc3339_parts(sec)
            base = sec * 1_000_000
            out += [f"{day}.{t - base:06d}{off} {text}" for t, text in events[lo:hi]]
            lo = hi
        return out


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    """Shorthand for an aware UTC datetime."""
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC)
