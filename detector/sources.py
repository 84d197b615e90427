"""Find log inputs, open them (plain or compressed), order rotations, read them in batches.

Nothing here looks at what a line means: that is the formats' job. This module hands each
format batches of raw lines with their line numbers, and tells it in which order files of
one rotation group come (oldest first), so that year inference can run across them.
"""

from __future__ import annotations

import bz2
import glob
import gzip
import io
import lzma
import os
import re
import sys
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import polars as pl

from detector.errors import InputError, UsageError

STDIN = "-"
# decompressed bytes per batch: bounds memory per worker. Under 32 MiB on purpose: glibc
# serves larger blocks with fresh mmap()s, and the page faults of a new 32 MiB buffer per
# batch cost more than the read itself (10M lines: 3.5 s to read at 32 MiB, 1.3 s at 24)
BATCH_BYTES = 24 * 1024 * 1024

_MAGIC = {
    b"\x1f\x8b": "gzip",
    b"BZh": "bz2",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
}
# mail.log.2.gz, mail.log.1, maillog-20161114.gz, maillog-20161114, mail.log
_ROTATION = re.compile(
    r"^(?P<base>.+?)(?:[.-](?P<num>\d{1,3})|-(?P<date>\d{8}(?:\d{2})?))?"
    r"(?P<comp>\.(?:gz|bz2|xz|zst))?$"
)


@dataclass(frozen=True)
class LogFile:
    """One input file and where it stands in its rotation group."""

    path: str  # as given ('-' for stdin)
    group: str  # directory + base name: files of one rotation group share it
    order: tuple[int, str]  # sort key within the group: smaller = older


def _rotation_key(path: str) -> tuple[str, tuple[int, str]]:
    p = Path(path)
    m = _ROTATION.match(p.name)
    assert m is not None  # the pattern accepts any name
    if m.group("num") is not None:  # mail.log.2 is older than mail.log.1
        order: tuple[int, str] = (-int(m.group("num")), "")
    elif m.group("date") is not None:  # dateext: earlier date is older
        order = (-1, m.group("date"))
    else:  # the live file is the newest
        order = (0, "")
    return str(p.parent / m.group("base")), order


def discover(inputs: Iterable[str]) -> list[LogFile]:
    """Expand files, folders (their files, recursively) and globs into ordered LogFiles.

    Files are ordered by rotation group, oldest rotation first, so a group reads as one
    continuous log.
    """
    paths: list[str] = []
    for item in inputs:
        if item == STDIN:
            paths.append(STDIN)
        elif os.path.isdir(item):
            for root, dirs, files in os.walk(item):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                paths.extend(
                    os.path.join(root, f)
                    for f in sorted(files)
                    if not f.startswith(".") and not f.endswith((".json", ".md"))
                )
        elif os.path.isfile(item):
            paths.append(item)
        else:
            matches = sorted(glob.glob(item, recursive=True))
            files = [m for m in matches if os.path.isfile(m)]
            if not files:
                raise UsageError(f"no such file, folder or glob match: {item}")
            paths.extend(files)
    seen: set[str] = set()
    result: list[LogFile] = []
    for path in paths:
        key = path if path == STDIN else os.path.realpath(path)
        if key in seen:
            continue
        seen.add(key)
        group, order = _rotation_key(path) if path != STDIN else (STDIN, (0, ""))
        result.append(LogFile(path=path, group=group, order=order))
    # oldest first inside a group; groups in the order first seen
    first_seen = {f.group: i for i, f in reversed(list(enumerate(result)))}
    result.sort(key=lambda f: (first_seen[f.group], f.order))
    return result


def _compression(head: bytes) -> str | None:
    for magic, name in _MAGIC.items():
        if head.startswith(magic):
            return name
    return None


def open_binary(path: str) -> BinaryIO | io.BufferedIOBase:
    """Open a log for reading decompressed bytes; compression is sniffed from magic bytes.

    The file itself (or stdin) when plain, else a decompressing stream over it.
    """
    if path == STDIN:
        return sys.stdin.buffer
    try:
        raw = open(path, "rb")  # noqa: SIM115 - handed to the caller
    except OSError as exc:
        raise InputError(path, None, f"cannot open: {exc.strerror}") from exc
    head = raw.peek(8)[:8] if hasattr(raw, "peek") else b""
    kind = _compression(head)
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw)
    if kind == "bz2":
        return bz2.BZ2File(raw)
    if kind == "xz":
        return lzma.LZMAFile(raw)
    if kind == "zstd":
        try:
            import zstandard  # optional: only sites with .zst rotations need it
        except ImportError as exc:
            raise InputError(path, None, "is zstd-compressed: pip install zstandard") from exc
        return zstandard.ZstdDecompressor().stream_reader(raw)
    return raw


# what a corrupt or truncated file raises (zlib.error: a damaged deflate stream in a .gz)
_READ_ERRORS = (OSError, EOFError, lzma.LZMAError, zlib.error)


@contextmanager
def reading(path: str) -> Iterator[None]:
    """Turn a read failure of ``path`` (truncated .gz, bad stream...) into an InputError."""
    try:
        yield
    except _READ_ERRORS as exc:
        raise InputError(path, None, f"cannot read: {exc}") from exc


_KINDS: tuple[tuple[type, str], ...] = (
    (gzip.GzipFile, "gzip"), (bz2.BZ2File, "bz2"), (lzma.LZMAFile, "xz"))


def read_head(path: str, size: int) -> bytes:
    """The first ``size`` decompressed bytes of a file, for sniffing before anything loads.

    A file that cannot be opened or decompressed raises an InputError whose message is a
    short reason: "truncated gzip", "corrupt xz", "cannot open: Permission denied".
    """
    with open_binary(path) as f:
        try:
            return f.read(size)
        except _READ_ERRORS as exc:
            kind = next((name for cls, name in _KINDS if isinstance(f, cls)), None)
            if kind is None:  # a plain file: an I/O error
                why = f"cannot read: {getattr(exc, 'strerror', None) or exc}"
            else:  # EOFError: the stream ends before its end marker
                why = f"{'truncated' if isinstance(exc, EOFError) else 'corrupt'} {kind}"
            raise InputError(path, None, why) from exc


def head_lines(path: str, n: int = 50) -> list[str]:
    """The first n lines (decoded leniently), for sniffing formats and years."""
    with reading(path), open_binary(path) as f:
        data = f.read(256 * 1024)
    return data.decode("utf-8", "replace").splitlines()[:n]


def last_line(path: str) -> str | None:
    """The last non-empty line of a file; reads only the tail of plain files."""
    with reading(path), open_binary(path) as f:
        if isinstance(f, io.BufferedReader):
            size = os.fstat(f.fileno()).st_size
            f.seek(max(0, size - 65536))
            tail = f.read()
        else:  # compressed: must stream through
            tail = b""
            while chunk := f.read(BATCH_BYTES):
                tail = (tail + chunk)[-65536:]
    for line in reversed(tail.decode("utf-8", "replace").splitlines()):
        if line.strip():
            return line
    return None


def _read_lines(data: bytes) -> pl.DataFrame:
    if b"\x00" in data:  # NUL is our column separator; NUL-filled blocks happen after crashes
        data = data.replace(b"\x00", b"")
    return pl.read_csv(data, has_header=False, separator="\x00", quote_char=None,
                       schema={"raw": pl.String}, encoding="utf8-lossy")


def _lines_frame(data: bytes, first_line_no: int, carry: bytes = b"",
                 whole: int | None = None) -> pl.DataFrame:
    """Split a block of lines into a one-column frame, in Rust (polars' CSV reader).

    ``carry`` is the start of the block's first line, left over from the block before;
    ``whole`` is how many bytes of ``data`` end whole lines (the rest, an unfinished last
    line, is left out). The block itself is never copied: a 24 MiB ``carry + data`` per
    batch cost more than the read.
    """
    frame = _read_lines(data)
    if whole is not None and whole < len(data):  # leave out the unfinished last line
        frame = frame.head(data.count(b"\n", 0, whole))  # a row per line ending
    if carry:  # the first line, whole: read on its own, the same way
        frame = pl.concat([_read_lines(carry + data[:data.find(b"\n") + 1]).head(1),
                           frame.slice(1)])
    frame = frame.with_columns(
        line_no=pl.int_range(first_line_no, first_line_no + frame.height, dtype=pl.Int64))
    if b"\r" in data or b"\r" in carry:  # polars' reader keeps the '\r' of '\r\n' endings
        frame = frame.with_columns(pl.col("raw").str.strip_suffix("\r"))
    return frame


def iter_batches(
    path: str, batch_bytes: int = BATCH_BYTES, skip_bytes: int = 0
) -> Iterator[tuple[pl.DataFrame, int]]:
    """Yield (frame of raw lines with line_no, bytes consumed so far) in bounded batches.

    "Consumed" counts whole lines only: an unterminated last line comes in a batch of its
    own whose consumed count does not move.

    ``skip_bytes`` resumes after a prefix already ingested (a growing mail.log); the prefix
    must end on a line boundary, which it does when it came from this function.
    """
    line_no = 1
    consumed = 0
    try:
        with open_binary(path) as f:
            if skip_bytes:
                prefix_lines = 0
                remaining = skip_bytes
                while remaining:
                    chunk = f.read(min(remaining, batch_bytes))
                    if not chunk:
                        break
                    prefix_lines += chunk.count(b"\n")
                    remaining -= len(chunk)
                line_no += prefix_lines
                consumed = skip_bytes
            carry = b""  # the start of a line the last chunk cut
            while True:
                chunk = f.read(batch_bytes)
                if not chunk:
                    break
                whole = chunk.rfind(b"\n") + 1
                if whole == 0:  # one huge line: keep reading
                    carry += chunk
                    continue
                frame = _lines_frame(chunk, line_no, carry, whole)
                line_no += frame.height
                consumed += len(carry) + whole
                carry = chunk[whole:]
                yield frame, consumed
            if carry:  # a last line without newline may still be being written:
                # yield it, but do not count its bytes, so a later run reads it again whole
                yield _lines_frame(carry, line_no), consumed
    except _READ_ERRORS as exc:
        raise InputError(path, line_no, f"cannot read: {exc}") from exc
