"""What the Q1 code checks share: a check's verdict, reading the harness's arrays back (checked and bounded), the
statistical tests, and a tiny PNG for evidence. numpy and the standard library only."""

from __future__ import annotations

import base64
import math
import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

CORRECT, PARTIAL, INCORRECT = "correct", "partial", "incorrect"
VERDICTS = (CORRECT, PARTIAL, INCORRECT)
MAX_DECODED_VALUES = 4_000_000


@dataclass(frozen=True, slots=True)
class Verdict:
    """One check's outcome: `summary` says in the student's terms what their code did and, if wrong, what to change."""

    verdict: str
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "summary": self.summary, "evidence": self.evidence}


def worst(verdicts: Sequence[str]) -> str:
    return max(verdicts, key=VERDICTS.index) if verdicts else CORRECT


class Unreadable(Exception):
    """An output of the harness is not what the grader asked for (malformed, over a bound): says so to the student."""


def decode_array(entry: Any, what: str, *, max_values: int = MAX_DECODED_VALUES) -> np.ndarray:
    """An array the harness sent ({"shape", "dtype", "data": base64 float64}), checked; Unreadable says why not."""
    if not isinstance(entry, Mapping):
        raise Unreadable(f"{what}: nothing came back")
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape) or len(shape) > 8:
        raise Unreadable(f"{what}: no array shape came back")
    count = math.prod(shape)
    if count > max_values or not isinstance(entry.get("data"), str):
        raise Unreadable(f"{what} has shape {tuple(shape)}: too large to compare, or not numbers")
    try:
        raw = base64.b64decode(entry["data"], validate=True)
    except ValueError as exc:
        raise Unreadable(f"{what}: the values could not be read") from exc
    if len(raw) != count * 8:
        raise Unreadable(f"{what}: the values could not be read")
    return np.frombuffer(raw, dtype="<f8").astype(np.float64).reshape(shape)


def shape_of(entry: Any) -> tuple[int, ...] | None:
    shape = entry.get("shape") if isinstance(entry, Mapping) else None
    return tuple(shape) if isinstance(shape, list) and all(type(n) is int for n in shape) else None


def dtype_of(entry: Any) -> str:
    dtype = entry.get("dtype") if isinstance(entry, Mapping) else None
    return str(dtype)[:40] if dtype is not None else "?"


def name_shapes(entries: Any, limit: int = 4000) -> dict[str, tuple[int, ...]]:
    """[[name, shape], ...] as the harness reports a state_dict or parameters: the well-formed entries only."""
    shapes: dict[str, tuple[int, ...]] = {}
    for entry in entries[:limit] if isinstance(entries, list) else []:
        if (
            isinstance(entry, list)
            and len(entry) == 2
            and isinstance(entry[0], str)
            and isinstance(entry[1], list)
            and all(type(n) is int and n >= 0 for n in entry[1])
        ):
            shapes[entry[0][:300]] = tuple(entry[1])
    return shapes


def student_error(value: Any) -> str | None:
    """The error the harness reported for a step ({"error": {"stage", "message"}}), as one line, or None."""
    error = value.get("error") if isinstance(value, Mapping) else None
    if not isinstance(error, Mapping):
        return None
    stage, message = str(error.get("stage", ""))[:300], str(error.get("message", ""))[:1500]
    if error.get("kind") == "timed_out":
        return f"{stage} {message}".strip()
    return f"while {stage}: {message}" if stage else message


# ---------------------------------------------------------------------------------------------- statistics


def chi_square_uniform(counts: Sequence[int]) -> tuple[float, float]:
    """(statistic, p-value) of Pearson's test that `counts` come from a uniform distribution over its cells."""
    total, cells = sum(counts), len(counts)
    if total == 0 or cells < 2:
        return 0.0, 1.0
    expected = total / cells
    statistic = sum((c - expected) ** 2 / expected for c in counts)
    return statistic, chi_square_sf(statistic, cells - 1)


def chi_square_sf(x: float, df: int) -> float:
    """P(X ≥ x) for X ~ χ²(df), exactly (the closed forms for even and for odd degrees of freedom)."""
    if x <= 0:
        return 1.0
    half = x / 2
    if df % 2 == 0:
        term, total = 1.0, 1.0
        for i in range(1, df // 2):
            term *= half / i
            total += term
        return min(1.0, math.exp(-half) * total)
    term = math.sqrt(2 * x / math.pi)
    total = 0.0
    for i in range(df // 2):
        total += term
        term *= x / (2 * i + 3)
    return min(1.0, math.erfc(math.sqrt(half)) + math.exp(-half) * total)


def binomial_two_sided(successes: int, trials: int, p: float) -> float:
    """Exact two-sided p-value: the probability of outcomes no more likely than the one seen."""
    if trials == 0:
        return 1.0

    def log_pmf(k: int) -> float:
        if p in (0.0, 1.0):
            return 0.0 if k == (trials if p == 1.0 else 0) else -math.inf
        return (
            math.lgamma(trials + 1)
            - math.lgamma(k + 1)
            - math.lgamma(trials - k + 1)
            + k * math.log(p)
            + (trials - k) * math.log(1 - p)
        )

    seen = log_pmf(successes)
    total = sum(math.exp(log_pmf(k)) for k in range(trials + 1) if log_pmf(k) <= seen + 1e-9)
    return min(1.0, total)


# ---------------------------------------------------------------------------------------------- pictures


def png_data_url(pixels: np.ndarray) -> str:
    """A uint8 [height, width, 3] image as a `data:image/png;base64,...` URL (a few KB for a 32 px picture)."""
    height, width, _ = pixels.shape
    rows = b"".join(b"\x00" + np.ascontiguousarray(pixels[y], dtype=np.uint8).tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def side_by_side(*images: np.ndarray, scale: int = 3, gap: int = 2) -> np.ndarray:
    """[height, width, 3] images (any range: each is stretched to 0–255) next to each other, enlarged `scale`×."""
    shown = []
    for image in images:
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        stretched = (values - low) / (high - low) * 255 if high > low else np.zeros_like(values)
        shown.append(np.kron(stretched, np.ones((scale, scale, 1))).round().astype(np.uint8))
    spacer = np.full((shown[0].shape[0], gap * scale, 3), 255, dtype=np.uint8)
    parts: list[np.ndarray] = []
    for image in shown:
        parts += [image, spacer]
    return np.concatenate(parts[:-1], axis=1)
