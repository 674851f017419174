"""Users and their API tokens (only a token's sha256 is stored)."""

from __future__ import annotations

import csv
import hashlib
import io
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from grader.db.models import ApiToken, User, utcnow
from grader.domain.status import Role
from grader.errors import InputError, NotFound

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
    # One query (every API request makes it): the token's user, joined, not loaded after the token.
    return session.scalar(
        select(User)
        .join(ApiToken, ApiToken.user_id == User.id)
        .where(ApiToken.token_sha256 == hash_token(token), ApiToken.revoked_at.is_(None))
    )


def require_user(session: Session, *, username: str) -> User:
    user = get_user_by_username(session, username=username)
    if user is None:
        raise NotFound(f"no user {username!r}", field="username")
    return user


def list_users(session: Session, *, role: Role | None = None) -> list[User]:
    query = select(User).order_by(User.username)
    if role is not None:
        query = query.where(User.role == str(role))
    return list(session.scalars(query))


def active_tokens(session: Session, *, user: User) -> int:
    query = select(func.count()).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
    return session.scalar(query) or 0


def revoke_tokens(session: Session, *, user: User) -> int:
    """Revoke every token of the user at once (requests with them answer 401 from now on); how many."""
    tokens = session.scalars(select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None)))
    count = 0
    for token in tokens:
        token.revoked_at = utcnow()
        count += 1
    session.flush()
    return count


ROSTER_COLUMNS = {
    "name": "full_name",
    "student": "full_name",
    "id": "lms_id",
    "sis user id": "sis_user_id",
    "sis login id": "sis_login_id",
    "section": "section",
}
"""Canvas roster export headers (case-insensitive) → user fields."""


@dataclass(frozen=True, slots=True)
class RosterImport:
    created: list[str]
    updated: list[str]
    unchanged: list[str]


def import_roster(session: Session, *, text: str) -> RosterImport:
    """Students from a Canvas roster CSV (name, ID, SIS User ID, SIS Login ID, Section), idempotent: a known
    username is updated, a new one created (without a token). The username is the SIS Login ID, else the ID."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    headers = {(h or "").strip().lower(): h for h in reader.fieldnames or []}
    if not any(h in headers for h in ("sis login id", "id")):
        raise InputError("the roster needs an 'SIS Login ID' or 'ID' column (a Canvas roster export)", field="roster")
    created, updated, unchanged = [], [], []
    for line, raw in enumerate(reader, start=2):
        values = {
            field: (raw.get(headers[h]) or "").strip() or None for h, field in ROSTER_COLUMNS.items() if h in headers
        }
        username = values.get("sis_login_id") or values.get("lms_id")
        if not username or (values.get("full_name") or "").strip().lower() == "points possible":
            continue
        user = get_user_by_username(session, username=username)
        if user is None:
            try:
                user = create_user(session, username=username, role=Role.STUDENT)
            except InputError as exc:
                raise InputError(f"line {line}: {exc.message}", field="roster") from exc
            created.append(username)
        elif all(getattr(user, field) == value for field, value in values.items()):
            unchanged.append(username)
            continue
        else:
            updated.append(username)
        for field, value in values.items():
            setattr(user, field, value)
    session.flush()
    return RosterImport(created, updated, unchanged)
