"""A cheap check at intake that an uploaded checkpoint is one the grader can evaluate (pure: no database, no queue).

A PNG renamed .pt, an empty or truncated file, a whole pickled model or a network outside the reference family is
refused while the student is still at the upload, with the reason, instead of a `rejected` part minutes later. The
evaluator's own readers and architecture inference decide (grader.evaluation.checkpoint, .architecture), reading
only what is cheap: a safetensors header, a torch.save zip's directory and pickle with its tensors memory-mapped
(values stay on disk), or a legacy torch file whole (bounded by the upload limit). Nothing is unpickled except by
torch's weights-only loader, and only with a torch whose loader has no known bypass (grader.evaluation.safety).

Passing is no verdict: the evaluation can still reject the file (NaN weights, a network too big for the sandbox).
Importing this module does not import torch; the first call does.
"""

from __future__ import annotations

from pathlib import Path

from grader.errors import InfrastructureError, InvalidCheckpoint, UploadTooLarge


def precheck_checkpoint(path: Path, *, label: str, code_uploaded: bool = False, max_bytes: int | None = None) -> None:
    """Return when the file at `path`, uploaded as checkpoint `label` ("v1", "v2"), can be evaluated.

    Raises InvalidCheckpoint (422, `field` = label) saying why not: not a checkpoint, unreadable, no tensors, a
    pickled model, or (unless `code_uploaded`) tensors that fit no CIFAR ResNet the grader can map. With the
    student's code uploaded too, the network is theirs (student-code mode), so only the file itself is checked.
    Raises UploadTooLarge (413) over `max_bytes` (the upload limit; by default the evaluator's own), and
    InfrastructureError when torch is too old to load it safely or the file cannot be read.
    """
    from grader.evaluation.architecture import infer_network
    from grader.evaluation.checkpoint import MAX_CHECKPOINT_BYTES, CheckpointRejected, read_structure
    from grader.evaluation.safety import require_safe_torch

    max_bytes = MAX_CHECKPOINT_BYTES if max_bytes is None else max_bytes
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InfrastructureError(f"cannot read checkpoint file {path}: {exc.strerror or exc}") from exc
    if size > max_bytes:
        raise UploadTooLarge(f"the {label} checkpoint is {size} bytes; the limit is {max_bytes} bytes", field=label)
    require_safe_torch()
    try:
        tensors = read_structure(path, max_bytes)
        if not code_uploaded:
            infer_network(tensors)
    except CheckpointRejected as exc:
        raise InvalidCheckpoint(f"the {label} checkpoint cannot be evaluated: {exc.message}", field=label) from None
