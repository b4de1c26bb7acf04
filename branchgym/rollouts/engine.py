"""Opening a trajectory store's database: the engine, SQLite's per-connection settings, the
schema migration under a lock, and URLs safe to print.

``TrajectoryStore`` (``store.py``) opens its engine here; every way that can fail becomes a
``StoreError`` naming the URL, with any password masked.
"""

from __future__ import annotations

import random
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

from alembic.util import CommandError
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from branchgym.rollouts import migrations
from branchgym.rollouts.migrations import SchemaError, schema_revision


class StoreError(RuntimeError):
    """The store could not be opened or a write was refused (bad URL, unknown run, ...)."""


def safe_url(url: str) -> str:
    """The URL as it may appear in error messages and logs: any password is masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", str(url))


def missing_sqlite_file(url: str) -> str | None:
    """The file of a SQLite URL when it does not exist; None for other URLs, in-memory
    databases and ``file:`` URIs (whose options may create or open anything)."""
    try:
        parsed = make_url(url)
    except Exception:  # a malformed URL: ``open_engine`` says what is wrong with it
        return None
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    if database.startswith("file:") or Path(database).exists():
        return None
    return database


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    """Per-connection SQLite setup: WAL lets readers run beside the writer; enforce FKs."""
    cursor = dbapi_conn.cursor()
    try:
        _wal(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _wal(cursor: Any, wait_s: float = 60.0) -> None:
    """Switch the database to WAL (a setting the file keeps, so only its first opening
    writes it). The switch needs the file to itself, and SQLite answers "database is
    locked" at once, without its busy timeout, while another process opening the same fresh
    file holds it: so that answer is retried, for up to ``wait_s`` seconds."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01 + 0.04 * random.random())


_SCHEMA_LOCK = 0x6272_6E63  # PostgreSQL advisory lock key ("brnc") held while migrating


def _migrate(engine: Engine, url: str) -> None:
    """Bring the tables to ``SCHEMA_HEAD``. A database already there is only read, so opening
    a store needs no write access and waits for no one. Otherwise several writers may open a
    fresh database at once and would race on ``CREATE TABLE``, so the migration runs under a
    lock: a transaction-scoped advisory lock on PostgreSQL, the database's write lock (taken
    before reading the revision) on SQLite. Whoever waited finds the work done.

    On SQLite foreign keys are off while migrating (it can only be switched outside a
    transaction): batch mode rebuilds a table by dropping the old one, and with keys on that
    drop would cascade-delete every row pointing at it. ``foreign_key_check`` then proves the
    migration left no dangling reference before it commits.
    """
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        if schema_revision(conn) == migrations.SCHEMA_HEAD:
            return
        if sqlite:
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        conn.commit()
        try:
            with conn.begin():
                if engine.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
                elif sqlite:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                migrations.upgrade(conn, safe_url(url))
                if sqlite and (bad := conn.exec_driver_sql("PRAGMA foreign_key_check").first()):
                    raise SchemaError(f"migrating {safe_url(url)!r} broke a foreign key: {bad}")
        finally:
            if sqlite:
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()


def open_engine(url: str) -> Engine:
    """Create the engine and migrate the tables, turning every failure into a clear
    ``StoreError`` that names the URL."""
    engine = None
    try:
        engine = create_engine(url)
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        _migrate(engine, url)
    except SchemaError as exc:
        engine.dispose()
        raise StoreError(str(exc)) from exc
    except (SQLAlchemyError, CommandError, ImportError, ValueError) as exc:
        if engine is not None:
            engine.dispose()
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        raise StoreError(f"cannot open trajectory store at {safe_url(url)!r} ({reason})") from exc
    return engine
