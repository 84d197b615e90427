"""mailstorm: find reply-all storms and fan-out amplification in mail-server logs."""

from __future__ import annotations

import os

# The one place the version is written: pyproject.toml reads it from here (hatch's dynamic
# version), `mailstorm --version` prints it, and CHANGELOG.md's newest release names it.
__version__ = "0.1.0"

#: caps the threads of DuckDB's and Polars' pools (the two parse workers stay), e.g. 1 on
#: a busy shared server, or in each process of a parallel test run; unset: every core
THREADS_ENV = "MAILSTORM_THREADS"

# Polars sizes its thread pool once, when it is first imported: here, before any module
# of the package imports it (a program that imported Polars first keeps its pool)
_limit = os.environ.get(THREADS_ENV, "").strip()
if _limit.isdigit() and int(_limit) >= 1:
    os.environ.setdefault("POLARS_MAX_THREADS", str(int(_limit)))


def thread_limit() -> int | None:
    """``MAILSTORM_THREADS`` as a number of threads, or None when unset."""
    from detector.errors import UsageError

    value = os.environ.get(THREADS_ENV, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise UsageError(f"{THREADS_ENV} must be a whole number of threads, 1 or more "
                         f"(got {value!r})")
    return int(value)
