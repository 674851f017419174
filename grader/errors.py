"""The grader's exception tree; the API maps it to HTTP in one place (grader/api/errors.py).

    GraderError
    ├── InputError            bad input from a user: says which field and what was expected (HTTP 4xx)
    │   ├── AnswerSheetError  the answer sheet as a whole cannot be read
    │   ├── UploadTooLarge    a file or a submission is over its size limit (413)
    │   ├── InvalidCheckpoint an uploaded checkpoint is not a file the grader can evaluate (422)
    │   ├── NotFound          no such object, or not visible to this user (404)
    │   ├── PermissionDenied  the user's role may not do this (403)
    │   │   └── SubmissionClosed  the assignment no longer takes submissions from this student (403)
    │   └── TooManyRequests   a limit is reached: attempts, cooldown, request rate (429, Retry-After when known)
    ├── RubricError           a rubric file is malformed (an instructor's or developer's mistake)
    └── InfrastructureError   the grader itself cannot work (data set missing, storage broken): retried
        └── Overloaded        too busy to take this request now: try again after `retry_after_s` (503)

A student's wrong or unparsable *answer* is not an exception: it becomes a part result with feedback.
Checkers signal an unparsable answer with `InvalidAnswer`, which the rubric engine turns into `invalid`.
"""

from __future__ import annotations


class GraderError(Exception):
    """Base of every error the grader raises on purpose."""


class InputError(GraderError):
    """Input a user sent is wrong; `field` names where, the message says what was expected."""

    status_code = 422

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class AnswerSheetError(InputError):
    """The answer sheet cannot be read at all (not YAML/JSON, not a mapping, too large, too deep)."""


class UploadTooLarge(InputError):
    status_code = 413


class InvalidCheckpoint(InputError):
    """An uploaded checkpoint is refused at intake: not a weights file, unreadable, or no CIFAR ResNet the grader
    can map (grader.evaluation.precheck); the message says which and how to save a usable one."""


class NotFound(InputError):
    status_code = 404


class PermissionDenied(InputError):
    status_code = 403


class SubmissionClosed(PermissionDenied):
    """Past the assignment's hard close (or the student's extended one)."""


class TooManyRequests(InputError):
    """A limit is reached; `retry_after_s` says when the next try can succeed (None: not before staff act)."""

    status_code = 429

    def __init__(self, message: str, *, retry_after_s: int | None = None, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.retry_after_s = retry_after_s


class RubricError(GraderError):
    """A rubric YAML file does not follow the rubric format."""


class InfrastructureError(GraderError):
    """The grader cannot do its work for a reason that is not the student's (retry or fix the setup)."""


class Overloaded(InfrastructureError):
    """The service is at its limit right now (requests in flight, database connections): nothing was done, and the
    same request can succeed after `retry_after_s`."""

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class InvalidAnswer(Exception):
    """Raised by a checker: the answer is present but not in any accepted notation."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
