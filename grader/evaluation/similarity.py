"""Comparing checkpoints' weights without loading them: per-artifact summaries and the correlations between them.

A summary (made once per checkpoint by grader/evaluation/fingerprint_child.py, inside a sandboxed child) holds:
- `tensors_sha256`: a hash over every tensor's (prefix-stripped) name, dtype, shape and raw bytes, in sorted name
  order, so the same weights re-saved in another format, container or key order hash alike;
- per weight tensor (floating, two or more dimensions: conv and linear weights), its values centred on their mean
  and reduced to a unit vector of SKETCH_SIZE numbers: the values themselves (zero-padded) when the tensor has at
  most that many, else a count sketch (each position adds its value, with a sign, to one of SKETCH_SIZE buckets,
  both chosen by a fixed hash of the position). The dot product of two such vectors is then the Pearson
  correlation of the two tensors: exact for small tensors, within about 1/sqrt(SKETCH_SIZE) = 0.044 for larger
  ones, and exactly 1 for identical weights.

Weights trained from different random starts are uncorrelated position by position (hidden units can come out
in any order), so the median over layers is near 0; a checkpoint fine-tuned from another keeps most of each
weight, and its median stays near 1. This module needs numpy only: the API's process compares, never parses.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

SIMILARITY_VERSION = "1"
"""Bump when a summary's meaning changes (the hash, the sketch); cached summaries of another version are redone."""
SKETCH_SIZE = 512
HASH_PRIME = 2**31 - 1
BUCKET_HASH = (1_103_515_245, 12_345)
SIGN_HASH = (1_664_525, 1_013_904_223)
"""(a, b) of ((a * position + b) mod HASH_PRIME): fixed, so every process sketches a position alike."""
MAX_LAYERS = 4096
MAX_NAME = 300
MAX_DIMS = 8
SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Layer:
    shape: tuple[int, ...]
    vector: np.ndarray
    """float32 [SKETCH_SIZE], unit length."""


@dataclass(frozen=True, slots=True)
class WeightSummary:
    tensors_sha256: str
    layers: dict[str, Layer]

    def to_json(self) -> dict[str, Any]:
        return {
            "status": "summarized",
            "tensors_sha256": self.tensors_sha256,
            "layers": [
                {"name": name, "shape": list(layer.shape), "sketch": encode_vector(layer.vector)}
                for name, layer in self.layers.items()
            ],
        }

    @classmethod
    def from_json(cls, value: Any) -> WeightSummary:
        """A summary from JSON a sandboxed child (or the cache) wrote; ValueError when it is malformed."""
        if not isinstance(value, Mapping) or value.get("status") != "summarized":
            raise ValueError("not a summary")
        digest = value.get("tensors_sha256")
        if not isinstance(digest, str) or not SHA256.fullmatch(digest):
            raise ValueError("tensors_sha256 is not a sha256 hex digest")
        raw = value.get("layers")
        if not isinstance(raw, list) or len(raw) > MAX_LAYERS:
            raise ValueError(f"layers is not a list of at most {MAX_LAYERS}")
        layers: dict[str, Layer] = {}
        for entry in raw:
            if not isinstance(entry, Mapping):
                raise ValueError("a layer is not a mapping")
            name, shape = entry.get("name"), entry.get("shape")
            if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME or name in layers:
                raise ValueError("a layer name is missing, too long or repeated")
            if not isinstance(shape, list) or not 2 <= len(shape) <= MAX_DIMS:
                raise ValueError(f"layer {name!r} has no valid shape")
            if not all(type(n) is int and 0 < n < 2**31 for n in shape):
                raise ValueError(f"layer {name!r} has no valid shape")
            layers[name] = Layer(tuple(shape), decode_vector(entry.get("sketch")))
        return cls(digest, layers)


def encode_vector(vector: np.ndarray) -> str:
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def decode_vector(text: Any) -> np.ndarray:
    """A unit vector of SKETCH_SIZE float32 from base64; ValueError when it is anything else."""
    if not isinstance(text, str) or len(text) > 8 * SKETCH_SIZE:
        raise ValueError("a sketch is not base64 text")
    try:
        data = base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise ValueError("a sketch is not base64 text") from exc
    if len(data) != 4 * SKETCH_SIZE:
        raise ValueError(f"a sketch does not hold {SKETCH_SIZE} float32")
    vector = np.frombuffer(data, dtype="<f4").astype(np.float32)
    norm = float(np.linalg.norm(vector))
    if not math.isfinite(norm) or abs(norm - 1.0) > 1e-3:
        raise ValueError("a sketch is not a unit vector")
    return vector / norm


@dataclass(frozen=True, slots=True)
class Correlation:
    """Two summaries' per-layer Pearson correlations over the weight tensors they share (same name and shape)."""

    layers: dict[str, float]

    @property
    def median(self) -> float:
        return float(np.median(list(self.layers.values())))

    def describe(self, *, digits: int = 3) -> dict[str, Any]:
        values = np.array(list(self.layers.values()))
        return {
            "median": round(self.median, digits),
            "mean": round(float(values.mean()), digits),
            "min": round(float(values.min()), digits),
            "max": round(float(values.max()), digits),
            "layers": len(values),
        }


def correlate(first: WeightSummary, second: WeightSummary) -> Correlation:
    """Per-layer correlations of two summaries, in the first's layer order (empty when they share no layer)."""
    shared = _shared(first, second)
    return Correlation(
        {name: float(np.clip(first.layers[name].vector @ second.layers[name].vector, -1, 1)) for name in shared}
    )


def correlated_pairs(
    summaries: Mapping[str, WeightSummary], *, threshold: float, min_layers: int
) -> list[tuple[str, str, float]]:
    """(key, key, median correlation) of every two summaries whose median over their shared layers (at least
    `min_layers`) reaches `threshold`; each pair once, in the order of `summaries`.

    Summaries are grouped by their set of layers (students' architectures), and two groups are compared over the
    layers they share, a block of rows at a time: one matrix product per layer instead of a loop over pairs."""
    keys = list(summaries)
    groups: dict[frozenset[tuple[str, tuple[int, ...]]], list[int]] = {}
    for index, key in enumerate(keys):
        signature = frozenset((name, layer.shape) for name, layer in summaries[key].layers.items())
        groups.setdefault(signature, []).append(index)
    ordered = list(groups.items())
    found: list[tuple[str, str, float]] = []
    for g, (first_signature, first_rows) in enumerate(ordered):
        for second_signature, second_rows in ordered[g:]:
            shared = sorted(name for name, _ in first_signature & second_signature)
            if len(shared) < min_layers:
                continue
            same = first_signature == second_signature
            found += _group_pairs(summaries, keys, first_rows, second_rows, shared, same, threshold)
    position = {key: index for index, key in enumerate(keys)}
    return sorted(found, key=lambda pair: (position[pair[0]], position[pair[1]]))


def _group_pairs(
    summaries: Mapping[str, WeightSummary],
    keys: Sequence[str],
    first_rows: Sequence[int],
    second_rows: Sequence[int],
    shared: Sequence[str],
    same: bool,
    threshold: float,
) -> Iterable[tuple[str, str, float]]:
    second = _stack(summaries, keys, second_rows, shared)  # [layers, rows, SKETCH_SIZE]
    block = max(1, 4_000_000 // max(1, len(shared) * len(second_rows)))  # about 16 MB of correlations at a time
    for start in range(0, len(first_rows), block):
        rows = first_rows[start : start + block]
        first = _stack(summaries, keys, rows, shared)
        medians = np.median(np.einsum("lid,ljd->ijl", first, second), axis=2)
        for i, j in zip(*np.nonzero(medians >= threshold), strict=True):
            a, b = rows[i], second_rows[j]
            if not same or a < b:
                yield keys[min(a, b)], keys[max(a, b)], float(medians[i, j])


def _stack(
    summaries: Mapping[str, WeightSummary], keys: Sequence[str], rows: Sequence[int], shared: Sequence[str]
) -> np.ndarray:
    return np.stack([np.stack([summaries[keys[row]].layers[name].vector for row in rows]) for name in shared])


def _shared(first: WeightSummary, second: WeightSummary) -> list[str]:
    return [
        name
        for name, layer in first.layers.items()
        if name in second.layers and second.layers[name].shape == layer.shape
    ]
