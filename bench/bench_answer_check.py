"""Benchmark: grading one fully correct answer sheet (Q2–Q4) with grade_sheet, after warm-up.

Run `python bench/bench_answer_check.py [--repeats N]`. Prints the cold first sheet (imports and cached
reference computations included), the median of parsing alone (the baseline, same run) and the median of
parse + grade per sheet, with their ratios. Target: < 200 ms per sheet after warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # a plain script: run from a checkout without installing the package

from grader.answers.sheet import parse_answer_sheet  # noqa: E402
from grader.rubric.engine import grade_sheet  # noqa: E402
from grader.rubric.model import Rubric, load_rubric  # noqa: E402

TARGET_MS = 200.0
SHEET = """
assignment: csce636-hw3
q2:
  standard_params: 18432
  standard_params_includes: []
  bottleneck_params: "17,792"
  bottleneck_params_includes: [bn]
  standard_receptive_field: 5x5
  bottleneck_receptive_field: 3 × 3
  discussion: "Roughly the same parameters; deeper and cheaper, but a 3x3 receptive field."
q3:
  a_mean_shape: 1 x C
  a_variance_shape: (1, C)
  b_mean_shape: 1 x 1 x 1 x C
  b_variance_shape: [1, 1, 1, C]
q4:
  a_matrix:
    - [w1^11, w2^11, w3^11, 0, w1^21, w2^21, w3^21, 0]
    - [0, 'w_1^{11}', 'w_2^{11}', 'w_3^{11}', 0, 'w_1^{21}', 'w_2^{21}', 'w_3^{21}']
    - [ω1^12, ω2^12, ω3^12, 0, ω1^22, ω2^22, ω3^22, 0]
    - "[0, w1^12, w2^12, w3^12, 0, w1^22, w2^22, w3^22]"
  b_matrix: "[[w1^11, 0, w1^12, 0], [w2^11, w1^11, w2^12, w1^12], [w3^11, w2^11, w3^12, w2^12],
    [0, w3^11, 0, w3^12], [w1^21, 0, w1^22, 0], [w2^21, w1^21, w2^22, w1^22], [w3^21, w2^21, w3^22, w2^22],
    [0, w3^21, 0, w3^22]]"
  c_padding: 2
  c_kernels: {U11: [w3^11, w2^11, w1^11], U12: [w3^21, w2^21, w1^21], U21: [w3^12, w2^12, w1^12],
              U22: "w3^22 w2^22 w1^22"}
"""


def answer_rubric() -> Rubric:
    """The rubric's parts graded from the sheet; Q1's checkpoint parts need evaluations and are left out."""
    rubric = load_rubric(ROOT / "rubrics" / "csce636-hw3.yaml")
    return replace(rubric, parts=tuple(part for part in rubric.parts if part.answer is not None))


def timed_ms(function: Callable[[], object]) -> float:
    start = time.perf_counter()
    function()
    return (time.perf_counter() - start) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    rubric = answer_rubric()

    def grade() -> object:
        return grade_sheet(parse_answer_sheet(SHEET), rubric)

    cold = timed_ms(grade)
    report = grade()
    full = report.score == report.max_score - 5  # q2.discussion waits for an instructor
    for _ in range(args.warmup):
        grade()
    parse_ms = statistics.median(timed_ms(lambda: parse_answer_sheet(SHEET)) for _ in range(args.repeats))
    grade_ms = statistics.median(timed_ms(grade) for _ in range(args.repeats))
    print(f"sheet scored {report.score}/{report.max_score} ({'as expected' if full else 'UNEXPECTED'})")
    print(f"cold first sheet (imports + reference caches): {cold:9.2f} ms")
    print(f"baseline, parse_answer_sheet alone (median):   {parse_ms:9.3f} ms")
    print(f"parse + grade_sheet per sheet (median, n={args.repeats}): {grade_ms:9.3f} ms")
    print(f"ratio grade/parse: {grade_ms / parse_ms:.1f}x; cold/warm: {cold / grade_ms:.0f}x")
    print(f"target < {TARGET_MS:.0f} ms per sheet: {'met' if grade_ms < TARGET_MS else 'MISSED'}")
    return 0 if full and grade_ms < TARGET_MS else 1


if __name__ == "__main__":
    raise SystemExit(main())
