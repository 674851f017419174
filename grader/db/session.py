"""Engine and session factory, created on first use (never at import time) and per process."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from grader.settings import get_settings


@lru_cache
def _engine_for(url: str, pid: int) -> Engine:
    # The pid is part of the key: a forked worker child must not reuse its parent's connections.
    settings = get_settings()
    # A request that finds every connection taken waits db_pool_timeout_s, then the API answers 503 (not a 500 after
    # SQLAlchemy's default 30 s); requests hold a connection only while they talk to the database.
    pool = {
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_timeout": settings.db_pool_timeout_s,
    }
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_S, "check_same_thread": False}, **pool)
        event.listen(engine, "connect", _sqlite_pragmas)
        turn = WriterTurn(timeout_s=SQLITE_BUSY_S)
        event.listen(engine, "before_cursor_execute", turn.before_execute)
        for returned in ("checkin", "close", "detach", "invalidate"):
            event.listen(engine.pool, returned, turn.returned)
        return engine
    return create_engine(url, pool_pre_ping=True, **pool)


SQLITE_BUSY_S = 30
"""How long a SQLite write waits for another's to end before it fails."""
WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


class WriterTurn:
    """This process's connections to one SQLite file write one at a time, each waiting for the previous writer's
    connection to be returned to the pool and woken as soon as it is.

    SQLite itself lets one connection write at a time and makes the others retry, sleeping ever longer between tries
    (up to 100 ms): in a surge the API's threads got the lock late and in no order (a submission waited seconds
    while later ones went first). Other processes (the workers) still wait in SQLite's own way. A thread that writes
    through a second connection of its own does not wait for itself; a turn not given within the timeout is not
    waited for any longer (SQLite's own wait then decides)."""

    def __init__(self, *, timeout_s: float) -> None:
        self._lock = threading.Lock()
        self._holder: int | None = None
        self.timeout_s = timeout_s

    def before_execute(self, connection, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        if connection.info.get(_HOLDS_TURN) or not statement.lstrip()[:7].upper().startswith(WRITES):
            return
        if self._holder == threading.get_ident():
            return
        if self._lock.acquire(timeout=self.timeout_s):
            self._holder = threading.get_ident()
            connection.info[_HOLDS_TURN] = True

    def returned(self, _dbapi_connection, record, *_args) -> None:  # type: ignore[no-untyped-def]
        # Checked in after its commit or rollback, or closed, detached or invalidated: its transaction has ended.
        if record.info.pop(_HOLDS_TURN, False):
            self._holder = None
            self._lock.release()


_HOLDS_TURN = "grader_holds_writer_turn"


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    # WAL lets the API read while a worker writes; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    # In WAL mode NORMAL syncs at checkpoints, not at every commit, and never risks corruption; only a power cut may
    # lose the last commits, as it may the uploads themselves (the store does not fsync its files either).
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_S * 1000}")
    cursor.close()


def get_engine(url: str | None = None) -> Engine:
    return _engine_for(url or get_settings().resolved_database_url, os.getpid())


@lru_cache
def _session_factory(url: str, pid: int) -> sessionmaker[Session]:
    return sessionmaker(bind=_engine_for(url, pid), expire_on_commit=False)


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = _session_factory(url or get_settings().resolved_database_url, os.getpid())()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
