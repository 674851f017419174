"""The resource limits of one sandboxed run (how a run can end: grader.domain.status.SandboxStatus)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from grader.settings import Settings

MIB = 1024 * 1024
GIB = 1024 * MIB


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    """Limits of one run. What the settings configure has no default here: a run's limits come from the settings
    (`from_settings`), or from a caller that names each (the grader's own probes, tests); the rest are fixed.

    Enforcement: wall time by the parent (SIGKILL to bubblewrap, which takes the PID namespace down); CPU time,
    address space (CPU runs), file size, open files and processes by RLIMITs set before bubblewrap starts,
    under an unprivileged uid of the run's own so RLIMIT_NPROC counts only the run's processes; memory on GPU
    runs, and additionally processes and memory (tmpfs included) when a cgroup can be created, by the cgroup;
    output by the parent reading with a cap; /tmp by the tmpfs size.
    """

    wall_seconds: float
    cpu_seconds: int
    """RLIMIT_CPU per process: all its threads together, so about threads × wall time when busy."""
    memory_bytes: int
    """RLIMIT_AS on CPU runs. Measured with torch 2.14.1 (CUDA build): `import torch` alone maps 3.3 GB of
    address space and a small conv forward 3.8 GB; under 3 GB the import itself fails (libtorch_cuda.so cannot
    be mapped). 6 GiB leaves about 2 GiB for the model, the images and activations. On GPU runs the same number
    is the cgroup's memory limit (RLIMIT_DATA when no cgroup), since CUDA reserves huge address ranges."""
    max_processes: int
    """Processes and threads of the run together (torch starts a few threads per core)."""
    max_output_bytes: int
    """stdout and stderr each; more and the run is stopped with `resource_limit`."""
    threads: int
    """OMP/MKL/OpenBLAS thread counts inside the sandbox."""
    max_file_bytes: int = 64 * MIB
    max_open_files: int = 256
    tmp_bytes: int = 256 * MIB
    """Size of the private /tmp (the only writable place)."""
    max_result_bytes: int = 8 * MIB
    """The JSON written to the result pipe (10,000 predictions and a trace take about 200 KB)."""

    def __post_init__(self) -> None:
        for name in ("wall_seconds", "cpu_seconds", "memory_bytes", "max_processes", "max_file_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"SandboxLimits.{name} must be positive")

    @classmethod
    def from_settings(cls, settings: Settings) -> SandboxLimits:
        """The limits the service is configured with (`GRADER_SANDBOX_*`)."""
        return cls(
            wall_seconds=settings.resolved_sandbox_wall_s,
            cpu_seconds=settings.sandbox_cpu_s,
            memory_bytes=settings.sandbox_memory_mib * MIB,
            max_processes=settings.sandbox_max_processes,
            max_output_bytes=settings.sandbox_max_output_mib * MIB,
            threads=settings.sandbox_threads,
        )
