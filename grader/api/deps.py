"""Request dependencies: settings, a DB session per request, the current user, the task dispatcher."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from grader import logs
from grader.api.ratelimit import RateLimiter
from grader.db.models import User
from grader.db.session import session_scope
from grader.domain.status import Role
from grader.errors import InputError, PermissionDenied
from grader.queues import CeleryDispatcher, create_celery
from grader.services.dispatch import Dispatcher
from grader.services.users import authenticate
from grader.settings import Settings, get_settings


class Unauthenticated(Exception):
    """No token, or a token that matches no user."""


def get_session() -> Iterator[Session]:
    with session_scope() as session:
        yield session


class DatabaseRoute(APIRoute):
    """A route whose synchronous endpoint ends its database transaction in its own thread when it returns.

    A request's session otherwise keeps its connection until the dependency closes it, after the answer is validated
    (another turn in the thread pool, where during a surge a request waits for a free thread) and sent: requests
    waiting for threads held every connection while the threads waited for connections. Committing here also makes
    a failed commit an error answer instead of a success sent for a change that was not kept.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if not inspect.iscoroutinefunction(endpoint):
            endpoint = _committing(endpoint)
        super().__init__(path, endpoint, **kwargs)


def _committing(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(endpoint)  # FastAPI reads the parameters of the wrapped endpoint
    def run(*args: Any, **kwargs: Any) -> Any:
        result = endpoint(*args, **kwargs)
        for value in kwargs.values():
            if isinstance(value, Session):
                value.commit()  # the connection goes back to the pool; a later lazy load takes one again
        return result

    return run


@lru_cache
def get_dispatcher() -> Dispatcher:
    return CeleryDispatcher(create_celery(get_settings()))


bearer = HTTPBearer(auto_error=False, description="An API token from `grader users create`.")
SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
DispatcherDep = Annotated[Dispatcher, Depends(get_dispatcher)]


def get_current_user(
    session: SessionDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> User:
    if credentials is None or not credentials.credentials:
        raise Unauthenticated("missing bearer token: send 'Authorization: Bearer <token>'")
    user = authenticate(session, token=credentials.credentials)
    # The read ends here (the route starts its own): no connection is held while the request waits for a thread.
    session.commit()
    if user is None:
        raise Unauthenticated("invalid or revoked API token")
    logs.bind(user_id=user.id)  # on the request's log line
    _rate_limiter().take(user.id)
    return user


@lru_cache
def _rate_limiter() -> RateLimiter:
    settings = get_settings()
    return RateLimiter(per_minute=settings.rate_limit_per_minute, burst=settings.rate_limit_burst)


CurrentUser = Annotated[User, Depends(get_current_user)]


def require_staff(user: CurrentUser) -> User:
    if not Role(user.role).is_staff:
        raise PermissionDenied("only instructors and TAs may do this")
    return user


StaffUser = Annotated[User, Depends(require_staff)]


def require_instructor(user: CurrentUser) -> User:
    if Role(user.role) is not Role.INSTRUCTOR:
        raise PermissionDenied("only instructors may do this")
    return user


InstructorUser = Annotated[User, Depends(require_instructor)]


def only_query(*names: str) -> object:
    """A route dependency refusing query parameters the route does not take (422 naming the first), so that a
    misspelt filter is an error instead of being silently ignored. Checked after authentication."""

    def check(request: Request, _: CurrentUser) -> None:
        unknown = sorted(set(request.query_params) - set(names))
        if unknown:
            takes = ", ".join(names) if names else "no query parameters"
            raise InputError(f"unknown query parameter {unknown[0]!r}; this endpoint takes {takes}", field=unknown[0])

    return Depends(check)
