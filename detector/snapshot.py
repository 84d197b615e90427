"""The analysts' snapshot: a read-only copy of the warehouse that never blocks the writer.

An analyst's open DuckDB session on the warehouse file holds a lock that makes the
nightly run wait (and fail after ``--lock-timeout``). So at the end of each successful
run the writer publishes a snapshot beside the warehouse, and analysts read that:

    OUT/mailstorm.duckdb.snapshot/current/mailstorm.duckdb     the file to open
    OUT/mailstorm.duckdb.snapshot/current/mailstorm.parquet/   its Parquet dataset

A snapshot is a folder of its own, swapped in by one rename of the ``current`` pointer
(``detector.publish``): a session that opened the one before keeps reading it, whole and
unchanged, while the next is published; the writer never opens a published snapshot
again, so nothing an analyst does to it (a session left open, even a read-write one)
can hold the writer up. The snapshot before the current one is kept, so a session stays
good until the second publication after it opened (then it must reopen); older ones are
removed.

What it costs a night, with history growing: the DuckDB file (the ledger, the model
tables, the incidents) is copied, a reflink where the file system has them (btrfs, XFS:
instant), else a plain copy; the Parquet files (the events parts and the model's
Parquet tables, the bulk of the data) are hard links, which cost a directory entry each,
not their size, and keep a file the writer has since deleted (a superseded deliveries
table, a partial part replaced) readable for as long as the snapshot holds it. Its views
are then pointed at its own files by opening it once as a warehouse, before it is
published.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

from detector import publish
from detector.warehouse import Warehouse, parquet_dir_of

SUFFIX = ".snapshot"
_FICLONE = 0x40049409  # ioctl: share the blocks of a file (Linux, btrfs/XFS/bcachefs)


def snapshot_root(db: Path) -> Path:
    """The folder of the snapshots of the warehouse file ``db``."""
    return db.with_name(db.name + SUFFIX)


def current_snapshot(db: Path) -> Path | None:
    """The DuckDB file of the current snapshot of ``db``, resolved (so a reader keeps one
    snapshot even if the pointer moves while it opens it); None before the first."""
    folder = publish.current(snapshot_root(db))
    if folder is None:
        return None
    path = folder.resolve() / db.name
    return path if path.is_file() else None


def publish_snapshot(wh: Warehouse) -> Path:
    """Publish a snapshot of the warehouse ``wh`` (open for writing, so nothing changes
    it meanwhile); return its DuckDB file."""
    db = Path(wh.path)
    wh.drop_temp_tables()
    wh.con.execute("CHECKPOINT")  # everything in the file, nothing left in its WAL

    def write(folder: Path, previous: Path | None) -> None:
        copy = folder / db.name
        _clone(db, copy)
        wal = db.with_name(db.name + ".wal")
        if wal.is_file() and wal.stat().st_size:  # a checkpoint DuckDB could not finish
            _clone(wal, copy.with_name(copy.name + ".wal"))
        _link_tree(wh.parquet_dir, parquet_dir_of(copy))

    def complete(folder: Path) -> None:
        # its views read its own files, by their final path (every open re-points them),
        # and it is checked as any warehouse: every part its ledger names there, whole
        Warehouse(folder / db.name, lock_timeout=0).close()

    return publish.publish(snapshot_root(db), write, complete=complete) / db.name


def _clone(src: Path, dst: Path) -> None:
    """Copy ``src`` to a new ``dst``, sharing its blocks where the file system can."""
    with open(src, "rb") as fin:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as fout:
            try:
                fcntl.ioctl(fout.fileno(), _FICLONE, fin.fileno())
                return
            except OSError:
                pass
            shutil.copyfileobj(fin, fout, 1 << 20)


def _link_tree(src: Path, dst: Path) -> None:
    """Hard links in ``dst`` to every file under ``src`` (copies where links are
    refused); dot names left out (parts not yet committed, the owner mark)."""
    for folder, dirs, files in os.walk(src):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        target = dst / Path(folder).relative_to(src)
        target.mkdir(parents=True, exist_ok=True)
        for name in files:
            if name.startswith("."):
                continue
            try:
                os.link(Path(folder, name), target / name)
            except OSError:  # a file system without hard links
                shutil.copy2(Path(folder, name), target / name)


def is_snapshot(db: Path) -> bool:
    """Whether ``db`` is a published snapshot's file (given to 'mailstorm sql' as is)."""
    return db.resolve().parent.parent.name.endswith(SUFFIX)
