"""Who may read what a run creates: no more people than may read what it came from.

Mail logs name who wrote to whom; on most systems they are ``root:adm 0640``. The
warehouse, its Parquet dataset, the analysts' snapshot and the report copy what the logs
hold, so a run creates them under a umask taken from its sources:

- any source not readable by others (``o-r``): nothing created is readable, writable or
  enterable by others (``007``);
- any source not readable by its group (``g-r``): the same for the group (``070``);
- on top of the process umask (a umask never loosens: ``077`` stays ``077``).

The sources of ``run`` are its log files and the warehouse it adds to (last night's
data are in it); of ``report``, the warehouse. Standard input has no mode: the process
umask alone. ``--umask`` sets the umask instead (owner bits cannot be masked: mailstorm
must read its own files again).

What exists already is only ever tightened, never loosened, and only at its top (the
warehouse file and its write-ahead log, the Parquet folder, the report folders, the
snapshot): a folder that others cannot enter hides everything under it, so tightening
costs the same whatever the history.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

#: umask bits for others and for the group
_OTHERS, _GROUP = 0o007, 0o070
#: the most --umask may mask: everything but the owner's bits
MAX_UMASK = 0o077


def process_umask() -> int:
    """The process umask (read by setting it, so set it straight back)."""
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def umask_from_modes(modes: Iterable[int], base: int) -> int:
    """``base`` plus what the modes of the sources withhold from others and the group."""
    mask = base
    for mode in modes:
        if not mode & stat.S_IROTH:
            mask |= _OTHERS
        if not mode & stat.S_IRGRP:
            mask |= _GROUP
    return mask


def source_umask(sources: Iterable[str | Path], explicit: int | None = None) -> int:
    """The umask for what is made from ``sources`` (paths; ``-`` and paths that cannot be
    stat'ed add nothing): ``explicit`` when given, else the process umask tightened by
    the sources' modes."""
    if explicit is not None:
        return explicit
    modes = []
    for source in sources:
        if str(source) == "-":
            continue
        with contextlib.suppress(OSError, ValueError):
            modes.append(os.stat(source).st_mode)
    return umask_from_modes(modes, process_umask())


@contextlib.contextmanager
def applied(mask: int) -> Iterator[int]:
    """The process umask set to ``mask`` inside the block (DuckDB, Arrow and the report
    writer all create files with 0666/0777 and let the umask decide), restored after."""
    old = os.umask(mask)
    try:
        yield mask
    finally:
        os.umask(old)


def tighten(paths: Iterable[str | Path], mask: int) -> None:
    """Take away from existing ``paths`` the bits ``mask`` withholds (never add one).
    Paths that are missing, symbolic links or someone else's are left as they are."""
    for path in paths:
        with contextlib.suppress(OSError):
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                continue
            mode = stat.S_IMODE(st.st_mode)
            if mode & mask:
                os.chmod(path, mode & ~mask)


def parse_umask(text: str) -> int:
    """An octal umask like ``027`` or ``0o027``; ValueError for anything else, or for one
    that masks the owner's bits."""
    digits = text.strip().lower().removeprefix("0o")
    if not digits or len(digits) > 4 or any(c not in "01234567" for c in digits):
        raise ValueError(f"{text!r} is not an octal umask (e.g. 027 or 077)")
    mask = int(digits, 8)
    if mask & ~MAX_UMASK:
        raise ValueError(f"umask {text} masks the owner's own bits: mailstorm must read and "
                         f"write its files (at most {MAX_UMASK:03o})")
    return mask
