"""Users and their API tokens (only a token's sha256 is stored)."""

from __future__ import annotations

import hashlib
import re
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from grader.db.models import ApiToken, User
from grader.domain.status import Role
from grader.errors import InputError

USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


def hash_token(token: str) -> str:
    # Tokens are 256-bit random strings, so a plain sha256 is enough (no dictionary to attack).
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_user(session: Session, *, username: str, role: Role) -> User:
    if not USERNAME_PATTERN.match(username):
        raise InputError(
            "username must be 1-64 characters: letters, digits, '.', '_', '@', '-', starting with a letter or digit",
            field="username",
        )
    if session.scalar(select(User).where(User.username == username)) is not None:
        raise InputError(f"user {username!r} already exists", field="username")
    user = User(username=username, role=str(role))
    session.add(user)
    session.flush()
    return user


def issue_token(session: Session, *, user: User) -> str:
    """Create a new token for the user and return it; it cannot be recovered later."""
    token = "gr_" + secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=user.id, token_sha256=hash_token(token)))
    session.flush()
    return token


def get_user_by_username(session: Session, *, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))


def authenticate(session: Session, *, token: str) -> User | None:
    row = session.scalar(
        select(ApiToken).where(ApiToken.token_sha256 == hash_token(token), ApiToken.revoked_at.is_(None))
    )
    return row.user if row is not None else None
