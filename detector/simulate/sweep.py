"""Merge per-message event lists into one time-ordered stream with bounded memory.

Any renderer turns one message into (POSIX microseconds, text) events, which may reach
far ahead (retries). Messages are rendered in arrival order; their events go into
10-second buckets, and a bucket is sorted and released once no message still to come
can add to it. Memory holds a few seconds of lines plus pending retries, whatever the
length of the day. Ties keep message order, then the order a message emitted them.
"""

from __future__ import annotations

import gc
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from itertools import chain
from operator import itemgetter

from detector.simulate.scenario import Message
from detector.simulate.stream import in_time_order

WINDOW_US = 10_000_000
_T = itemgetter(0)
Event = tuple[int, str]


def sweep(messages: Iterable[Message], render: Callable[[Message, list[Event]], None],
          lead_us: int, since_us: int = 0) -> Iterator[list[Event]]:
    """Time-sorted events of all messages, one 10-second bucket at a time.

    ``render(message, events)`` appends the message's events; none may be earlier than
    ``lead_us`` before the message's time. A ``Mail`` is read as it comes (its streams
    are never held); other messages are sorted first. Events before ``since_us`` (the
    start of a rotated log) are dropped.
    """
    buckets: dict[int, list[list[Event]]] = {}
    # Millions of short-lived tuples and no reference cycles: the cyclic collector would
    # only rescan the long-lived scenario over and over (a third of the run time).
    enabled = gc.isenabled()
    gc.disable()
    try:
        if since_us:
            inner = render

            def render(m: Message, ev: list[Event]) -> None:
                mine: list[Event] = []
                inner(m, mine)
                ev.extend(e for e in mine if e[0] >= since_us)
        yield from _run(in_time_order(messages), lead_us, buckets, render)
    finally:
        if enabled:
            gc.enable()


def _run(msgs: Iterator[Message], lead_us: int, buckets: dict[int, list[list[Event]]],
         render: Callable[[Message, list[Event]], None]) -> Iterator[list[Event]]:
    nxt = next(msgs, None)
    while nxt is not None or buckets:
        if nxt is None:
            w = min(buckets)
        else:
            due = (nxt.time_us - lead_us) // WINDOW_US
            w = min(due, min(buckets)) if buckets else due
        limit = (w + 1) * WINDOW_US
        while nxt is not None and nxt.time_us - lead_us < limit:
            ev: list[Event] = []
            render(nxt, ev)
            _bucket(ev, buckets)
            nxt = next(msgs, None)
        parts = buckets.pop(w, None)
        if parts:
            flat = parts[0] if len(parts) == 1 else list(chain.from_iterable(parts))
            flat.sort(key=_T)
            yield flat


def _bucket(ev: list[Event], buckets: dict[int, list[list[Event]]]) -> None:
    if not ev:
        return
    ev.sort(key=_T)
    lo, n = 0, len(ev)
    while lo < n:
        w = ev[lo][0] // WINDOW_US
        end = (w + 1) * WINDOW_US
        hi = n if ev[-1][0] < end else bisect_left(ev, end, lo, key=_T)
        part = ev if lo == 0 and hi == n else ev[lo:hi]
        b = buckets.get(w)
        if b is None:
            buckets[w] = [part]
        else:
            b.append(part)
        lo = hi
