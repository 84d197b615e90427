"""Stream log lines to a plain or gzip file without holding them in memory."""

from __future__ import annotations

import gzip
import io
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

CHUNK_LINES = 20_000


@contextmanager
def open_log(path: str | Path, compresslevel: int = 6) -> Iterator[IO[str]]:
    """Open for writing; ``.gz`` paths are gzip-compressed (no name, mtime 0: reproducible)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        with (
            open(path, "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=compresslevel,
                          mtime=0) as gz,
            io.TextIOWrapper(gz, encoding="utf-8", newline="\n") as f,
        ):
            yield f
    else:
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            yield f


def write_lines(path: str | Path, lines: Iterable[str] | Iterable[list[str]],
                compresslevel: int = 6) -> int:
    """Write lines (or chunks of lines) to ``path``; return the number of lines written."""
    n = 0
    buf: list[str] = []
    with open_log(path, compresslevel) as f:
        for item in lines:
            if isinstance(item, list):
                if item:
                    f.write("\n".join(item))
                    f.write("\n")
                    n += len(item)
                continue
            buf.append(item)
            if len(buf) >= CHUNK_LINES:
                f.write("\n".join(buf) + "\n")
                n += len(buf)
                buf.clear()
        if buf:
            f.write("\n".join(buf) + "\n")
            n += len(buf)
    return n


def read_lines(path: str | Path) -> list[str]:
    """Read a plain or .gz log back (tests, small files)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return f.read().splitlines()


def set_mtime(path: str | Path, posix_seconds: float) -> None:
    """Give a rotated log the mtime of its last line, so year inference from mtime works."""
    os.utime(path, (posix_seconds, posix_seconds))
