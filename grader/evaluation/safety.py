"""Refusing to load untrusted checkpoints with a torch whose weights-only loader is known to be bypassable."""

from __future__ import annotations

import re
from importlib import metadata

from grader.errors import InfrastructureError

MINIMUM_TORCH = (2, 10)
"""Below this, `torch.load(weights_only=True)` has public bypasses (CVE-2025-32434, CVE-2026-24747)."""


def parse_version(text: str) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", text)
    if match is None:
        raise InfrastructureError(f"cannot read the torch version {text!r}")
    return int(match.group(1)), int(match.group(2))


def require_safe_torch(version: str | None = None) -> str:
    """The installed torch version, or InfrastructureError when it is too old to load untrusted files."""
    try:
        installed = version or metadata.version("torch")
    except metadata.PackageNotFoundError as exc:
        raise InfrastructureError("torch is not installed; Q1 checkpoints cannot be evaluated") from exc
    if parse_version(installed) < MINIMUM_TORCH:
        wanted = ".".join(map(str, MINIMUM_TORCH))
        raise InfrastructureError(
            f"torch {installed} is too old to load untrusted checkpoints safely: its weights-only loader can be "
            f"bypassed (CVE-2025-32434, CVE-2026-24747); install torch >= {wanted}"
        )
    return installed
