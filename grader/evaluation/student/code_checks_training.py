"""Q1(d) code checks: the student's `Model` class trains a tiny network on a tiny data set for a few epochs and tests
it, under hooks (code_checks_harness.py beside this module, stage "training"). From what the hooks saw, the grader
judges four things:

- the loss goes down: the network's outputs on the training records, before and after training, in training mode
  (batch statistics, as the loss is minimised), scored by the grader's own cross-entropy;
- batch normalisation is in training mode while gradients are computed in training, and in evaluation mode when
  testing (forward pre-hooks on every BatchNorm layer count the calls by mode);
- gradients are zeroed every step: at each optimizer.step() each parameter's .grad is compared with the sum of the
  gradients of the backward passes since the previous step (zeroed) and since training began (never zeroed);
- the checkpoint it saves is a state_dict that fits its own network: the file's tensor names and shapes, read by
  the grader without unpickling anything (grader/evaluation/structure.py), against the network's state_dict.

The data: `records` images in `classes` classes, each class its own colour plus noise, so that a few steps of any
working loop lower the loss.
"""

from __future__ import annotations

import base64
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from grader.evaluation.checkpoint_format import CheckpointRejected, state_dict_of
from grader.evaluation.structure import TensorInfo, read_structure
from grader.evaluation.student.code_checks_common import (
    CORRECT,
    INCORRECT,
    PARTIAL,
    Unreadable,
    Verdict,
    decode_array,
    name_shapes,
    student_error,
)

ZEROED = 1e-3
"""Largest residual (relative, after the best scaling) at which .grad counts as equal to a sum of gradients."""
LOSS_DROP = 0.01
"""The loss must fall by at least this share to count as decreasing."""
MAX_CHECKPOINT_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class TrainingData:
    x: np.ndarray
    """uint8 [N, 3072], CIFAR-10 rows."""
    y: np.ndarray
    reference_batch: np.ndarray
    """float32 [N, 3, 32, 32]: the records per-image standardised, for a network whose parse_record fails."""


def make_data(rng: np.random.Generator, records: int, classes: int) -> TrainingData:
    colours = rng.integers(30, 226, size=(classes, 3, 1, 1))
    labels = np.arange(records) % classes
    rng.shuffle(labels)
    images = (colours[labels] + rng.normal(0, 12, size=(records, 3, 32, 32))).clip(0, 255).astype(np.uint8)
    values = images.astype(np.float64)
    mean = values.mean(axis=(1, 2, 3), keepdims=True)
    std = np.maximum(values.std(axis=(1, 2, 3), keepdims=True), 1 / np.sqrt(3072))
    batch = ((values - mean) / std).astype(np.float32)
    return TrainingData(images.reshape(records, 3072), labels.astype(np.uint8), batch)


@dataclass(frozen=True, slots=True)
class TrainingVerdicts:
    loss: Verdict
    batch_norm: Verdict
    zero_grad: Verdict
    checkpoint: Verdict

    def to_json(self) -> dict[str, dict[str, Any]]:
        return {
            "training_loss": self.loss.to_json(),
            "batch_norm": self.batch_norm.to_json(),
            "zero_grad": self.zero_grad.to_json(),
            "checkpoint": self.checkpoint.to_json(),
        }


def judge_training(outputs: Any, data: TrainingData, *, spec: Mapping[str, Any]) -> TrainingVerdicts:
    error = student_error(outputs)
    if error is not None:
        failed = Verdict(INCORRECT, f"The training and testing loop could not be run: {error}")
        return TrainingVerdicts(failed, failed, failed, failed)
    assert isinstance(outputs, Mapping)
    train, test = f"{spec['class']}.{spec['train']}", f"{spec['class']}.{spec['test']}"
    return TrainingVerdicts(
        loss=_loss(outputs, data, train),
        batch_norm=_batch_norm(outputs, train, test),
        zero_grad=_zero_grad(outputs, train),
        checkpoint=_checkpoint(outputs, train, test),
    )


def _failed_call(outputs: Mapping[str, Any], key: str) -> str | None:
    return student_error({"error": outputs.get(key)}) if isinstance(outputs.get(key), Mapping) else None


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_probabilities[np.arange(len(labels)), labels.astype(int)].mean())


def _loss(outputs: Mapping[str, Any], data: TrainingData, train: str) -> Verdict:
    failed = _failed_call(outputs, "train_error")
    try:
        before = decode_array(outputs.get("before"), "the output before training")
        after = decode_array(outputs.get("after"), "the output after training")
    except Unreadable as exc:
        return Verdict(INCORRECT, f"The network's outputs could not be read: {exc}.")
    classes = before.shape[1] if before.ndim == 2 else 0
    if before.shape != after.shape or before.shape[0] != len(data.y) or classes <= int(data.y.max()):
        return Verdict(INCORRECT, f"The network's output has shape {list(before.shape)}; expected [{len(data.y)}, 10].")
    if not (np.isfinite(before).all() and np.isfinite(after).all()):
        return Verdict(INCORRECT, "The network's outputs are not finite numbers after training (NaN: diverged).")
    start, end = cross_entropy(before, data.y), cross_entropy(after, data.y)
    steps = len(outputs.get("steps") or [])
    evidence = {
        "loss_before": round(start, 4),
        "loss_after": round(end, 4),
        "optimizer_steps": steps,
        "weights_changed": outputs.get("weights_changed"),
        "inputs": outputs.get("batch"),
        "config": outputs.get("config"),
    }
    if failed is not None:
        return Verdict(INCORRECT, f"{train} failed {failed}", evidence)
    if not outputs.get("weights_changed"):
        return Verdict(
            INCORRECT,
            f"{train} left every weight of the network unchanged: optimizer.step() is never called, or the "
            "optimizer holds other parameters than the network's.",
            evidence,
        )
    if end <= start * (1 - LOSS_DROP):
        return Verdict(
            CORRECT,
            f"The cross-entropy on the training records fell from {start:.3f} to {end:.3f} in training.",
            evidence,
        )
    return Verdict(
        INCORRECT,
        f"The cross-entropy on the training records did not go down in training ({start:.3f} before, {end:.3f} "
        f"after {steps} optimizer steps).",
        evidence,
    )


def _batch_norm(outputs: Mapping[str, Any], train: str, test: str) -> Verdict:
    counts = outputs.get("bn") if isinstance(outputs.get("bn"), Mapping) else {}
    training = _counts(counts.get("train"))
    testing = _counts(counts.get("test"))
    evidence = {"training": training, "testing": testing}
    if not any(training.values()) and not any(testing.values()):
        failed = _failed_call(outputs, "train_error")
        if failed is None:
            return Verdict(INCORRECT, "The network has no batch normalisation layers that ran.", evidence)
        return Verdict(INCORRECT, f"{train} failed {failed}", evidence)
    problems, severe = [], bool(training["eval_grad"] or not training["train_grad"])
    if training["eval_grad"]:
        problems.append(
            f"while training, batch normalisation ran {training['eval_grad']} times in evaluation mode with gradients "
            f"on: call self.network.train() at the start of {train} (and after any validation inside it)"
        )
    if not training["train_grad"]:
        problems.append("no training step ran batch normalisation in training mode")
    failed_test = _failed_call(outputs, "test_error")
    if failed_test is not None:
        problems.append(f"{test} failed {failed_test}")
    elif testing["train_grad"] or testing["train_no_grad"]:
        severe = True
        problems.append(
            f"while testing, batch normalisation ran {testing['train_grad'] + testing['train_no_grad']} times in "
            f"training mode (batch statistics, and the running averages change): call self.network.eval() in {test}"
        )
    elif not testing["eval_grad"] + testing["eval_no_grad"]:
        problems.append(f"{test} never ran the network")
    if problems:
        return Verdict(INCORRECT if severe else PARTIAL, _sentence(problems), evidence)
    note = (
        " (Testing ran with gradients on: torch.no_grad() would save memory and time.)" if testing["eval_grad"] else ""
    )
    return Verdict(
        CORRECT,
        "Batch normalisation is in training mode while training and in evaluation mode while testing." + note,
        evidence,
    )


def _counts(value: Any) -> dict[str, int]:
    value = value if isinstance(value, Mapping) else {}
    keys = ("train_grad", "train_no_grad", "eval_grad", "eval_no_grad")
    return {key: int(value.get(key, 0)) if type(value.get(key, 0)) is int else 0 for key in keys}


def _zero_grad(outputs: Mapping[str, Any], train: str) -> Verdict:
    steps = [s for s in outputs.get("steps") or [] if isinstance(s, Mapping)][:200]
    evidence: dict[str, Any] = {"optimizer_steps": len(steps)}
    if not steps:
        failed = _failed_call(outputs, "train_error")
        if failed is not None:
            return Verdict(INCORRECT, f"{train} failed {failed}", evidence)
        return Verdict(
            PARTIAL if outputs.get("weights_changed") else INCORRECT,
            f"{train} never called a torch.optim optimizer's step(), so zeroing could not be checked.",
            evidence,
        )
    kinds = [_step_kind(step) for step in steps[1:]]  # the first step cannot tell zeroed from never zeroed
    evidence["steps"] = {kind: kinds.count(kind) for kind in sorted(set(kinds))}
    if not kinds:
        return Verdict(PARTIAL, f"{train} made a single optimizer step: zeroing could not be checked.", evidence)
    if all(kind == "zeroed" for kind in kinds):
        return Verdict(
            CORRECT, f"At each of {len(steps)} optimizer steps the gradients were those of that step alone.", evidence
        )
    if kinds.count("cleared") == len(kinds) or _step_kind(steps[0]) == "cleared":
        return Verdict(
            INCORRECT,
            "The gradients were already zero when optimizer.step() ran: zero_grad() is called between backward() "
            "and step(); call it before backward().",
            evidence,
        )
    if kinds.count("accumulated") >= len(kinds) / 2:
        return Verdict(
            INCORRECT,
            f"The gradients are never zeroed: at {kinds.count('accumulated')} of {len(kinds)} steps .grad held the sum "
            "over all earlier steps. Call optimizer.zero_grad() before each loss.backward().",
            evidence,
        )
    return Verdict(
        PARTIAL,
        f"The gradients were zeroed at only {kinds.count('zeroed')} of {len(kinds)} steps (accumulated or changed "
        "otherwise at the rest): call optimizer.zero_grad() before every loss.backward().",
        evidence,
    )


def _step_kind(step: Mapping[str, Any]) -> str:
    since_step, since_start = step.get("residual_since_step"), step.get("residual_since_start")
    if not isinstance(since_step, float | int) or not isinstance(since_start, float | int):
        return "unknown"
    grad_norm, step_norm = step.get("grad_norm", 0), step.get("since_step_norm", 0)
    if isinstance(grad_norm, float | int) and grad_norm == 0 and isinstance(step_norm, float | int) and step_norm > 0:
        return "cleared"
    if since_step <= ZEROED:
        return "zeroed"
    if since_start <= ZEROED:
        return "accumulated"
    return "other"


def _checkpoint(outputs: Mapping[str, Any], train: str, test: str) -> Verdict:
    saved = outputs.get("checkpoints") if isinstance(outputs.get("checkpoints"), Mapping) else {}
    files = [f for f in saved.get("files") or [] if isinstance(f, Mapping)][:50]
    evidence: dict[str, Any] = {"folder": str(saved.get("folder", ""))[:200], "files": files[:10]}
    if not files:
        failed = _failed_call(outputs, "train_error")
        why = f"{train} failed {failed}" if failed else f"{train} saved nothing in config.modeldir"
        return Verdict(INCORRECT, f"No checkpoint: {why} (save_interval was 1).", evidence)
    data = saved.get("data")
    if not isinstance(data, str) or len(data) > MAX_CHECKPOINT_BYTES * 4 // 3 + 4:
        return Verdict(
            INCORRECT, "The newest saved file is too large to be a checkpoint of the tiny network.", evidence
        )
    evidence["newest"] = str(saved.get("newest", ""))[:200]
    try:
        tensors = _structure(base64.b64decode(data, validate=True))
    except CheckpointRejected as exc:
        return Verdict(
            INCORRECT,
            f"The saved file {evidence['newest']} is not a state_dict: {exc.message}. Save it with "
            "torch.save(self.network.state_dict(), path).",
            evidence,
        )
    except ValueError:
        return Verdict(INCORRECT, "The saved file could not be read back.", evidence)
    network = {
        name: TensorInfo("torch.float32", shape) for name, shape in name_shapes(outputs.get("state_dict")).items()
    }
    expected, _, _, _ = state_dict_of(network, TensorInfo)
    saved_shapes = {name: tensor.shape for name, tensor in tensors.items()}
    expected_shapes = {name: tensor.shape for name, tensor in expected.items()}
    if saved_shapes != expected_shapes:
        missing = sorted(set(expected_shapes) - set(saved_shapes))[:3]
        extra = sorted(set(saved_shapes) - set(expected_shapes))[:3]
        wrong = sorted(k for k in set(saved_shapes) & set(expected_shapes) if saved_shapes[k] != expected_shapes[k])[:3]
        evidence |= {"missing": missing, "unexpected": extra, "other_shapes": wrong}
        return Verdict(
            INCORRECT,
            f"The saved state_dict does not fit the network ({len(missing)} missing, {len(extra)} unexpected, "
            f"{len(wrong)} other shapes, e.g. {(missing or extra or wrong)[:1]}).",
            evidence,
        )
    failed_test = _failed_call(outputs, "test_error")
    if failed_test is not None:
        return Verdict(
            PARTIAL,
            f"The saved state_dict fits the network, but {test} failed {failed_test}",
            evidence,
        )
    return Verdict(
        CORRECT,
        f"{train} saved {len(files)} checkpoint file(s); the newest is a state_dict with the network's "
        f"{len(expected_shapes)} tensors, and {test} ran on it.",
        evidence,
    )


def _structure(data: bytes) -> dict[str, TensorInfo]:
    with tempfile.TemporaryDirectory(prefix="grader-checkpoint-") as folder:
        path = Path(folder) / "checkpoint.bin"
        path.write_bytes(data)
        return read_structure(path, MAX_CHECKPOINT_BYTES)


def _sentence(problems: list[str]) -> str:
    text = "; ".join(problems)
    return text[0].upper() + text[1:] + "."
