"""The seam between services and the task queue: services say what to run, a dispatcher sends it."""

from __future__ import annotations

from typing import Protocol


class Dispatcher(Protocol):
    """Sends work to the queue; implementations must only be called after the rows they name are committed."""

    def grade_job(self, job_id: str, *, resumed: bool = False) -> None:
        """Queue the answer checks and scoring of one grading job (the `cpu` queue).

        `resumed`: a wake-up after checkpoint evaluations finished, which does not count as a new attempt.
        """

    def evaluate_checkpoint(self, evaluation_id: str, job_id: str, *, gpu: bool = True) -> None:
        """Queue one evaluation row; it wakes the job when done. `gpu`: a checkpoint's run over the test set (the `gpu`
        queue); False for the Q1 code checks, CPU work on small inputs (the `cpu` queue)."""

    def run_regrade(self, regrade_id: str) -> None:
        """Queue the next chunk of a batch regrade (the `regrade` queue, so students' new work never waits
        behind a whole batch: each chunk is one task, and other tasks run between chunks)."""

    def check_broker(self, *, timeout_s: float) -> None:
        """Connect to the broker once; raise InfrastructureError saying why when it cannot be reached."""
