"""release state per assignment, and the feedback students read before release

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("assignments") as batch:
        batch.add_column(sa.Column("released_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("part_results") as batch:
        batch.add_column(sa.Column("public_feedback", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("part_results") as batch:
        batch.drop_column("public_feedback")
    with op.batch_alter_table("assignments") as batch:
        batch.drop_column("released_at")
