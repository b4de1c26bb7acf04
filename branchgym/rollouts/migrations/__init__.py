"""Schema versions of the trajectory store, migrated with Alembic.

Every change to the tables in ``schema.py`` ships as a revision script in ``versions/``, and
the database records its revision in the ``branchgym_schema_version`` table (not Alembic's
default name, so a database shared with another Alembic application is not misread). The store calls
``upgrade`` when it opens a database, so a run always writes the layout its code expects:

- no store tables yet: upgrade from nothing to the head revision;
- an older revision: upgrade to head;
- store tables but no version (made by branchgym before migrations, with ``create_all``): if
  the tables have revision 0001's columns it is stamped 0001 and upgraded, else refused;
- a revision this code does not know: refused, the database was written by a newer branchgym
  and this one would misread it.

Alembic is configured in code (no ``alembic.ini``) with this folder as its script location,
so the migrations work from an installed wheel. A new revision: change ``schema.py``, then in
a checkout run ``alembic.command.revision(config(conn), "what changed", autogenerate=True,
rev_id="0002")`` on a connection to a database at head. It writes a draft into ``versions/``
(from ``script.py.mako``, which only this step needs) to review and complete by hand. On
SQLite, Alembic's batch operations rebuild a table; the store switches foreign keys off
around them so the rebuild deletes nothing (see ``engine._migrate``).
"""

from __future__ import annotations

import os
from functools import cache

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, inspect

__all__ = ["LEGACY_REVISION", "SCHEMA_HEAD", "SchemaError", "config", "schema_revision", "upgrade"]

SCRIPT_LOCATION = os.path.dirname(os.path.abspath(__file__))
LEGACY_REVISION = "0001"  # the layout databases made before migrations have


class SchemaError(RuntimeError):
    """The database's schema cannot be brought to this code's head revision."""


@cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory(SCRIPT_LOCATION)


SCHEMA_HEAD: str = _scripts().get_current_head() or ""


def config(connection: Connection) -> Config:
    """An Alembic config for running commands on ``connection`` (see ``env.py``)."""
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION.replace("%", "%%"))
    cfg.attributes["connection"] = connection
    return cfg


VERSION_TABLE = "branchgym_schema_version"


def schema_revision(bind: Connection | Engine | str) -> str | None:
    """The database's schema revision; None when it has no version (empty, or legacy)."""
    if isinstance(bind, Connection):
        return MigrationContext.configure(
            bind, opts={"version_table": VERSION_TABLE}
        ).get_current_revision()
    engine = create_engine(bind) if isinstance(bind, str) else bind
    try:
        with engine.connect() as conn:
            return schema_revision(conn)
    finally:
        if isinstance(bind, str):
            engine.dispose()


def upgrade(conn: Connection, where: str) -> None:
    """Bring the database on ``conn`` to ``SCHEMA_HEAD`` inside the caller's transaction.

    The caller holds whatever lock keeps two processes from migrating at once; ``where`` is
    the database's URL (password masked) for error messages.
    """
    current = schema_revision(conn)
    cfg = config(conn)
    found = _layout(conn) if current is None else {}
    if found:
        _check_legacy(found, where)
        command.stamp(cfg, LEGACY_REVISION)
    elif current is not None and current not in {s.revision for s in _scripts().walk_revisions()}:
        raise SchemaError(
            f"the store at {where!r} has schema revision {current}, newer than this branchgym "
            f"knows (head {SCHEMA_HEAD}); upgrade branchgym"
        )
    if current != SCHEMA_HEAD:
        command.upgrade(cfg, "head")


def _legacy_layout() -> dict[str, set[str]]:
    return _scripts().get_revision(LEGACY_REVISION).module.layout()


def _layout(conn: Connection) -> dict[str, set[str]]:
    """The columns of the database's tables that revision 0001 also has (``{}``: none)."""
    inspector = inspect(conn)
    names = set(inspector.get_table_names()) & set(_legacy_layout())
    return {name: {c["name"] for c in inspector.get_columns(name)} for name in names}


def _check_legacy(found: dict[str, set[str]], where: str) -> None:
    """Refuse to stamp a version-less database whose tables are not revision 0001's."""
    expected = _legacy_layout()
    problems = [f"no table {name}" for name in expected if name not in found]
    problems += [
        f"table {name} has columns {sorted(found[name])}, expected {sorted(columns)}"
        for name, columns in expected.items()
        if name in found and found[name] != columns
    ]
    if problems:
        raise SchemaError(
            f"the store at {where!r} has tables without a schema revision that do not match "
            f"revision {LEGACY_REVISION} ({'; '.join(problems)}); it cannot be migrated"
        )
