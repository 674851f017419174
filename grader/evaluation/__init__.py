"""Q1: evaluating ResNet checkpoints on the CIFAR-10 test set (no student code runs here).

Public surface (used by the grading core, the CLI and the `gpu` worker task):
- `EVALUATOR_VERSION`: bump when a change could alter a result; part of the evaluation cache key.
- `read_preprocessing(sheet, label) -> dict`: the canonical preprocessing spec declared in the sheet at
  `q1.<label>_preprocessing`; raises `grader.errors.InvalidAnswer` when it is malformed.
- `evaluate_checkpoint(path, *, label, preprocessing, cifar10_root, device=None) -> dict`: JSON-ready result,
  `{"status": "evaluated", ...evidence}` or `{"status": "rejected", "message": ...}` for a file that is not
  a usable checkpoint; raises `grader.errors.InfrastructureError` when the data set is missing.
"""
