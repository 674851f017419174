"""Built-in checkers; importing this package registers them all in grader.rubric.registry."""

from grader.checks import common  # noqa: F401
