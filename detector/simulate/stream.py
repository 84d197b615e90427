"""Messages made on demand, so that a storm of a million replies is never held in memory.

A ``Stream`` makes its messages again on every pass, in time order and byte for byte the
same (its own seeded generator). ``Mail`` is a day's messages: the ones held in a list
plus streams, iterated as one time-ordered sequence. The renderers built on ``sweep``
(Postfix, Exim, Exchange, Sendmail) take it as it comes, without sorting or keeping it;
a Microsoft 365 export (newest first) and Mailman's own logs hold their rows.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from detector.simulate.scenario import Message


def _time(m: Message) -> datetime:
    return m.time


@dataclass(frozen=True)
class Stream:
    """``count`` messages from ``first`` to ``last``, made by ``make()`` in time order."""

    make: Callable[[], Iterator[Message]]
    count: int
    first: datetime
    last: datetime

    def __iter__(self) -> Iterator[Message]:
        return self.make()


@dataclass
class Mail:
    """Held messages (any order) and streams: one time-ordered sequence, on every pass.

    Ties keep the held messages' order first, then the streams' in the order added.
    """

    held: list[Message] = field(default_factory=list)
    streams: list[Stream] = field(default_factory=list)

    def __iter__(self) -> Iterator[Message]:
        return heapq.merge(sorted(self.held, key=_time), *self.streams, key=_time)

    def __len__(self) -> int:
        return len(self.held) + sum(s.count for s in self.streams)

    def add(self, more: Iterable[Message]) -> None:
        if isinstance(more, Mail):
            self.held += more.held
            self.streams += more.streams
        elif isinstance(more, Stream):
            self.streams.append(more)
        else:
            self.held += more

    def span(self) -> tuple[datetime, datetime] | None:
        """(first, last) message time, without making the streams' messages."""
        times = [t for s in self.streams for t in (s.first, s.last)]
        times += [m.time for m in self.held]
        return (min(times), max(times)) if times else None


Messages = list[Message] | Mail


def join(parts: Iterable[Messages]) -> Messages:
    """The parts as one list, or as ``Mail`` when any part streams its messages."""
    parts = list(parts)
    if not any(isinstance(p, Mail) for p in parts):
        return [m for p in parts for m in p]
    out = Mail()
    for p in parts:
        out.add(p)
    return out


def in_time_order(messages: Iterable[Message]) -> Iterator[Message]:
    """Time order: a ``Mail`` as it comes, anything else sorted (stable: ties keep input
    order)."""
    if isinstance(messages, Mail):
        return iter(messages)
    return iter(sorted(messages, key=_time))


def span(messages: Iterable[Message]) -> tuple[datetime, datetime] | None:
    """(first, last) message time, or None for no messages."""
    if isinstance(messages, Mail):
        return messages.span()
    times = [m.time for m in messages]
    return (min(times), max(times)) if times else None
