"""The preprocessing a student declares for a checkpoint: parsing and canonical form (no torch needed).

A canonical spec is a small JSON-ready dict: `{"kind": "none"}`, `{"kind": "scale"}`,
`{"kind": "mean_std", "mean": [r, g, b], "std": [r, g, b]}` (values on the 0–1 scale, applied after ÷255),
`{"kind": "per_image_standardization"}` or `{"kind": "per_channel_standardization"}`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from grader.errors import InvalidAnswer

KINDS: dict[str, str] = {
    "none": "raw pixel values 0–255 as floats",
    "scale": "pixels ÷ 255",
    "mean_std": "pixels ÷ 255, then per channel (x − mean) / std",
    "per_image_standardization": "per image, over all pixels and channels: (x − mean) / max(std, 1/√3072)",
    "per_channel_standardization": "per image and channel: (x − mean) / max(std, 1/√1024)",
}
PARAMETER_FREE = frozenset(KINDS) - {"mean_std"}

DEFAULT_PREPROCESSING: dict[str, Any] = {"kind": "per_image_standardization"}
"""Used when a sheet declares nothing: the course starter code's `preprocess_image` asks for per-image
standardisation ("subtract off the mean and divide by the standard deviation of the pixels")."""

_ALIASES = {
    "raw": "none",
    "divide_255": "scale",
    "normalize": "mean_std",
    "per_image": "per_image_standardization",
    "per_image_standardisation": "per_image_standardization",
    "per_channel": "per_channel_standardization",
    "per_channel_standardisation": "per_channel_standardization",
}


def preprocessing_path(label: str) -> str:
    """Where the sheet declares the preprocessing for checkpoint `label` ("v1", "v2")."""
    return f"q1.{label}_preprocessing"


def read_preprocessing(sheet: Mapping[str, Any], label: str) -> dict[str, Any]:
    """The canonical spec declared at `q1.<label>_preprocessing`, or DEFAULT_PREPROCESSING when absent."""
    declared = declared_preprocessing(sheet, label)
    if declared is None:
        return dict(DEFAULT_PREPROCESSING)
    return normalize_preprocessing(declared, where=preprocessing_path(label))


def evaluation_preprocessing(sheet: Mapping[str, Any], label: str) -> dict[str, Any]:
    """The spec checkpoint `label` is evaluated with: the declared one, else DEFAULT_PREPROCESSING, also when
    the declaration cannot be used. The architecture part is judged from the weights alone, so a bad declaration
    must not keep a checkpoint from being evaluated; the accuracy feedback names the problem."""
    try:
        return read_preprocessing(sheet, label)
    except InvalidAnswer:
        return dict(DEFAULT_PREPROCESSING)


def preprocessing_problem(sheet: Mapping[str, Any], label: str) -> str | None:
    """Why the declaration at `q1.<label>_preprocessing` cannot be used, or None when it is absent or usable."""
    try:
        read_preprocessing(sheet, label)
    except InvalidAnswer as exc:
        return exc.message
    return None


def declared_preprocessing(sheet: Mapping[str, Any], label: str) -> Any:
    """The raw declaration in the sheet, or None when the sheet has none."""
    q1 = sheet.get("q1")
    if not isinstance(q1, Mapping):
        return None
    value = q1.get(f"{label}_preprocessing")
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return value


def normalize_preprocessing(value: Any, *, where: str = "preprocessing") -> dict[str, Any]:
    """Canonical spec from a string kind or a mapping; raises InvalidAnswer saying what was expected."""
    if isinstance(value, str):
        return _from_kind(_kind(value, where), {}, where)
    if isinstance(value, Mapping):
        if "kind" not in value:
            raise InvalidAnswer(f"{where}: missing 'kind'; expected one of {_kinds_text()}")
        extra = sorted(str(key) for key in value if key not in ("kind", "mean", "std"))
        if extra:
            raise InvalidAnswer(f"{where}: unexpected keys {extra}; allowed: kind, mean, std")
        return _from_kind(_kind(value["kind"], where), value, where)
    raise InvalidAnswer(
        f"{where}: expected a kind ({_kinds_text()}) or a mapping like "
        "{kind: mean_std, mean: [r, g, b], std: [r, g, b]}"
    )


def describe_preprocessing(spec: Mapping[str, Any]) -> str:
    """One line for feedback, e.g. "mean_std (mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225])"."""
    if spec["kind"] == "mean_std":
        return f"mean_std (mean {list(spec['mean'])}, std {list(spec['std'])})"
    return str(spec["kind"])


def _kind(raw: Any, where: str) -> str:
    if not isinstance(raw, str):
        raise InvalidAnswer(f"{where}: 'kind' must be text, one of {_kinds_text()}")
    kind = raw.strip().lower().replace("-", "_").replace(" ", "_")
    kind = _ALIASES.get(kind, kind)
    if kind not in KINDS:
        raise InvalidAnswer(f"{where}: unknown preprocessing {raw!r}; expected one of {_kinds_text()}")
    return kind


def _from_kind(kind: str, value: Mapping[str, Any], where: str) -> dict[str, Any]:
    if kind in PARAMETER_FREE:
        if "mean" in value or "std" in value:
            raise InvalidAnswer(f"{where}: {kind} takes no mean/std; use kind mean_std to give them")
        return {"kind": kind}
    if "mean" not in value or "std" not in value:
        raise InvalidAnswer(f"{where}: mean_std needs 'mean' and 'std', three numbers each (R, G, B)")
    mean = _triple(value["mean"], f"{where}.mean")
    std = _triple(value["std"], f"{where}.std")
    if any(s <= 0 for s in std):
        raise InvalidAnswer(f"{where}.std: every value must be positive, got {std}")
    # Values above 1 can only be on the 0–255 scale (e.g. mean 125.3, std 63.0): store them ÷255 so
    # (x/255 − m/255)/(s/255) = (x − m)/s, i.e. the student's own arithmetic on raw pixels.
    if max(mean + std) > 1.0:
        mean, std = [m / 255.0 for m in mean], [s / 255.0 for s in std]
    return {"kind": "mean_std", "mean": mean, "std": std}


def _triple(raw: Any, where: str) -> list[float]:
    if isinstance(raw, str | bytes) or not isinstance(raw, list | tuple) or len(raw) != 3:
        raise InvalidAnswer(f"{where}: expected a list of three numbers (R, G, B), got {raw!r}")
    values: list[float] = []
    for item in raw:
        if isinstance(item, bool) or not isinstance(item, int | float) or not math.isfinite(item):
            raise InvalidAnswer(f"{where}: {item!r} is not a finite number")
        values.append(float(item))
    return values


def _kinds_text() -> str:
    return ", ".join(KINDS)
