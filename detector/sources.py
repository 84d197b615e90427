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
import stat
import sys
import zlib
from collections.abc import Generator, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import polars as pl

from detector.errors import DamagedInputError, InputError, UsageError

STDIN = "-"
# decompressed bytes per batch: bounds memory per worker. Under 32 MiB on purpose: glibc
# serves larger blocks with fresh mmap()s, and the page faults of a new 32 MiB buffer per
# batch cost more than the read itself (10M lines: 3.5 s to read at 32 MiB, 1.3 s at 24)
BATCH_BYTES = 24 * 1024 * 1024
# a line longer than this (bytes) is cut to it and counted: no mail log writes one, and a
# line is held whole in memory, so an endless one (a binary file, a bomb) must not be
MAX_LINE = 64 * 1024
# a compressed file may decompress to MAX_RATIO times its size; beyond that, once it has
# given RATIO_FLOOR bytes (small files compress well too), it stops with an InputError.
# Mail logs compress 10-40x (xz -9 of a Postfix night: ~25x); gzip cannot exceed 1032x.
MAX_RATIO = 1000
RATIO_FLOOR = 256 * 1024 * 1024
# standard input is copied to a temporary file to be read like a file: at most this much
# (a 10M-line night is 2.6 GB), so `mailstorm run - < /dev/zero` cannot fill the disk
STDIN_LIMIT = 8 * 1024 * 1024 * 1024

_MAGIC = {
    b"\x1f\x8b": "gzip",
    b"BZh": "bz2",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
}
# mail.log.2.gz, mail.log.1, maillog-20161114.gz, maillog-20161114, mail.log
# what a corrupt or truncated file raises (zlib.error: a damaged deflate stream in a .gz)
_READ_ERRORS = (OSError, EOFError, lzma.LZMAError, zlib.error)
_ROTATION = re.compile(
    r"^(?P<base>.+?)(?:[.-](?P<num>\d{1,3})|-(?P<date>\d{8}(?:\d{2})?))?"
    r"(?P<comp>\.(?:gz|bz2|xz|zst))?$",
    re.DOTALL,  # a newline in a file name is still a name
)


@dataclass(frozen=True)
class LogFile:
    """One input file and where it stands in its rotation group."""

    path: str  # as given ('-' for stdin)
    group: str  # directory + base name: files of one rotation group share it
    order: tuple[int, str]  # sort key within the group: smaller = older
    why_not: str | None = None  # why it cannot be read, known when found (not a file...)


def shown(path: str) -> str:
    """A path as it can be printed: a name that is not UTF-8 (undecodable bytes arrive as
    surrogates from os.walk and argv) shows its bytes escaped, ``caf\\xe9.log``."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path).decode("utf-8", "backslashreplace")
    return path


def _why_not(path: str) -> str | None:
    """Why a path found on disk cannot be read as a log, or None: only regular files are
    opened (a FIFO would block the run forever, a device never ends)."""
    if shown(path) != path:
        return "file name is not UTF-8"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "dangling symbolic link" if os.path.islink(path) else "no such file"
    except OSError as exc:
        return f"cannot open: {exc.strerror}"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    return None


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
    continuous log. What cannot be read is a LogFile too, with its ``why_not``: a FIFO or
    device ("not a regular file"), a dangling symbolic link, a folder that cannot be listed,
    a name that is not UTF-8 (its ``path`` then shows the name escaped).
    """
    found: list[tuple[str, str | None]] = []  # (path, why it cannot be read, if known)

    def unlistable(exc: OSError) -> None:
        found.append((str(exc.filename), f"cannot read folder: {exc.strerror}"))

    for item in inputs:
        if item == STDIN:
            found.append((STDIN, None))
        elif os.path.isdir(item):
            for root, dirs, files in os.walk(item, onerror=unlistable):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found.extend(
                    (os.path.join(root, f), None)
                    for f in sorted(files)
                    if not f.startswith(".") and not f.endswith((".json", ".md"))
                )
        elif os.path.lexists(item):  # a file, or what is checked below (FIFO, dangling link)
            found.append((item, None))
        else:
            matches = sorted(glob.glob(item, recursive=True))
            files = [m for m in matches if not os.path.isdir(m)]
            if not files:
                raise UsageError(f"no such file, folder or glob match: {shown(item)}")
            found.extend((m, None) for m in files)
    seen: set[str] = set()
    result: list[LogFile] = []
    for path, why in found:
        key = path if path == STDIN else os.path.realpath(path)
        if key in seen:
            continue
        seen.add(key)
        if path != STDIN:
            why = why or _why_not(path)
            path = shown(path)
        group, order = _rotation_key(path) if path != STDIN else (STDIN, (0, ""))
        result.append(LogFile(path=path, group=group, order=order, why_not=why))
    # oldest first inside a group; groups in the order first seen
    first_seen = {f.group: i for i, f in reversed(list(enumerate(result)))}
    result.sort(key=lambda f: (first_seen[f.group], f.order))
    return result


def _compression(head: bytes) -> str | None:
    for magic, name in _MAGIC.items():
        if head.startswith(magic):
            return name
    return None


class _Inflated(io.BufferedIOBase):
    """A decompressing stream that stops, with an InputError, once it has given more than
    MAX_RATIO times the compressed size (and more than RATIO_FLOOR): a bomb (851 bytes of
    .bz2 that are a GiB of zeros) is an error, not hours of reading.

    It reads with ``read1`` (one block of compressed input at a time), so that a stream
    damaged midway (a truncated .gz) first gives everything before the damage, then
    raises on the next read: a decompressor's ``read`` of many blocks drops what it
    decompressed in a call that fails."""

    def __init__(self, stream: BinaryIO | io.BufferedIOBase, path: str, kind: str,
                 packed: int, raw: io.BufferedReader | None = None) -> None:
        super().__init__()
        self.stream, self.path, self.kind, self.raw = stream, path, kind, raw
        self.limit = max(RATIO_FLOOR, MAX_RATIO * packed)
        self.given = 0
        self._failed: BaseException | None = None  # met after data was given: raised next
        self._read1 = getattr(stream, "read1", stream.read)  # every decompressor has read1

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:  # never all at once: the limit is checked as it goes
            return b"".join(iter(lambda: self.read(BATCH_BYTES), b""))
        if self._failed is not None:
            raise self._failed
        pieces: list[bytes] = []
        got = 0
        while got < size:
            try:
                piece = self._read1(min(size - got, 1 << 20))
            except _READ_ERRORS as exc:
                if not pieces:
                    raise
                self._failed = exc  # give what came before the damage first
                break
            if not piece:
                break
            pieces.append(piece)
            got += len(piece)
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        self.given += len(data)
        if self.given > self.limit:
            raise InputError(self.path, None, f"{self.kind} stream decompresses to more than "
                             f"{self.limit:,} bytes ({MAX_RATIO}x its size): stopped, "
                             "a decompression bomb?")
        return data

    def close(self) -> None:
        if not self.closed:
            self.stream.close()
            if self.raw is not None:
                self.raw.close()
        super().close()


def _open_regular(path: str) -> io.BufferedReader:
    """Open a regular file for reading; anything else (a FIFO, which would block the open
    itself, a device) raises an InputError "not a regular file" without waiting."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise InputError(shown(path), None, f"cannot open: {exc.strerror}") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InputError(shown(path), None, "not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return open(fd, "rb")  # noqa: SIM115 - handed to the caller


def open_binary(path: str) -> BinaryIO | io.BufferedIOBase:
    """Open a log for reading decompressed bytes; compression is sniffed from magic bytes.

    The file itself (or stdin) when plain, else a decompressing stream over it, bounded
    (``_Inflated``). Only regular files are opened.
    """
    if path == STDIN:
        return sys.stdin.buffer
    raw = _open_regular(path)
    head = raw.peek(8)[:8]
    kind = _compression(head)
    if kind is None:
        return raw
    packed = os.fstat(raw.fileno()).st_size
    stream: BinaryIO | io.BufferedIOBase
    if kind == "gzip":
        stream = gzip.GzipFile(fileobj=raw)
    elif kind == "bz2":
        stream = bz2.BZ2File(raw)
    elif kind == "xz":
        stream = lzma.LZMAFile(raw)  # noqa: SIM115 - handed to the caller
    else:
        try:
            import zstandard  # optional: only sites with .zst rotations need it
        except ImportError as exc:
            raw.close()
            raise InputError(path, None, "is zstd-compressed: pip install zstandard") from exc
        stream = zstandard.ZstdDecompressor().stream_reader(raw)
    return _Inflated(stream, path, kind, packed, raw)


@contextmanager
def reading(path: str) -> Iterator[None]:
    """Turn a read failure of ``path`` (truncated .gz, bad stream...) into an InputError."""
    try:
        yield
    except _READ_ERRORS as exc:
        raise InputError(path, None, f"cannot read: {exc}") from exc


def read_head(path: str, size: int) -> bytes:
    """The first ``size`` decompressed bytes of a file, for sniffing before anything loads.

    A file that cannot be opened or decompressed raises an InputError whose message is a
    short reason: "truncated gzip", "corrupt xz", "cannot open: Permission denied". A
    compressed file damaged after its first block gives what comes before the damage
    (fewer than ``size`` bytes): reading it meets the damage and says so.
    """
    with open_binary(path) as f:
        try:
            return f.read(size)
        except _READ_ERRORS as exc:
            raise InputError(path, None, _damage(f, exc)) from exc


def _damage(f: BinaryIO | io.BufferedIOBase, exc: BaseException) -> str:
    """What a read error of ``f`` means, in short: "truncated gzip", "corrupt xz",
    "cannot read: Input/output error"."""
    kind = f.kind if isinstance(f, _Inflated) else None
    if kind is None:  # a plain file: an I/O error
        return f"cannot read: {getattr(exc, 'strerror', None) or exc}"
    # EOFError: the stream ends before its end marker
    return f"{'truncated' if isinstance(exc, EOFError) else 'corrupt'} {kind}"


def head_lines(path: str, n: int = 50) -> list[str]:
    """The first n lines (decoded leniently), for sniffing formats and years."""
    with reading(path), open_binary(path) as f:
        data = f.read(256 * 1024)
    return data.decode("utf-8", "replace").splitlines()[:n]


def last_line(path: str) -> str | None:
    """The last non-empty line of a file (of a damaged compressed one: the last whole line
    before the damage); reads only the tail of plain files."""
    with reading(path), open_binary(path) as f:
        if isinstance(f, io.BufferedReader):
            size = os.fstat(f.fileno()).st_size
            f.seek(max(0, size - 65536))
            tail = f.read()
        else:  # compressed: must stream through
            tail = b""
            try:
                while chunk := f.read(BATCH_BYTES):
                    tail = (tail + chunk)[-65536:]
            except _READ_ERRORS:  # damaged (a truncated .gz): its last line before that
                if not tail:
                    raise
                tail = tail[:tail.rfind(b"\n") + 1]
    for line in reversed(tail.decode("utf-8", "replace").splitlines()):
        if line.strip():
            return line
    return None


def _read_lines(data: bytes) -> pl.DataFrame:
    if b"\x00" in data:  # NUL is our column separator; NUL-filled blocks happen after crashes
        data = data.replace(b"\x00", b"")
    return pl.read_csv(data, has_header=False, separator="\x00", quote_char=None,
                       schema={"raw": pl.String}, encoding="utf8-lossy")


def _cut_long(frame: pl.DataFrame, max_line: int) -> tuple[pl.DataFrame, int]:
    """Cut lines longer than ``max_line`` bytes to their first ``max_line`` bytes (less up to
    3 at a character boundary); returns the frame and how many lines were cut. Vectorised:
    a batch without a long line costs one look at its lengths."""
    lengths = frame["raw"].str.len_bytes()
    longest = lengths.max()
    if longest is None or longest <= max_line:  # type: ignore[operator]
        return frame, 0
    raw = pl.col("raw")
    data = raw.cast(pl.Binary)

    def inside_char(i: int) -> pl.Expr:  # a UTF-8 continuation byte: 0b10xxxxxx
        return data.bin.get(i, null_on_oob=True).is_between(0x80, 0xBF).fill_null(False)

    # cut before the character the limit falls in (a UTF-8 character is at most 4 bytes)
    keep = pl.lit(max(max_line - 3, 0))
    for k in (2, 1, 0):
        if max_line - k >= 0:
            keep = pl.when(~inside_char(max_line - k)).then(max_line - k).otherwise(keep)
    frame = frame.with_columns(raw=pl.when(raw.str.len_bytes() > max_line)
                               .then(data.bin.head(keep).cast(pl.String))
                               .otherwise(raw))
    return frame, int((lengths > max_line).sum())


def _lines_frame(data: bytes, first_line_no: int, first: bytes = b"",
                 whole: int | None = None) -> pl.DataFrame:
    """Split a block of lines into a one-column frame, in Rust (polars' CSV reader).

    ``first``, when given, is the block's first line, whole: its start was left over from
    the block before; ``whole`` is how many bytes of ``data`` end whole lines (the rest, an
    unfinished last line, is left out). The block itself is never copied: a 24 MiB
    ``carry + data`` per batch cost more than the read.
    """
    frame = _read_lines(data)
    if whole is not None and whole < len(data):  # leave out the unfinished last line
        tail = data[whole:]
        if b"\r" in tail or b"\x00" in tail:  # maybe no row of its own: count the others
            frame = frame.head(data.count(b"\n", 0, whole))  # a row per line ending
        else:  # a row of its own, the last (counting the line endings took as long as
            # reading the lines)
            frame = frame.head(frame.height - 1)
    if first:  # the first line, whole: read on its own, the same way
        frame = pl.concat([_read_lines(first).head(1), frame.slice(1)])
    frame = frame.with_columns(
        line_no=pl.int_range(first_line_no, first_line_no + frame.height, dtype=pl.Int64))
    if b"\r" in data or b"\r" in first:  # polars' reader keeps the '\r' of '\r\n' endings
        frame = frame.with_columns(pl.col("raw").str.strip_suffix("\r"))
    return frame


class LineBatches(Iterator[tuple[pl.DataFrame, int]]):
    """What ``iter_batches`` returns: an iterator of (frame, bytes consumed); ``cut_lines``
    counts the lines cut to ``max_line`` so far."""

    def __init__(self, path: str, batch_bytes: int, skip_bytes: int, max_line: int) -> None:
        if max_line < 1:
            raise UsageError(f"the longest line must be at least 1 byte, not {max_line}")
        self.max_line = max_line
        self.cut_lines = 0
        self.position = 0  # bytes of the file on disk read so far (compressed, if it is)
        self._batches = self._read(path, batch_bytes, skip_bytes)

    def __iter__(self) -> LineBatches:
        return self

    def __next__(self) -> tuple[pl.DataFrame, int]:
        return next(self._batches)

    def close(self) -> None:
        self._batches.close()

    def _frame(self, data: bytes, line_no: int, first: bytes = b"",
               whole: int | None = None) -> pl.DataFrame:
        frame, cut = _cut_long(_lines_frame(data, line_no, first, whole), self.max_line)
        self.cut_lines += cut
        return frame

    def _read(self, path: str, batch_bytes: int,
              skip_bytes: int) -> Generator[tuple[pl.DataFrame, int], None, None]:
        keep = self.max_line + 1  # of a line's start: enough to know it is too long
        line_no = 1
        consumed = 0
        f: BinaryIO | io.BufferedIOBase | None = None
        try:
            with open_binary(path) as f:
                if skip_bytes:
                    prefix_lines = 0
                    remaining = skip_bytes
                    while remaining:
                        chunk = f.read(min(remaining, batch_bytes))
                        self.position = _packed_position(f)
                        if not chunk:
                            break
                        prefix_lines += chunk.count(b"\n")
                        remaining -= len(chunk)
                    line_no += prefix_lines
                    consumed = skip_bytes
                carry = b""  # the start of a line the last chunk cut (at most `keep` bytes)
                carried = 0  # that line's bytes so far, what is dropped of it included
                while True:
                    chunk = f.read(batch_bytes)
                    self.position = _packed_position(f)
                    if not chunk:
                        break
                    whole = chunk.rfind(b"\n") + 1
                    if whole == 0:  # inside one long line: keep its start only
                        if len(carry) < keep:
                            carry += chunk[:keep - len(carry)]
                        carried += len(chunk)
                        continue
                    first = b""
                    if carried:  # the carried line ends in this chunk
                        end = chunk.find(b"\n")
                        first = carry + chunk[:min(end, keep)] + b"\n"
                    frame = self._frame(chunk, line_no, first, whole)
                    line_no += frame.height
                    consumed += carried + whole
                    carry = chunk[whole:whole + keep]
                    carried = len(chunk) - whole
                    yield frame, consumed
                if carried:  # a last line without newline may still be being written:
                    # yield it, but do not count its bytes, so a later run reads it again whole
                    yield self._frame(carry, line_no), consumed
        except _READ_ERRORS as exc:
            # the lines before line_no were given whole; what follows cannot be read
            why = _damage(f, exc) if f is not None else f"cannot read: {exc}"
            raise DamagedInputError(path, line_no, why) from exc


def _packed_position(f: BinaryIO | io.BufferedIOBase) -> int:
    """How far into the file on disk a stream has read: for progress in bytes of input."""
    raw = f.raw if isinstance(f, _Inflated) else f
    try:
        return raw.tell() if raw is not None else 0
    except (OSError, ValueError):  # closed, or not seekable (a pipe)
        return 0


def iter_batches(path: str, batch_bytes: int = BATCH_BYTES, skip_bytes: int = 0,
                 max_line: int = MAX_LINE) -> LineBatches:
    """Yield (frame of raw lines with line_no, bytes consumed so far) in bounded batches.

    "Consumed" counts whole lines only: an unterminated last line comes in a batch of its
    own whose consumed count does not move.

    A line longer than ``max_line`` bytes is cut to that and counted in the returned
    iterator's ``cut_lines``; it is never held whole (memory stays about ``batch_bytes``
    whatever the input).

    ``skip_bytes`` resumes after a prefix already ingested (a growing mail.log); the prefix
    must end on a line boundary, which it does when it came from this function.
    """
    return LineBatches(path, batch_bytes, skip_bytes, max_line)
