"""human reviews of parts, and roster fields on users

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROSTER = ("full_name", "lms_id", "sis_user_id", "sis_login_id", "section")


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("full_name", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("lms_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("sis_user_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("sis_login_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("section", sa.String(length=200), nullable=True))
    op.create_table(
        "part_reviews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("submission_id", sa.String(length=32), nullable=False),
        sa.Column("part_id", sa.String(length=128), nullable=False),
        sa.Column("points", sa.Float(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("reviewer_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("auto_status", sa.String(length=16), nullable=True),
        sa.Column("auto_points", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["submission_id"], ["submissions.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["reviewer_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_part_reviews_submission_id", "part_reviews", ["submission_id"])


def downgrade() -> None:
    op.drop_index("ix_part_reviews_submission_id", table_name="part_reviews")
    op.drop_table("part_reviews")
    with op.batch_alter_table("users") as batch:
        for column in ROSTER:
            batch.drop_column(column)
