"""segments.tool_result: whether an env segment answers a tool call.

Branch decisions and the after-tool entropy statistics (AEPO's ``H_tool``) look at tool
results only, not at the prompt or at observations such as a format error's. Rows written
before this revision did not record it; they get the meaning the code gave every env segment
then: an env segment after the prompt was a tool result.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    column = sa.Column("tool_result", sa.Boolean(), nullable=False, server_default=sa.false())
    op.add_column("segments", column)
    op.execute(
        "UPDATE segments SET tool_result = TRUE WHERE kind = 'env' AND parent_id IS NOT NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("segments") as batch:
        batch.drop_column("tool_result")
