"""How a sandboxed program hands back its one result: the wire protocol of every program the grader runs in the
sandbox (the evaluation child, the weight-summary child, the harness of a student's code, the code checks' harness).

The runner gives the program a pipe (its number in `$GRADER_RESULT_FD`). The program writes exactly one JSON object
there and nothing else, always with a `status`:

    {"status": <the program's own word: "predicted", "built", "checked", "summarized">, ...its fields}
    {"status": "rejected", "message": ..., ...}                     the input is not usable (a fact about the upload)
    {"status": "error", "kind": ..., "stage": ..., "message": ...}  it could not finish; `kind` says why, in the
                                                                    words of `ERROR_KINDS`

The parent reads it with `Reply.read(run.payload)`, which never raises: every field comes from an untrusted
process and is checked again where it is used.

Standalone on purpose (standard library only, imports nothing of the grader): the harnesses of students' code run
where the grader's package is not visible, so this file is copied beside them as `COPY_NAME`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

RESULT_FD_ENV = "GRADER_RESULT_FD"
COPY_NAME = "_grader_protocol.py"
"""The name this file has beside a harness in the sandbox: a student's own module cannot be called that by chance."""
REJECTED, ERROR = "rejected", "error"
MAX_MESSAGE = 2000
ERROR_KINDS = (
    "memory",  # out of memory (MemoryError)
    "device_memory",  # the GPU's memory ran out
    "processes",  # too many processes or threads
    "file_size",  # a file over the size limit
    "timed_out",  # a stage ran past its own time
    "missing_module",  # a module the interface names is not among the student's files
    "interface",  # the student's function or class returned something unusable
    "export",  # torch.export could not capture the student's network
    "student_code",  # the student's code raised
)


def result_channel() -> BinaryIO:
    """The result pipe, closed to any process the program starts (a student's code could start one)."""
    descriptor = int(os.environ[RESULT_FD_ENV])
    os.set_inheritable(descriptor, False)
    return os.fdopen(descriptor, "wb")


def send(channel: BinaryIO, reply: Mapping[str, Any]) -> None:
    """Write the program's one reply (compact JSON)."""
    channel.write(json.dumps(reply, separators=(",", ":")).encode("utf-8"))


def error(kind: str, message: str, stage: str = "") -> dict[str, str]:
    """The reply of a program that could not finish."""
    return {"status": ERROR, "kind": kind, "stage": stage, "message": message[:MAX_MESSAGE]}


def rejected(message: str, **fields: Any) -> dict[str, Any]:
    """The reply of a program whose input is not usable."""
    return {**fields, "status": REJECTED, "message": message[:MAX_MESSAGE]}


@dataclass(frozen=True)
class Reply:
    """A program's reply as the parent reads it. `status` is "" when the payload is not an object with a status
    (the program wrote nothing usable: it crashed, or its process was subverted)."""

    status: str
    kind: str = ""
    stage: str = ""
    message: str = ""
    fields: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, payload: object) -> Reply:
        if not isinstance(payload, Mapping) or not isinstance(payload.get("status"), str):
            return cls("")

        def text(name: str, limit: int) -> str:
            value = payload.get(name)
            return value[:limit] if isinstance(value, str) else ""

        return cls(
            str(payload["status"])[:40], text("kind", 40), text("stage", 300), text("message", MAX_MESSAGE), payload
        )

    @property
    def failed(self) -> bool:
        return self.status == ERROR

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)

    def mapping(self, name: str) -> dict[str, Any] | None:
        value = self.fields.get(name)
        return value if isinstance(value, dict) else None
