"""Initial schema: runs, groups, segments, trajectories, replay_entries, baselines.

Written by hand to equal ``schema.Base.metadata`` as it was when migrations were introduced;
``tests/test_migrations.py`` checks that a database upgraded to head has exactly that schema.
Databases made before then by ``create_all`` have this layout too: ``layout()`` is what the
store checks before stamping such a database as this revision.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _cascade(column: str, target: str) -> sa.ForeignKeyConstraint:
    """A foreign key whose rows go when the row they point to is deleted."""
    return sa.ForeignKeyConstraint([column], [target], ondelete="CASCADE")


def _tables() -> list[tuple[str, list[sa.SchemaItem]]]:
    """Each table's name, columns and constraints; built fresh per call because a column
    object can belong to one table only."""

    def col(name: str, type_: sa.types.TypeEngine, nullable: bool = False) -> sa.Column:
        return sa.Column(name, type_, nullable=nullable)

    def serial() -> sa.Column:
        return sa.Column("id", sa.Integer(), autoincrement=True, nullable=False)

    return [
        (
            "runs",
            [
                col("id", sa.String(128)),
                col("created_at", sa.DateTime(timezone=True)),
                col("config", sa.Text()),
                col("code_version", sa.String(64)),
                sa.PrimaryKeyConstraint("id"),
            ],
        ),
        (
            "groups",
            [
                serial(),
                col("run_id", sa.String(128)),
                col("step", sa.Integer()),
                col("policy_version", sa.Integer()),
                col("worker", sa.String(128)),
                col("env_id", sa.String(128)),
                col("task_seed", sa.Integer()),
                col("split", sa.String(32)),
                col("task_type", sa.String(128)),
                col("instruction", sa.Text()),
                sa.PrimaryKeyConstraint("id"),
                _cascade("run_id", "runs.id"),
            ],
        ),
        (
            "segments",
            [
                col("group_id", sa.Integer()),
                col("seg_id", sa.Integer()),
                col("position", sa.Integer()),
                col("parent_id", sa.Integer(), nullable=True),
                col("kind", sa.String(16)),
                col("token_ids", sa.LargeBinary()),
                col("logprobs", sa.LargeBinary()),
                col("entropies", sa.LargeBinary()),
                col("entropy_exact", sa.Boolean()),
                col("text", sa.Text()),
                col("reward", sa.Double()),
                col("end_reason", sa.String(32), nullable=True),
                sa.PrimaryKeyConstraint("group_id", "seg_id"),
                _cascade("group_id", "groups.id"),
            ],
        ),
        (
            "trajectories",
            [
                serial(),
                col("group_id", sa.Integer()),
                col("leaf_id", sa.Integer()),
                col("segment_ids", sa.LargeBinary()),
                col("ret", sa.Double()),
                col("advantage", sa.Double()),
                col("end_reason", sa.String(32)),
                col("won", sa.Boolean()),
                col("n_turns", sa.Integer()),
                col("tool_calls", sa.Integer()),
                sa.PrimaryKeyConstraint("id"),
                _cascade("group_id", "groups.id"),
            ],
        ),
        (
            "replay_entries",
            [
                serial(),
                col("run_id", sa.String(128)),
                col("trajectory_id", sa.Integer()),
                col("policy_version", sa.Integer()),
                col("step", sa.Integer()),
                col("ret", sa.Double()),
                sa.PrimaryKeyConstraint("id"),
                _cascade("run_id", "runs.id"),
                _cascade("trajectory_id", "trajectories.id"),
            ],
        ),
        (
            "baselines",
            [
                serial(),
                col("run_id", sa.String(128)),
                col("group_id", sa.Integer()),
                col("step", sa.Integer()),
                col("mean", sa.Double()),
                col("std", sa.Double()),
                sa.PrimaryKeyConstraint("id"),
                _cascade("run_id", "runs.id"),
                _cascade("group_id", "groups.id"),
            ],
        ),
    ]


_INDEXES = [
    ("ix_groups_run_step", "groups", ["run_id", "step"]),
    ("ix_trajectories_group_id", "trajectories", ["group_id"]),
    ("ix_trajectories_advantage", "trajectories", ["advantage"]),
    ("ix_replay_run_version", "replay_entries", ["run_id", "policy_version"]),
    ("ix_baselines_run", "baselines", ["run_id", "id"]),
]


def layout() -> dict[str, set[str]]:
    """Each table's column names at this revision (the legacy check compares against it)."""
    return {
        name: {item.name for item in items if isinstance(item, sa.Column)}
        for name, items in _tables()
    }


def upgrade() -> None:
    for name, items in _tables():
        op.create_table(name, *items)
    for index, table, columns in _INDEXES:
        op.create_index(index, table, columns)


def downgrade() -> None:
    for index, table, _columns in reversed(_INDEXES):
        op.drop_index(index, table_name=table)
    for name, _items in reversed(_tables()):
        op.drop_table(name)
