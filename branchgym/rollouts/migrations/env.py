"""Alembic's entry point for the store's migrations.

It runs them on the connection the store hands over in ``config.attributes["connection"]``,
inside the store's transaction (which holds the schema lock), never on a URL of its own.
SQLite cannot alter most things in place, so there operations run in batch mode: Alembic
copies the table into a new one with the change.
"""

from __future__ import annotations

from alembic import context

from branchgym.rollouts.migrations import VERSION_TABLE
from branchgym.rollouts.schema import Base

if context.is_offline_mode():
    raise RuntimeError("branchgym's migrations run online only, on the store's connection")

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
