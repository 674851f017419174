"""Signing in to the dashboard: an API token becomes an HttpOnly, SameSite=Strict session cookie; every form
that changes something carries a CSRF token that must match its own cookie (double submit)."""

from __future__ import annotations

import hmac
import secrets

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from grader import logs
from grader.db.models import User
from grader.services.users import authenticate

SESSION_COOKIE = "grader_session"
CSRF_COOKIE = "grader_csrf"
MAX_AGE_S = 12 * 3600


class SignInRequired(Exception):
    """No valid session: the page redirects to the sign-in form."""


class CsrfRejected(Exception):
    """A form without the matching CSRF token."""


def current_user(request: Request, session: Session) -> User:
    token = request.cookies.get(SESSION_COOKIE)
    user = authenticate(session, token=token) if token else None
    if user is None:
        raise SignInRequired
    logs.bind(user_id=user.id)  # on the request's log line
    return user


def csrf_token(request: Request) -> str:
    """The session's CSRF token (made at sign-in)."""
    return request.cookies.get(CSRF_COOKIE, "")


def check_csrf(request: Request, submitted: str) -> None:
    expected = request.cookies.get(CSRF_COOKIE, "")
    if not expected or not hmac.compare_digest(expected, submitted or ""):
        raise CsrfRejected


def start_session(response: Response, *, token: str, secure: bool) -> None:
    options = {"httponly": True, "samesite": "strict", "secure": secure, "max_age": MAX_AGE_S, "path": "/"}
    response.set_cookie(SESSION_COOKIE, token, **options)  # type: ignore[arg-type]
    response.set_cookie(CSRF_COOKIE, secrets.token_urlsafe(24), **options)  # type: ignore[arg-type]


def end_session(response: Response) -> None:
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        response.delete_cookie(name, path="/")
