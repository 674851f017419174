"""The evaluator's version and the key under which callers cache an evaluation result (no torch needed)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from grader.evaluation.preprocessing import normalize_preprocessing

EVALUATOR_VERSION = "q1-eval-1"
"""Bump when a change could alter a result (reader, mapping, forward pass, scoring of variants)."""


def evaluation_cache_key(
    checkpoint_sha256: str, preprocessing: Mapping[str, Any] | str, label: str | None = None
) -> str:
    """sha256 over canonical JSON of (evaluator version, checkpoint hash, canonical preprocessing, label)."""
    payload = {
        "evaluator_version": EVALUATOR_VERSION,
        "checkpoint_sha256": checkpoint_sha256.lower(),
        "preprocessing": normalize_preprocessing(preprocessing),
        "label": label,
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()
