"""A cheap check at intake that an uploaded checkpoint is one the grader can evaluate (pure: no database, no queue).

A PNG renamed .pt, an empty or truncated file, a whole pickled model or a network outside the reference family is
refused while the student is still at the upload, with the reason, instead of a `rejected` part minutes later. The
evaluator's own rules decide (grader.evaluation.checkpoint_format, .architecture), applied to the file's tensor
names, dtypes and shapes as grader.evaluation.structure reads them: without torch and without tensor values (a
safetensors header; a torch.save file's pickles through an allow-list unpickler that builds only inert records).
This runs in the API process, which never parses an upload with torch; the evaluation loads the file with torch in
a sandboxed child.

Passing is no verdict: the evaluation can still reject the file (NaN weights, a network too big for the sandbox).
Neither importing this module nor calling it imports torch.
"""

from __future__ import annotations

from pathlib import Path

from grader.errors import InfrastructureError, InvalidCheckpoint, UploadTooLarge
from grader.evaluation.architecture import infer_network
from grader.evaluation.checkpoint_format import MAX_CHECKPOINT_BYTES, CheckpointRejected
from grader.evaluation.structure import read_structure


def precheck_checkpoint(path: Path, *, label: str, code_uploaded: bool = False, max_bytes: int | None = None) -> None:
    """Return when the file at `path`, uploaded as checkpoint `label` ("v1", "v2"), can be evaluated.

    Raises InvalidCheckpoint (422, `field` = label) saying why not: not a checkpoint, unreadable, no tensors, a
    pickled model, or (unless `code_uploaded`) tensors that fit no CIFAR ResNet the grader can map. With the
    student's code uploaded too, the network is theirs (student-code mode), so only the file itself is checked.
    Raises UploadTooLarge (413) over `max_bytes` (the upload limit; by default the evaluator's own), and
    InfrastructureError when the file cannot be read.
    """
    max_bytes = MAX_CHECKPOINT_BYTES if max_bytes is None else max_bytes
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InfrastructureError(f"cannot read checkpoint file {path}: {exc.strerror or exc}") from exc
    if size > max_bytes:
        raise UploadTooLarge(f"the {label} checkpoint is {size} bytes; the limit is {max_bytes} bytes", field=label)
    try:
        tensors = read_structure(path, max_bytes)
        if not code_uploaded:
            infer_network(tensors)
    except CheckpointRejected as exc:
        raise InvalidCheckpoint(f"the {label} checkpoint cannot be evaluated: {exc.message}", field=label) from None
