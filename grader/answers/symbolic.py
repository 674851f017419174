"""Sympy side of the weight expressions: symbols built from parsed tokens, equivalence checks under a time limit.

Sympy never sees raw text (no `sympify`): `to_sympy` builds Symbols, Rationals, Adds and Muls from an `Expr`
tree whose size the parser has already bounded. The time limit is a second fence, as in PrairieLearn.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from types import FrameType

import sympy

from grader.answers.expressions import Expr, Weight
from grader.errors import InvalidAnswer

SYMPY_SECONDS = 2.0


class SymbolicTimeout(InvalidAnswer):
    """Sympy ran past its time limit on a student's expression."""


@lru_cache(maxsize=4096)
def symbol(weight: Weight) -> sympy.Symbol:
    return sympy.Symbol(weight.label, real=True)


def to_sympy(expr: Expr) -> sympy.Expr:
    if expr.op == "num":
        return sympy.Rational(expr.number.numerator, expr.number.denominator)
    if expr.op == "weight":
        assert expr.weight is not None
        return symbol(expr.weight)
    args = [to_sympy(arg) for arg in expr.args]
    if expr.op == "add":
        return sympy.Add(*args)
    if expr.op == "neg":
        return -args[0]
    return sympy.Mul(*args)


def equivalent(student: Expr, reference: sympy.Expr) -> bool:
    """Whether two entries are the same polynomial in the weights (expanded difference is zero)."""
    difference = to_sympy(student) - reference
    return difference == 0 or sympy.expand(difference) == 0


def entries_equivalent(
    student: Sequence[Expr], reference: Sequence[sympy.Expr], *, seconds: float = SYMPY_SECONDS
) -> list[bool]:
    """Entry-by-entry equivalence, all of it within `seconds`."""
    deadline = time.monotonic() + seconds
    results: list[bool] = []
    with time_limit(seconds):
        for mine, theirs in zip(student, reference, strict=True):
            if time.monotonic() > deadline:
                raise SymbolicTimeout(f"checking the entries took longer than {seconds:g} s; simplify them")
            results.append(equivalent(mine, theirs))
    return results


def substitute(expr: sympy.Expr, values: Mapping[Weight, float]) -> float:
    return float(expr.xreplace({symbol(weight): value for weight, value in values.items()}))


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Interrupt with SymbolicTimeout after `seconds` (SIGALRM, main thread only; elsewhere a no-op fence)."""
    usable = (
        hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
        and signal.getitimer(signal.ITIMER_REAL)[0] == 0  # never clobber a timer someone else set
    )
    if not usable:
        yield
        return

    def expire(signum: int, frame: FrameType | None) -> None:
        raise SymbolicTimeout(f"the symbolic check took longer than {seconds:g} s; simplify the entries")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
