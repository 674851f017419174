"""Built-in checkers; importing this package registers them all in grader.rubric.registry."""

from grader.checks import (
    code,  # noqa: F401
    common,  # noqa: F401
    q1,  # noqa: F401
    q2,  # noqa: F401
    q3,  # noqa: F401
    q4,  # noqa: F401
)
