"""What a command shows on stderr while it works: warnings always, progress on a terminal.

A run goes through stages: reading the logs (measured in bytes of input: compressed bytes
for compressed files, of the total of every file to read), then building the model,
running the rules and writing the report (no honest estimate exists for those: they show
the time they have taken so far). On a terminal each stage is one line, redrawn in place
a few times a second: the reading stage as a bar with the bytes read of the total, the
percentage and an estimate of the time left, the others with a spinner and the time so
far; a finished stage leaves its line with the time it took.

Without a terminal on stderr (cron, systemd, a pipe), or with ``-q``, nothing but warnings
and errors is written: a log of the night holds what needs reading, not progress.

The pipeline speaks to it as to any progress callback, with one-line messages: a message
starting with ``warning:`` is a warning, any other starts the next stage. ``ingest`` also
reports the bytes it has read (``Meter.read_bytes``) when the callback can take them.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from typing import Protocol, TextIO, runtime_checkable

#: seconds between two redraws of a stage's line
REDRAW = 0.2
_SPINNER = "|/-\\"


@runtime_checkable
class Meter(Protocol):
    """A progress callback that also takes the bytes read of the total."""

    def __call__(self, message: str) -> None: ...

    def read_bytes(self, done: int, total: int) -> None: ...


def size_text(n: float) -> str:
    """1.2 GB, 345 MB, 12 kB, 5 B (powers of 1000, as disks are sold)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" or n >= 100 else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def duration_text(seconds: float) -> str:
    """0.4 s, 9.7 s, 0:12, 12:30, 1:02:03."""
    if seconds < 9.95:
        return f"{max(seconds, 0):.1f} s"
    s = int(seconds + 0.5)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):  # closed, or no descriptor
        return False


class Console:
    """Warnings and progress of one command on ``stream`` (stderr); see the module."""

    def __init__(self, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.live = not quiet and is_terminal(self.stream)
        self._lock = threading.RLock()
        self._label: str | None = None  # the current stage
        self._started = 0.0
        self._bytes: tuple[int, int] | None = None  # (done, total) of the reading stage
        self._drawn = False  # the current stage's line is on the screen, unfinished
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()

    # --- what the pipeline calls -------------------------------------------------------
    def __call__(self, message: str) -> None:
        if message.startswith("warning:"):
            self.line(message)
        elif self.live:
            with self._lock:
                self._finish_stage()
                self._start(message)

    def read_bytes(self, done: int, total: int) -> None:
        if not self.live:
            return
        with self._lock:
            if self._bytes is None:
                self._finish_stage()
                self._start("reading", (done, total))
            self._bytes = (done, total)
            self._draw()

    def line(self, text: str) -> None:
        """A line that stays (a warning, the closing summary): printed above the stage's
        line, which is drawn again below it."""
        with self._lock:
            if self._drawn:
                self.stream.write("\r\x1b[K")
            self.stream.write(text + "\n")
            self.stream.flush()
            self._drawn = False
            if self._label is not None:
                self._draw()

    def close(self) -> None:
        """End the current stage (its line stays, with the time it took)."""
        with self._lock:
            self._finish_stage()
        self._stop.set()
        if self._ticker is not None and self._ticker is not threading.current_thread():
            self._ticker.join(timeout=1)

    def __enter__(self) -> Console:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- drawing -----------------------------------------------------------------------
    def _start(self, label: str, read: tuple[int, int] | None = None) -> None:
        self._label, self._started, self._bytes = label, time.monotonic(), read
        self._draw()
        if self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, name="mailstorm-progress",
                                            daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(REDRAW):
            with self._lock:
                if self._label is not None:
                    self._draw()

    def _finish_stage(self) -> None:
        if self._label is None:
            return
        elapsed = time.monotonic() - self._started
        if self._bytes is not None:
            done, total = self._bytes
            text = f"read {size_text(done)} of {size_text(total)} in {duration_text(elapsed)}"
        else:
            text = f"{self._label}: {duration_text(elapsed)}"
        self._label, self._bytes = None, None
        if self._drawn:
            self.stream.write("\r\x1b[K")
        self.stream.write(text + "\n")
        self.stream.flush()
        self._drawn = False

    def _draw(self) -> None:
        assert self._label is not None
        elapsed = time.monotonic() - self._started
        if self._bytes is not None:
            text = _bar(self._label, *self._bytes, elapsed)
        else:
            spin = _SPINNER[int(elapsed / REDRAW) % len(_SPINNER)]
            text = f"{self._label} {spin} {duration_text(elapsed)}"
        width = shutil.get_terminal_size((80, 24)).columns
        self.stream.write("\r" + text[:max(width - 1, 10)] + "\x1b[K")
        self.stream.flush()
        self._drawn = True


def _bar(label: str, done: int, total: int, elapsed: float, width: int = 24) -> str:
    """``reading [#########-----------]  45%  1.2 GB of 2.6 GB  0:12 left``"""
    share = min(done / total, 1.0) if total > 0 else 1.0
    filled = int(share * width)
    left = "--:--"
    if 0 < share < 1 and elapsed > 0.5:
        left = duration_text(elapsed * (1 - share) / share)
    elif share >= 1:
        left = "0:00"
    return (f"{label} [{'#' * filled}{'-' * (width - filled)}] {share * 100:3.0f}%  "
            f"{size_text(done)} of {size_text(total)}  {left} left")


def file_sizes(paths: list[str]) -> dict[str, int]:
    """Bytes of each file on disk (0 when it cannot be stat'ed: it is skipped anyway)."""
    sizes = {}
    for path in paths:
        try:
            sizes[path] = os.stat(path).st_size
        except OSError:
            sizes[path] = 0
    return sizes
