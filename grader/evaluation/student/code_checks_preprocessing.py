"""Q1(b) code checks: the student's `parse_record` and `preprocess_image` against the grader's reference behaviour.

- parse_record(record, False) must give the [3, 32, 32] image the record holds (a CIFAR-10 row is depth-major:
  1024 red values, then green, then blue), standardised by one of the known kinds (grader/evaluation/transforms.py).
  When it does not, the known layout mistakes are tried (reshape to [32, 32, 3] without the transpose, height and
  width swapped, ...) so the feedback can name the one made; the evidence carries a reference-vs-theirs picture.
- preprocess_image(image, True), called once per random seed: every output must be a 32×32 window of the image
  padded by 4 pixels per side, possibly flipped left-right (identified per output: 81 offsets × flips), with each
  offset and both flip states at plausible frequencies. Four tests, each at a quarter of the stated false-alarm
  rate (Bonferroni): χ² for the vertical and the horizontal offset (uniform over 0..8), a binomial test that the two
  offsets are not tied together (equal with probability 1/9) and a binomial test of the flip (probability ½).
- preprocess_image(image, False) must be deterministic and standardise (the kind is identified), and training
  outputs must be standardised the same way as test outputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from grader.evaluation.preprocessing import describe_preprocessing
from grader.evaluation.student.code_checks_common import (
    CORRECT,
    INCORRECT,
    PARTIAL,
    Unreadable,
    Verdict,
    binomial_two_sided,
    chi_square_uniform,
    decode_array,
    png_data_url,
    side_by_side,
    student_error,
)
from grader.evaluation.transforms import Preprocess, identify_preprocessing

PAD = 4
OFFSETS = 2 * PAD + 1
CENTRE = slice(PAD, 32 - PAD)
"""Output rows/columns that come from image pixels whatever the window: where windows are identified."""
MATCH_CORRELATION = 0.999
TOLERANCE = 1e-3
"""Largest difference, relative to the output's scale, between an output and the reference it is said to equal."""
FLIPS = {"none": (False, False), "horizontal": (False, True), "vertical": (True, False), "both": (True, True)}
PAD_MODES = ("constant", "reflect", "symmetric", "edge")
STANDARDISING = frozenset({"per_image_standardization", "per_channel_standardization", "mean_std"})

LAYOUTS: dict[str, tuple[Any, str]] = {
    "reshape_hwc": (
        lambda r: r.reshape(-1, 32, 32, 3).transpose(0, 3, 1, 2),
        "your output is the record reshaped straight to [32, 32, 3] (height, width, depth). A CIFAR-10 row is "
        "depth-major (1024 red values, then 1024 green, then 1024 blue): reshape it to [3, 32, 32] first, then "
        "transpose to [32, 32, 3] with np.transpose(image, [1, 2, 0])",
    ),
    "height_width_swapped": (
        lambda r: r.reshape(-1, 3, 32, 32).transpose(0, 1, 3, 2),
        "your output has height and width swapped (the picture is mirrored along its diagonal): transpose "
        "[3, 32, 32] to [32, 32, 3] with the axes [1, 2, 0], and back with [2, 0, 1]",
    ),
    "reshape_back": (
        lambda r: r.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).reshape(-1, 3, 32, 32),
        "your output is the [32, 32, 3] image reshaped to [3, 32, 32]: a reshape keeps the memory order, so the "
        "pixels are scrambled; turn [32, 32, 3] back into [3, 32, 32] with np.transpose(image, [2, 0, 1])",
    ),
}
"""Layout mistakes: what each one makes of a batch of records [N, 3, 32, 32], and what to tell the student."""


def picture() -> np.ndarray:
    """A structured probe (uint8 [3, 32, 32]): ramps and a disc, so a scrambled layout shows in the evidence."""
    y, x = np.mgrid[0:32, 0:32]
    red = 40 + x * 6
    green = 30 + y * 5
    blue = np.where((x - 10) ** 2 + (y - 12) ** 2 < 49, 230, 20 + (x + y) * 2)
    return np.stack([red, green, blue]).clip(0, 255).astype(np.uint8)


def judge_parse_record(outputs: Any, probes: np.ndarray, *, function: str) -> tuple[Verdict, dict[str, Any] | None]:
    """(verdict, the preprocessing kind found) for parse_record(record, False) on the probe records [N, 3, 32, 32]."""
    error = student_error(outputs)
    if error is not None:
        return Verdict(INCORRECT, f"{function} failed {error}"), None
    try:
        first, again = _pair(outputs, function, probes.shape[0])
    except Unreadable as exc:
        return Verdict(INCORRECT, str(exc)), None
    shape = first.shape[1:]
    if shape != (3, 32, 32):
        hint = (
            ": the final transpose back to [3, 32, 32] (depth, height, width) is missing"
            if shape == (32, 32, 3)
            else ""
        )
        return Verdict(INCORRECT, f"{function} returned arrays of shape {shape}; expected (3, 32, 32){hint}."), None
    if not np.isfinite(first).all():
        return Verdict(INCORRECT, f"{function} returned values that are not finite numbers (NaN or infinity)."), None
    if not np.array_equal(first, again):
        return Verdict(
            INCORRECT,
            f"{function} is not deterministic: two calls on the same record gave different images. With "
            "training=False nothing random may happen (crop and flip only when training).",
        ), None
    images, returned = torch.from_numpy(probes), torch.from_numpy(first.astype(np.float32))
    spec, why = identify_preprocessing(images, returned)
    if spec is not None:
        difference = _difference(Preprocess(spec, images.device)(images).numpy(), first)
        summary = (
            f"{function} gives the [3, 32, 32] image each record holds, preprocessed as "
            f"{describe_preprocessing(spec)} (largest difference from the reference {difference:.2g})."
        )
        return Verdict(CORRECT, summary, {"preprocessing": spec}), spec
    evidence = {"picture": _picture(probes[0], first[0]), "picture_shows": "reference | yours (probe 0, stretched)"}
    for name, (layout, explanation) in LAYOUTS.items():
        laid_out = torch.from_numpy(np.ascontiguousarray(layout(probes)))
        found, _ = identify_preprocessing(laid_out, returned)
        if found is not None:
            evidence |= {"layout_mistake": name, "preprocessing": found}
            return Verdict(INCORRECT, f"{function} scrambles the pixels: {explanation}.", evidence), found
    return Verdict(INCORRECT, f"{function}'s output is not the record's image preprocessed: {why}.", evidence), None


def judge_test_time(
    outputs: Any, probes: np.ndarray, layout: str, *, function: str
) -> tuple[dict[str, Any] | None, str]:
    """The kind preprocess_image(image, False) applies to the probe images, or (None, why not)."""
    error = student_error(outputs)
    if error is not None:
        return None, f"{function} failed {error}"
    try:
        first, again = _pair(outputs, function, probes.shape[0])
    except Unreadable as exc:
        return None, str(exc)
    if layout == "hwc" and first.ndim == 4:
        first, again = first.transpose(0, 3, 1, 2), again.transpose(0, 3, 1, 2)
    if not np.array_equal(first, again):
        return None, f"{function} is not deterministic: two calls on the same image gave different results"
    spec, why = identify_preprocessing(torch.from_numpy(probes), torch.from_numpy(first.astype(np.float32)))
    return spec, "" if spec is not None else f"{function}: {why}"


@dataclass(frozen=True, slots=True)
class Window:
    """Which window of the padded image one augmented output is, and how its values relate to the image's."""

    dy: int
    dx: int
    flip: str
    channels_reversed: bool
    pad_mode: str
    """constant, reflect, symmetric, edge, or none (the window holds no padding)."""
    pad_values: tuple[float, ...] | None
    """Constant mode: the padding's value per channel, in output units."""
    slope: tuple[float, ...]
    intercept: tuple[float, ...]


def identify_windows(outputs: np.ndarray, image: np.ndarray) -> tuple[list[Window | None], list[float]]:
    """Per output [S, 32, 32, 3], the window of `image` (uint8 [32, 32, 3]) it is or None; and the best correlation."""
    candidates, meta = _central_candidates(image.astype(np.float64))
    centre = outputs[:, CENTRE, CENTRE, :]
    score = np.zeros((outputs.shape[0], candidates.shape[0]))
    for channel in range(3):
        score += _normalised(centre[..., channel]) @ _normalised(candidates[..., channel]).T / 3
    best = score.argmax(axis=1)
    windows: list[Window | None] = []
    for index, choice in enumerate(best):
        found = None
        if score[index, choice] >= MATCH_CORRELATION:
            found = _verify(outputs[index], image.astype(np.float64), *meta[choice])
        windows.append(found)
    return windows, [float(score[i, b]) for i, b in enumerate(best)]


def _central_candidates(image: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, str, bool]]]:
    padded = np.pad(image, ((PAD, PAD), (PAD, PAD), (0, 0)))
    patches, meta = [], []
    for dy in range(OFFSETS):
        for dx in range(OFFSETS):
            window = padded[dy : dy + 32, dx : dx + 32]
            for flip in FLIPS:
                flipped = _flip(window, flip)[CENTRE, CENTRE]
                for reverse in (False, True):
                    patches.append(flipped[..., ::-1] if reverse else flipped)
                    meta.append((dy, dx, flip, reverse))
    return np.stack(patches), meta


def _flip(window: np.ndarray, flip: str) -> np.ndarray:
    vertical, horizontal = FLIPS[flip]
    if vertical:
        window = window[::-1]
    return window[:, ::-1] if horizontal else window


def _normalised(values: np.ndarray) -> np.ndarray:
    flat = values.reshape(values.shape[0], -1)
    centred = flat - flat.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    return np.divide(centred, norms, out=np.zeros_like(centred), where=norms > 0)


def _verify(output: np.ndarray, image: np.ndarray, dy: int, dx: int, flip: str, reverse: bool) -> Window | None:
    """The whole output against the window under each padding mode: per channel an exact affine image of it."""
    scale = max(1.0, float(np.abs(output).max()))
    inside = np.zeros((32 + 2 * PAD, 32 + 2 * PAD), dtype=bool)
    inside[PAD:-PAD, PAD:-PAD] = True
    mask = _flip(inside[dy : dy + 32, dx : dx + 32, None], flip)[..., 0]
    for mode in PAD_MODES if not mask.all() else ("none",):
        padded = np.pad(image, ((PAD, PAD), (PAD, PAD), (0, 0)), mode="constant" if mode == "none" else mode)
        window = _flip(padded[dy : dy + 32, dx : dx + 32], flip)
        window = window[..., ::-1] if reverse else window
        fit_on = mask if mode in ("constant", "none") else np.ones_like(mask)
        slope, intercept, pads, ok = [], [], [], True
        for channel in range(3):
            x, y = window[..., channel][fit_on], output[..., channel][fit_on]
            a, b = np.polyfit(x, y, 1) if np.ptp(x) > 0 else (0.0, float(y.mean()))
            ok &= float(np.abs(a * x + b - y).max()) <= TOLERANCE * scale
            if mode == "constant":
                border = output[..., channel][~mask]
                ok &= float(np.ptp(border)) <= TOLERANCE * scale
                pads.append(float(border.mean()))
            slope.append(float(a))
            intercept.append(float(b))
        if ok:
            return Window(dy, dx, flip, reverse, mode, tuple(pads) if pads else None, tuple(slope), tuple(intercept))
    return None


@dataclass(frozen=True, slots=True)
class Augmentation:
    """The crop and flip verdicts and what the standardisation check needs of the training outputs."""

    crop: Verdict
    flip: Verdict
    train_kind: str | None = None
    """The preprocessing kind training outputs follow when it differs from the test-time kind (None: same/unknown)."""
    train_consistent: bool | None = None


def judge_augmentation(
    outputs: Any,
    image: np.ndarray,
    layout: str,
    seeds: list[int],
    *,
    test_kind: dict[str, Any] | None,
    false_alarm_rate: float,
    function: str,
) -> Augmentation:
    """Crop and flip verdicts for `function`(image, True) called once per seed on `image` (uint8 [32, 32, 3])."""
    error = student_error(outputs)
    if error is not None:
        failed = Verdict(INCORRECT, f"{function} failed {error}")
        return Augmentation(failed, failed)
    shapes = outputs.get("shapes") if isinstance(outputs, Mapping) else None
    if isinstance(shapes, list):
        verdict = Verdict(INCORRECT, _shapes_text(function, shapes, layout), {"shapes": shapes[:8]})
        return Augmentation(verdict, _not_checked(function))
    try:
        returned = decode_array(outputs, function)
    except Unreadable as exc:
        return Augmentation(Verdict(INCORRECT, str(exc)), _not_checked(function))
    expected = (len(seeds), 32, 32, 3) if layout == "hwc" else (len(seeds), 3, 32, 32)
    if returned.shape != expected:
        verdict = Verdict(INCORRECT, _shapes_text(function, [list(returned.shape[1:])], layout))
        return Augmentation(verdict, _not_checked(function))
    if layout == "chw":
        returned = returned.transpose(0, 2, 3, 1)
    if not np.isfinite(returned).all():
        verdict = Verdict(INCORRECT, f"{function} returned values that are not finite numbers (NaN or infinity).")
        return Augmentation(verdict, _not_checked(function))
    windows, correlations = identify_windows(returned, image)
    matched = [w for w in windows if w is not None]
    evidence = {"calls": len(seeds), "seeds": seeds[:8], "layout": layout}
    unmatched = [i for i, w in enumerate(windows) if w is None]
    if unmatched:
        first = unmatched[0]
        text = (
            f"{len(unmatched)} of {len(seeds)} outputs of {function} are no 32×32 window of the image padded by "
            f"{PAD} pixels per side, flipped or not (e.g. call {first + 1}, seed {seeds[first]}: best correlation "
            f"with any window {correlations[first]:.3f})."
        )
        if not matched:
            picture = png_data_url(side_by_side(image, returned[first]))
            evidence |= {"picture": picture, "picture_shows": "input | output of one call (stretched)"}
            return Augmentation(Verdict(INCORRECT, text, evidence), _not_checked(function))
        crop = Verdict(INCORRECT, text, evidence)
    else:
        crop = _crop_verdict(matched, false_alarm_rate, evidence, function)
    flip = _flip_verdict(matched, false_alarm_rate, function)
    consistent, train_kind = _standardised_alike(matched[:16], returned, windows, image, test_kind)
    return Augmentation(crop, flip, train_kind, consistent)


def _not_checked(function: str) -> Verdict:
    return Verdict(INCORRECT, f"The flip could not be checked: {function}'s outputs are no windows of the image.")


def _shapes_text(function: str, shapes: list[Any], layout: str) -> str:
    want = [32, 32, 3] if layout == "hwc" else [3, 32, 32]
    distinct = [list(s) for s in dict.fromkeys(tuple(s) for s in shapes)][:4]
    padded = [want[0] + 2 * PAD, want[1] + 2 * PAD, 3] if layout == "hwc" else [3, 40, 40]
    if distinct == [padded]:
        return f"{function}(image, True) returned the padded image {padded} itself: the random 32×32 crop is missing."
    spatial = [s for s in distinct if len(s) == 3]
    if (
        spatial
        and all(max(s) <= 32 for s in spatial)
        and any(min(s[:2] if layout == "hwc" else s[1:]) < 32 for s in spatial)
    ):
        return (
            f"{function}(image, True) returned smaller images {distinct}: the crop runs past the edge of the "
            f"unpadded image. Pad {PAD} pixels per side first, e.g. np.pad(image, ((4, 4), (4, 4), (0, 0)))."
        )
    return f"{function}(image, True) returned arrays of shapes {distinct}; expected {want} every time."


def _crop_verdict(matched: list[Window], alpha: float, evidence: dict[str, Any], function: str) -> Verdict:
    n = len(matched)
    rows = [sum(1 for w in matched if w.dy == k) for k in range(OFFSETS)]
    columns = [sum(1 for w in matched if w.dx == k) for k in range(OFFSETS)]
    tied = sum(1 for w in matched if w.dy == w.dx)
    _, p_rows = chi_square_uniform(rows)
    _, p_columns = chi_square_uniform(columns)
    p_tied = binomial_two_sided(tied, n, 1 / OFFSETS)
    modes = sorted({w.pad_mode for w in matched} - {"none"})
    evidence = evidence | {
        "vertical_offsets": rows,
        "horizontal_offsets": columns,
        "equal_offsets": tied,
        "p_values": {"vertical": p_rows, "horizontal": p_columns, "equal": p_tied},
        "false_alarm_rate": alpha,
        "padding": modes or ["not seen"],
        "padding_values": _pad_values(matched),
    }
    positions = {(w.dy, w.dx) for w in matched}
    if len(positions) == 1:
        dy, dx = positions.pop()
        which = "the image itself (no padding, no crop)" if (dy, dx) == (PAD, PAD) else f"the window at ({dy}, {dx})"
        return Verdict(
            INCORRECT,
            f"Every one of {n} calls returned {which}: the crop position is never random. Pad {PAD} pixels per side "
            f"and take a 32×32 window at a random corner (0..{2 * PAD} in each direction).",
            evidence,
        )
    limit = alpha / 4
    problems = []
    for name, counts, p in (("vertical", rows, p_rows), ("horizontal", columns, p_columns)):
        never = [k for k, c in enumerate(counts) if c == 0]
        if never:
            problems.append(
                f"the {name} offset{'s' if len(never) > 1 else ''} {never} never occurred in {n} calls (about "
                f"{n / OFFSETS:.0f} each expected): e.g. np.random.randint(0, {2 * PAD}) never returns {2 * PAD}; "
                f"use np.random.randint(0, {2 * PAD + 1})"
                if never == [2 * PAD]
                else f"the {name} offset{'s' if len(never) > 1 else ''} {never} never occurred in {n} calls"
            )
        elif p < limit:
            problems.append(f"the {name} offsets {counts} are implausible for a uniform choice (p = {p:.2g})")
    if p_tied < limit and tied > n / OFFSETS:
        problems.append(
            f"the vertical and horizontal offsets were equal in {tied} of {n} calls (about {n / OFFSETS:.0f} "
            "expected): draw them independently"
        )
    note = _padding_note(modes)
    if problems:
        return Verdict(
            PARTIAL, f"{function} crops 32×32 windows of the padded image, but " + "; ".join(problems) + ".", evidence
        )
    return Verdict(
        CORRECT,
        f"Each of {n} calls of {function} returned a 32×32 window of the image padded by {PAD} pixels per side; all "
        f"{OFFSETS}×{OFFSETS} positions are plausible (tests at false-alarm rate {alpha:g}).{note}",
        evidence,
    )


def _pad_values(matched: list[Window]) -> str:
    constants = [w for w in matched if w.pad_mode == "constant" and w.pad_values is not None]
    if not constants:
        return "not seen"
    before = all(
        abs(p - b) <= TOLERANCE * max(1.0, abs(b))
        for w in constants
        for p, b in zip(w.pad_values or (), w.intercept, strict=True)
    )
    after = all(abs(p) <= TOLERANCE for w in constants for p in w.pad_values or ())
    if before:
        return "zeros, padded before standardising"
    if after:
        return "zeros, padded after standardising"
    return "another constant"


def _padding_note(modes: list[str]) -> str:
    others = [m for m in modes if m != "constant"]
    return (
        f" (Padding by {', '.join(others)} rather than zeros; the handout asks for 4 padded pixels.)" if others else ""
    )


def _flip_verdict(matched: list[Window], alpha: float, function: str) -> Verdict:
    n = len(matched)
    counts = {flip: sum(1 for w in matched if w.flip == flip) for flip in FLIPS}
    reversed_channels = sum(1 for w in matched if w.channels_reversed)
    p_value = binomial_two_sided(counts["horizontal"], n, 0.5)
    evidence = {"flips": counts, "channels_reversed": reversed_channels, "p_value": p_value, "false_alarm_rate": alpha}
    if reversed_channels:
        return Verdict(
            INCORRECT,
            f"{reversed_channels} of {n} outputs have their colour channels reversed: np.flip(image) without an axis "
            "flips every axis; flip only the width axis (np.fliplr(image) or image[:, ::-1, :]).",
            evidence,
        )
    if counts["vertical"] or counts["both"]:
        return Verdict(
            INCORRECT,
            f"{counts['vertical'] + counts['both']} of {n} outputs were flipped upside down (the height axis): the "
            "augmentation flips horizontally, along the width axis (np.fliplr(image) or image[:, ::-1, :]).",
            evidence,
        )
    if counts["horizontal"] == 0:
        return Verdict(
            INCORRECT,
            f"None of {n} outputs was flipped: the random horizontal flip is missing or never happens (check that "
            "its result is kept: np.fliplr returns a new array).",
            evidence,
        )
    if counts["horizontal"] == n:
        return Verdict(
            INCORRECT, f"All {n} outputs were flipped: the flip must happen at random, half of the time.", evidence
        )
    if p_value < alpha / 4:
        return Verdict(
            PARTIAL,
            f"{counts['horizontal']} of {n} outputs were flipped; a random flip with probability ½ gives about "
            f"{n / 2:.0f} (p = {p_value:.2g}).",
            evidence,
        )
    return Verdict(
        CORRECT,
        f"{counts['horizontal']} of {n} outputs were flipped left-right, plausible for a flip with probability ½.",
        evidence,
    )


def _standardised_alike(
    matched: list[Window],
    outputs: np.ndarray,
    windows: list[Window | None],
    image: np.ndarray,
    test_kind: dict[str, Any] | None,
) -> tuple[bool | None, str | None]:
    """Whether training outputs are standardised as the test-time kind would (padding before or after it), and if
    not, which known kind they follow."""
    if test_kind is None or not matched:
        return None, None
    pairs = [(outputs[i], w) for i, w in enumerate(windows) if w is not None][: len(matched)]
    if all(_follows(output, window, image, test_kind) for output, window in pairs):
        return True, None
    for kind in ("per_image_standardization", "per_channel_standardization", "scale", "none"):
        if kind != test_kind["kind"] and all(_follows(o, w, image, {"kind": kind}) for o, w in pairs):
            return False, kind
    return False, "another"


def _follows(output: np.ndarray, window: Window, image: np.ndarray, spec: dict[str, Any]) -> bool:
    scale = max(1.0, float(np.abs(output).max()))
    mode = "constant" if window.pad_mode == "none" else window.pad_mode
    preprocess = Preprocess(spec, torch.device("cpu"))

    def standardise(hwc: np.ndarray) -> np.ndarray:
        chw = torch.from_numpy(np.ascontiguousarray(hwc.transpose(2, 0, 1))[None].astype(np.float32))
        return preprocess(chw)[0].numpy().transpose(1, 2, 0).astype(np.float64)

    def cut(padded: np.ndarray) -> np.ndarray:
        chosen = _flip(padded[window.dy : window.dy + 32, window.dx : window.dx + 32], window.flip)
        return chosen[..., ::-1] if window.channels_reversed else chosen

    pad = ((PAD, PAD), (PAD, PAD), (0, 0))
    before = standardise(cut(np.pad(image.astype(np.float64), pad, mode=mode)))
    after = cut(np.pad(standardise(image.astype(np.float64)), pad, mode=mode))
    return any(_difference(candidate, output) <= TOLERANCE * scale for candidate in (before, after))


def judge_standardisation(
    test_kind: dict[str, Any] | None, why: str, augmentation: Augmentation | None, *, function: str
) -> Verdict:
    if test_kind is None:
        return Verdict(INCORRECT, f"The test-time preprocessing could not be identified: {why}.")
    described = describe_preprocessing(test_kind)
    evidence: dict[str, Any] = {"test_preprocessing": test_kind}
    if test_kind["kind"] == "none":
        return Verdict(
            INCORRECT, f"{function}(image, False) does not standardise: it returns the raw pixels.", evidence
        )
    if test_kind["kind"] == "scale":
        return Verdict(
            PARTIAL,
            f"{function}(image, False) only divides by 255; the handout asks to subtract the mean and divide by the "
            "standard deviation.",
            evidence,
        )
    if augmentation is not None and augmentation.train_consistent is False:
        evidence["train_preprocessing"] = augmentation.train_kind
        follows = f"as {augmentation.train_kind}" if augmentation.train_kind != "another" else "in another way"
        return Verdict(
            PARTIAL,
            f"At test time {function} standardises as {described}, but training outputs are standardised {follows}: "
            "the network is then tested on inputs scaled unlike those it learnt from.",
            evidence,
        )
    alike = " and training outputs alike" if augmentation is not None and augmentation.train_consistent else ""
    return Verdict(
        CORRECT, f"{function}(image, False) is deterministic and standardises as {described}{alike}.", evidence
    )


def _pair(outputs: Any, function: str, count: int) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(outputs, Mapping):
        raise Unreadable(f"{function}: nothing came back")
    for key in ("first", "again"):
        shapes = outputs.get(key, {}).get("shapes") if isinstance(outputs.get(key), Mapping) else None
        if isinstance(shapes, list):
            distinct = [list(s) for s in dict.fromkeys(tuple(s) for s in shapes if isinstance(s, list))][:4]
            raise Unreadable(f"{function} returned arrays of different shapes {distinct} for different inputs")
    first = decode_array(outputs.get("first"), function)
    again = decode_array(outputs.get("again"), function)
    if first.shape != again.shape or first.shape[:1] != (count,):
        raise Unreadable(f"{function}: the outputs do not match the {count} inputs")
    return first, again


def _difference(expected: np.ndarray, returned: np.ndarray) -> float:
    return float(np.abs(expected.astype(np.float64) - returned.astype(np.float64)).max())


def _picture(reference_chw: np.ndarray, returned_chw: np.ndarray) -> str:
    return png_data_url(side_by_side(reference_chw.transpose(1, 2, 0), returned_chw.transpose(1, 2, 0)))
