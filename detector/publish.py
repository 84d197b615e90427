"""Outputs swapped in whole: a folder made complete aside, then one rename moves a pointer.

A reader must never see parts of two outputs (``index.html`` naming other incidents than
``incidents.json``, a snapshot whose views name files of another night), whenever the
writer is killed. So each output is a folder of its own under a root:

    ROOT/.half-<name>/     being written (never read)
    ROOT/<name>/           whole: renamed from .half-<name> once every file is in
    ROOT/current -> <name> the pointer, moved by renaming a new link over it (atomic)

Writers of one root take turns on a lock (``ROOT/.lock``, an ``flock`` the system
releases when its holder dies), so whatever the holder finds half made or a temporary
link was left by a dead writer, and is removed. The output the pointer named before
stays (a reader that opened it keeps reading a whole one until the next swap); older
ones are removed.

The report (``publish_files``) adds stable relative links in OUT through the pointer:
``OUT/index.html -> .reports/current/index.html``, the same for ``incidents.json`` and
``incidents/``, so the paths people and scripts open stay what they were.

Only the standard library here: a test can kill a writer of this module in a process
that starts in milliseconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

#: OUT's folder of whole reports, and the folder of incident pages in each
REPORTS_DIR = ".reports"
PAGES_DIR = "incidents"
#: the pointer to the current output in a root
CURRENT = "current"
#: OUT's entries that lead through the pointer to the current report (``day.html``, the
#: day overview, only when the report has one)
ENTRIES = ("index.html", "incidents.json", PAGES_DIR, "day.html")
_HALF = ".half-"
_NAME_RE = re.compile(r"\d{8}T\d{6}-[0-9a-f]{8}")
#: temporaries named as _symlink_atomic (and versions before 0.2 writing files) name them
TMP_RE = re.compile(r"\..+\.[0-9a-f]{8}\.tmp")
#: a file mailstorm writes among the pages, an incident's page or CSVs (any other file
#: there is a reader's, carried on to the next report)
_PAGE_RE = re.compile(r"[a-z_]+-[0-9a-f]{12}(\.html|-messages\.csv|-deliveries\.csv)")
#: a temporary file an older version (which took no lock) left in OUT is removed once
#: this old (one being written now is seconds old)
STALE_TMP_SECONDS = 600
#: test hook, not an option: name a step of ``publish`` to stop there (SIGKILL tests)
_PAUSE_ENV = "_MAILSTORM_TEST_PAUSE_REPORT"

#: fills a half-made folder, given the folder of the output before it (if any)
Writer = Callable[[Path, Path | None], None]
#: a report's file: its text, or a function writing it to the path given (a file too
#: large to hold as text: an incident's deliveries)
FileContent = str | Callable[[Path], None]


def pause(step: str) -> None:
    """Stop here forever when the test hook names ``step`` (and say so on stderr)."""
    if os.environ.get(_PAUSE_ENV) == step:
        sys.stderr.write(f"paused at {step}\n")
        sys.stderr.flush()
        while True:
            time.sleep(60)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created if need be) for the block."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def current(root: Path) -> Path | None:
    """The folder the pointer of ``root`` names (None before the first). A copy of the
    root made following links (``cp -r``, ``shutil.copytree``) has a folder for a
    pointer: that folder."""
    pointer = root / CURRENT
    if pointer.is_dir() and not pointer.is_symlink():
        return pointer
    try:
        name = os.readlink(pointer)
    except OSError:
        return None
    folder = root / name
    return folder if _NAME_RE.fullmatch(name) and folder.is_dir() else None


def symlink_atomic(link: Path, target: str) -> None:
    """Point ``link`` at ``target`` in one rename: it names the old target or the new one,
    never nothing."""
    tmp = link.with_name(f".{link.name}.{secrets.token_hex(4)}.tmp")
    os.symlink(target, tmp)
    try:
        os.replace(tmp, link)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def publish(root: Path, write: Writer, after_swap: Callable[[], None] | None = None, *,
            complete: Callable[[Path], None] | None = None) -> Path:
    """Make a new output in ``root`` with ``write``, then ``complete`` it at its final
    name (for what must name its own path: a DuckDB view's absolute paths), swap the
    pointer to it, run ``after_swap`` (still under the lock), remove outputs older than
    the one before; return the new output's folder. A writer killed before the pointer
    moved leaves a folder no pointer names, removed by the next."""
    root.mkdir(parents=True, exist_ok=True)
    with locked(root / ".lock"):
        _remove_half_made(root)
        previous = current(root)
        name = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(4)}"
        half = root / f"{_HALF}{name}"
        half.mkdir()
        write(half, previous)
        pause("folder")
        os.rename(half, root / name)  # whole now: only the pointer is left to move
        if complete is not None:
            complete(root / name)
        pause("pointer")
        pointer = root / CURRENT
        if pointer.is_dir() and not pointer.is_symlink():  # a copy's: a rename cannot
            os.rename(pointer, root / f"{_HALF}{CURRENT}-{secrets.token_hex(4)}")  # replace it
        symlink_atomic(pointer, name)
        pause("links")
        if after_swap is not None:
            after_swap()
        pause("prune")
        keep = {name, previous.name if previous else None}
        for old in root.iterdir():
            if old.name not in keep and _NAME_RE.fullmatch(old.name) and old.is_dir() \
                    and not old.is_symlink():
                shutil.rmtree(old, ignore_errors=True)
    return root / name


def publish_files(out_dir: Path, files: dict[str, FileContent]) -> Path:
    """The report: ``files`` (path relative to OUT -> text or writer, in the order to
    write them) as one folder under ``OUT/.reports/``, swapped in whole, with OUT's
    entries linking through the pointer; return OUT/index.html."""

    def write(folder: Path, previous: Path | None) -> None:
        (folder / PAGES_DIR).mkdir()
        for count, (rel, content) in enumerate(files.items()):
            if isinstance(content, str):
                _write(folder / rel, content)
            else:
                content(folder / rel)
            if count == 0:
                pause("pages")
            if rel == "incidents.json":
                pause("json")
        # files a reader put among the pages; OUT/incidents itself if an older version
        # wrote a folder there
        _keep_notes((previous or out_dir) / PAGES_DIR, folder / PAGES_DIR)

    def link_entries() -> None:
        _remove_stale_temporaries(out_dir)  # left in OUT by killed writers
        _link_entries(out_dir)

    out_dir.mkdir(parents=True, exist_ok=True)
    publish(out_dir / REPORTS_DIR, write, link_entries)
    return out_dir / "index.html"


def _write(path: Path, text: str) -> None:
    """A file of a folder not yet published. os.open with 0o666 lets the umask decide
    permissions (mkstemp would be 0600)."""
    # Lone surrogates (undecodable log bytes) must not abort a report: replace them.
    data = text.encode("utf-8", errors="replace")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _link_entries(out_dir: Path) -> None:
    """OUT/index.html, incidents.json and incidents/ as links through the pointer. A file
    an older version wrote there is replaced in one rename; a folder is moved aside first
    (a rename cannot replace a folder), so only that first time is OUT/incidents missing
    for a moment."""
    for entry in ENTRIES:
        path = out_dir / entry
        target = f"{REPORTS_DIR}/{CURRENT}/{entry}"
        if not (out_dir / target).exists():  # this report has none: no dangling link
            if path.is_symlink():
                path.unlink()
            continue
        if path.is_symlink() and os.readlink(path) == target:
            continue
        if path.is_dir() and not path.is_symlink():
            aside = out_dir / REPORTS_DIR / f"{_HALF}{entry}-{secrets.token_hex(4)}"
            os.rename(path, aside)
            symlink_atomic(path, target)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            symlink_atomic(path, target)


def _keep_notes(old: Path, new: Path) -> None:
    """Files a reader put among the pages (names mailstorm never writes) go on to the new
    report: linked, or copied where links are refused."""
    if not old.is_dir():
        return
    for path in old.iterdir():
        if path.is_file() and not path.is_symlink() and not _PAGE_RE.fullmatch(path.name):
            try:
                os.link(path, new / path.name)
            except OSError:
                shutil.copy2(path, new / path.name)


def _remove_half_made(root: Path) -> None:
    """What a killed writer left in ``root`` (the caller holds the lock, so no living
    writer is making any of it)."""
    for path in root.iterdir():
        if path.name.startswith(_HALF) and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif TMP_RE.fullmatch(path.name) and path.is_symlink():
            path.unlink(missing_ok=True)


def _remove_stale_temporaries(out_dir: Path) -> None:
    """The temporaries killed writers left in OUT: this version's links (the caller holds
    the lock, so they are a dead writer's), and files older versions wrote there one by
    one, once ten minutes old (a writer of such a version takes no lock)."""
    now = time.time()
    for tmp in out_dir.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            dead = tmp.is_symlink() or (
                tmp.is_file() and now - tmp.stat().st_mtime > STALE_TMP_SECONDS)
            if TMP_RE.fullmatch(tmp.name) and dead:
                tmp.unlink()
