"""idempotency keys on submissions

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("submissions") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(length=200), nullable=True))
    # A unique index, not a table constraint: SQLite would rebuild the table for a constraint, and dropping the old
    # table would cascade to the submission_files rows that refer to it. Rows without a key (NULL) never collide.
    op.create_index(
        "uq_submissions_user_id_idempotency_key", "submissions", ["user_id", "idempotency_key"], unique=True
    )


def downgrade() -> None:
    op.drop_index("uq_submissions_user_id_idempotency_key", table_name="submissions")
    with op.batch_alter_table("submissions") as batch:
        batch.drop_column("idempotency_key")
