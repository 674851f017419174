"""Q1 with the student's own code: their NetWork.py builds the network (student-code mode) and their DataReader,
ImageUtils and Model are checked against reference behaviour (the Q1(a)-(d) code checks). Their code runs only
in the sandbox (grader.sandbox); what it hands back is checked and re-run by the grader's own code.

Public surface:
- `read_model_interface(rubric) -> ModelInterface | None`: the rubric's `model_interface:` section;
  `read_network_config(sheet, label, interface)`: the sheet's `q1.<label>_config`.
- `evaluate_student_code(code_dir, checkpoint, *, label, config, interface, cifar10_root, limits) -> dict`:
  the Q1 result in student-code mode (imports torch on first use).
- `architecture_from_trace(trace) -> dict`: architecture facts from a run's trace, as grader/checks/q1.py reads them.
- `grader.evaluation.student.code_checks.run_code_checks(code_dir, spec, limits=...)`: the Q1(a)-(d) code checks
  of a whole code folder (`code_checks_spec.read_code_checks(rubric)` reads the rubric's `code_checks:` section).

Importing this package does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from grader.evaluation.student.interface import ModelInterface, read_model_interface, read_network_config
from grader.evaluation.student.trace import architecture_from_trace

if TYPE_CHECKING:
    from grader.evaluation.student.student_mode import evaluate_student_code

__all__ = [
    "ModelInterface",
    "architecture_from_trace",
    "evaluate_student_code",
    "read_model_interface",
    "read_network_config",
]


def __getattr__(name: str) -> Any:
    # evaluate_student_code lives in student_mode, which imports torch: loaded on first use only.
    if name == "evaluate_student_code":
        from grader.evaluation.student.student_mode import evaluate_student_code

        return evaluate_student_code
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
