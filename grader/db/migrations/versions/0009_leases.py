"""leases on claimed jobs, evaluations and regrades

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("grading_jobs", "checkpoint_evaluations", "regrades")


def upgrade() -> None:
    # Nullable columns only: SQLite adds them in place, and existing rows start unclaimed.
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("lease_owner", sa.String(length=255), nullable=True))
            batch.add_column(sa.Column("lease_claimed_at", sa.DateTime(timezone=True), nullable=True))
            batch.add_column(sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("lease_expires_at")
            batch.drop_column("lease_claimed_at")
            batch.drop_column("lease_owner")
