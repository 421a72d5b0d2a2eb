"""The local feature store's files on disk: the online store's SQLite file, the layout marker, files created
whole; a file that is not what it should be is one StoreDamagedError naming it."""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ONLINE_FILE = "online-store.sqlite"
STORE_FORMAT = "local-feature-store 2"  # written to <root>/FORMAT; older layouts are refused, not migrated
# A 32 KiB page instead of 4 KiB: a flush commits far fewer WAL frames (commit CPU halved at 500k rows).
PAGE_BYTES = 32_768


class StoreLayoutError(RuntimeError):
    """The root holds a store in another layout (older versions sharded the online store): delete it."""


class StoreDamagedError(RuntimeError):
    """A file of the store is not what it should be (not SQLite, not Parquet, cut off): the message names it."""


def open_online_store(path: Path) -> sqlite3.Connection:
    """The online store's SQLite file, made if missing; one that is not SQLite, or not a file, is StoreDamagedError."""
    # Autocommit: transactions are explicit (BEGIN IMMEDIATE), so a writer waits for another
    # process's write lock in the busy timeout instead of failing on a read-to-write upgrade.
    with online_store_damage(path):
        db = sqlite3.connect(path, timeout=60.0, isolation_level=None, check_same_thread=False)
        try:
            db.execute(f"PRAGMA page_size={PAGE_BYTES}")  # the first statement reads the file's header
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA cache_size=-262144")  # 256 MiB: less CPU per upsert at 1M rows (bench/README.md)
            return db
        except sqlite3.DatabaseError:
            db.close()
            raise


@contextmanager
def online_store_damage(path: Path) -> Iterator[None]:
    """SQLite finding the online store's file not SQLite, not a file, or damaged past its header (a page
    overwritten): StoreDamagedError naming it; any other error (locked) as it is."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        if exc.sqlite_errorname not in ("SQLITE_NOTADB", "SQLITE_CORRUPT", "SQLITE_CANTOPEN"):  # locked: not damage
            raise
        raise StoreDamagedError(f"{path}: the local feature store's online store is damaged ({exc})") from None


def claim_format(root: Path) -> None:
    """Mark a new store's layout; refuse a root written by an older layout (no migration)."""
    root.mkdir(parents=True, exist_ok=True)
    marker = root / "FORMAT"
    if not marker.exists() and any(not p.name.startswith((".FORMAT", "FORMAT")) for p in root.iterdir()):
        raise StoreLayoutError(f"{root} holds a local feature store written by an older version of this project; "
                               "delete that directory and ingest again")
    create_file(marker, STORE_FORMAT + "\n")  # another store may have just written it
    found = marker.read_text(encoding="utf-8").strip()
    if found != STORE_FORMAT:
        raise StoreLayoutError(f"{marker}: format {found!r}, expected {STORE_FORMAT!r}; delete {root} and ingest "
                               "again")


def create_file(path: Path, text: str) -> bool:
    """Write `path` whole unless it exists: whether this call created it (os.link is atomic and exclusive,
    so exactly one of several creators wins, and a reader never sees a partial file)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text, encoding="utf-8")
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink()
