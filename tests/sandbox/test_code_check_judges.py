"""The Q1 code checks' judging, without a sandbox: outputs shaped as the harness sends them, made here by trusted
numpy code that reproduces a correct student and each classic mistake, and the verdicts they get."""

from __future__ import annotations

import base64
import io
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from grader.errors import RubricError
from grader.evaluation.student.code_checks_common import binomial_two_sided, chi_square_sf
from grader.evaluation.student.code_checks_data_reader import judge_load, judge_split, write_folder
from grader.evaluation.student.code_checks_preprocessing import judge_augmentation, judge_parse_record, picture
from grader.evaluation.student.code_checks_spec import parse_code_checks
from grader.evaluation.student.code_checks_training import TrainingData, judge_training, make_data

SEEDS = list(range(256))
ALPHA = 1e-4


def encode(array: Any) -> dict[str, Any]:
    """An array as the harness sends it back."""
    values = np.asarray(array)
    data = base64.b64encode(np.ascontiguousarray(values, dtype="<f8").tobytes()).decode()
    return {"shape": list(values.shape), "dtype": str(values.dtype), "data": data}


# ---------------------------------------------------------------------------------------------- statistics


@pytest.mark.parametrize(
    ("statistic", "df", "p"),
    [(15.507, 8, 0.05), (20.090, 8, 0.01), (2.733, 8, 0.95), (3.841, 1, 0.05), (11.345, 3, 0.01)],
)
def test_chi_square_survival_matches_the_tables(statistic: float, df: int, p: float) -> None:
    assert chi_square_sf(statistic, df) == pytest.approx(p, rel=0.05)


def test_binomial_two_sided_p_values() -> None:
    assert binomial_two_sided(60, 100, 0.5) == pytest.approx(0.0569, abs=1e-3)
    assert binomial_two_sided(128, 256, 0.5) == pytest.approx(1.0)
    assert binomial_two_sided(0, 256, 0.5) < 1e-70


# ---------------------------------------------------------------------------------------------- (b) augmentation


def _standardise(image: np.ndarray) -> np.ndarray:
    return (image - image.mean()) / max(image.std(), 1 / np.sqrt(image.size))


def augment(image: np.ndarray, seed: int, mistake: str | None = None) -> np.ndarray:
    """The starter's training preprocessing of an HWC image, or `mistake` made."""
    rng = np.random.default_rng(seed)
    mode = "reflect" if mistake == "reflect_padding" else "constant"
    values = image.astype(np.float64)
    if mistake == "standardise_first":
        values = _standardise(values)
    padded = np.pad(values, ((4, 4), (4, 4), (0, 0)), mode=mode)
    top, left = rng.integers(0, 8 if mistake == "off_by_one" else 9, size=2)
    if mistake == "tied_offsets":
        left = top
    window = padded[top : top + 32, left : left + 32]
    if rng.random() < 0.5 or mistake == "always_flip":
        window = {
            "vertical_flip": window[::-1],
            "flip_every_axis": window[::-1, ::-1, ::-1],
        }.get(mistake or "", window[:, ::-1])
    return window if mistake == "standardise_first" else _standardise(window)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(5).integers(0, 256, size=(32, 32, 3)).astype(np.uint8)


@pytest.mark.parametrize(
    ("mistake", "crop", "flip", "words"),
    [
        (None, "correct", "correct", "32×32 window"),
        ("standardise_first", "correct", "correct", "32×32 window"),
        ("reflect_padding", "correct", "correct", "reflect"),
        ("off_by_one", "partial", "correct", "never returns 8"),
        ("tied_offsets", "partial", "correct", "draw them independently"),
        ("vertical_flip", "correct", "incorrect", "upside down"),
        ("flip_every_axis", "correct", "incorrect", "colour channels reversed"),
        ("always_flip", "correct", "incorrect", "at random"),
    ],
)
def test_augmentation_verdicts(image: np.ndarray, mistake: str | None, crop: str, flip: str, words: str) -> None:
    outputs = encode(np.stack([augment(image, seed, mistake) for seed in SEEDS]))
    found = judge_augmentation(
        outputs,
        image,
        "hwc",
        SEEDS,
        test_kind={"kind": "per_image_standardization"},
        false_alarm_rate=ALPHA,
        function="preprocess_image",
    )
    assert (found.crop.verdict, found.flip.verdict) == (crop, flip), (found.crop.summary, found.flip.summary)
    assert words in found.crop.summary + found.flip.summary
    assert found.train_consistent is True


def test_padding_after_standardising_is_told_apart(image: np.ndarray) -> None:
    outputs = encode(np.stack([augment(image, seed, "standardise_first") for seed in SEEDS]))
    found = judge_augmentation(
        outputs, image, "hwc", SEEDS, test_kind=None, false_alarm_rate=ALPHA, function="preprocess_image"
    )
    assert found.crop.evidence["padding_values"] == "zeros, padded after standardising"


def test_outputs_that_are_no_windows_are_incorrect_with_a_picture(image: np.ndarray) -> None:
    noise = np.random.default_rng(1).normal(size=(len(SEEDS), 32, 32, 3))
    found = judge_augmentation(
        encode(noise), image, "hwc", SEEDS, test_kind=None, false_alarm_rate=ALPHA, function="preprocess_image"
    )
    assert found.crop.verdict == "incorrect" and "no 32×32 window" in found.crop.summary
    assert found.crop.evidence["picture"].startswith("data:image/png;base64,")


# ---------------------------------------------------------------------------------------------- (b) parse_record

LAYOUT_MISTAKES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "correct": lambda r: r.reshape(3, 32, 32),
    "reshape_hwc": lambda r: r.reshape(32, 32, 3).transpose(2, 0, 1),
    "height_width_swapped": lambda r: r.reshape(3, 32, 32).transpose(0, 2, 1),
    "no_transpose_back": lambda r: r.reshape(3, 32, 32).transpose(1, 2, 0),
}


@pytest.mark.parametrize(
    ("layout", "verdict", "words"),
    [
        ("correct", "correct", "the [3, 32, 32] image each record holds"),
        ("reshape_hwc", "incorrect", "reshape it to [3, 32, 32] first"),
        ("height_width_swapped", "incorrect", "height and width swapped"),
        ("no_transpose_back", "incorrect", "final transpose back"),
    ],
)
def test_parse_record_layouts(layout: str, verdict: str, words: str) -> None:
    probes = np.concatenate([picture()[None], np.random.default_rng(2).integers(0, 256, (8, 3, 32, 32))]).astype(
        np.uint8
    )
    outputs = np.stack([_standardise(LAYOUT_MISTAKES[layout](p.reshape(3072).astype(np.float64))) for p in probes])
    found, kind = judge_parse_record({"first": encode(outputs), "again": encode(outputs)}, probes, function="parse")
    assert found.verdict == verdict and words in found.summary, found.summary
    if layout in ("reshape_hwc", "height_width_swapped"):
        assert found.evidence["picture"].startswith("data:image/png;base64,")
        assert kind == {"kind": "per_image_standardization"}


def test_parse_record_that_is_random_at_test_time_is_incorrect() -> None:
    probes = np.random.default_rng(3).integers(0, 256, (4, 3, 32, 32)).astype(np.uint8)
    first = probes.astype(np.float64)
    found, _ = judge_parse_record({"first": encode(first), "again": encode(first[:, :, ::-1])}, probes, function="p")
    assert found.verdict == "incorrect" and "not deterministic" in found.summary


# ---------------------------------------------------------------------------------------------- (a) load_data


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return write_folder(tmp_path_factory.mktemp("cifar"), np.random.default_rng(4), 3)


@pytest.mark.parametrize("encoding", ["bytes", "latin1"])
def test_the_written_folder_reads_like_the_official_download(tmp_path: Path, encoding: str) -> None:
    root = tmp_path / "cifar"
    written = write_folder(root, np.random.default_rng(4), 3)
    key = b"data" if encoding == "bytes" else "data"
    batch = pickle.loads((root / "cifar-10-batches-py" / "data_batch_2").read_bytes(), encoding=encoding)
    assert np.array_equal(batch[key], written.x_train[3:6]) and batch[key].dtype == np.uint8
    meta = pickle.loads((root / "cifar-10-batches-py" / "batches.meta").read_bytes(), encoding=encoding)
    assert len(meta[b"label_names" if encoding == "bytes" else "label_names"]) == 10


def _loaded(folder: Any, variant: str) -> dict[str, Any]:
    x, y = folder.x_train.astype(np.float32), folder.y_train.astype(np.int32)
    if variant == "shuffled_together":
        order = np.random.default_rng(0).permutation(len(y))
        x, y = x[order], y[order]
    elif variant == "labels_shuffled_alone":
        y = y[np.random.default_rng(0).permutation(len(y))]
    elif variant == "divided_by_255":
        x = x / 255
    elif variant == "one_hot":
        y = np.eye(10)[y]
    elif variant == "preallocated_50000":
        x = np.zeros((50000, 3072), dtype=np.float32)
    elif variant == "four_dimensional":
        x = x.reshape(-1, 3, 32, 32)
    elif variant == "test_mixed_in":
        x = np.concatenate([x[:-1], folder.x_test[:1].astype(np.float32)])
    return {"arrays": [encode(x), encode(y), encode(folder.x_test.astype(np.float32)), encode(folder.y_test)]}


@pytest.mark.parametrize(
    ("variant", "verdict", "words"),
    [
        ("correct", "correct", "equal the reference reading"),
        ("shuffled_together", "correct", "another order"),
        ("divided_by_255", "partial", "divided by 255"),
        ("four_dimensional", "partial", "[N, 3072]"),
        ("labels_shuffled_alone", "incorrect", "do not belong to their images"),
        ("one_hot", "incorrect", "one-hot"),
        ("preallocated_50000", "incorrect", "must not assume 10,000 records per file"),
        ("test_mixed_in", "incorrect", "come from test_batch"),
    ],
)
def test_load_data_verdicts(folder: Any, variant: str, verdict: str, words: str) -> None:
    train, test = judge_load(_loaded(folder, variant), folder, function="DataReader.load_data")
    assert train.verdict == verdict and words in train.summary, train.summary
    assert test.verdict == "correct", test.summary


def test_a_failing_load_data_fails_both_checks_with_the_students_error(folder: Any) -> None:
    error = {"error": {"kind": "student_code", "stage": "calling load_data", "message": "KeyError: 'data' (line 9)"}}
    train, test = judge_load(error, folder, function="DataReader.load_data")
    assert train == test and train.verdict == "incorrect" and "KeyError: 'data' (line 9)" in train.summary


@pytest.mark.parametrize(
    ("cut", "verdict", "words"),
    [(12, "correct", "exactly once"), (None, "incorrect", "lost"), (15, "partial", "validation set is empty")],
)
def test_split_verdicts(folder: Any, cut: int | None, verdict: str, words: str) -> None:
    x, y = folder.x_train.astype(np.float32), folder.y_train
    start = 11 if cut is None else cut  # None: overlapping slices, record 11 is in both parts
    parts = [x[: start + (cut is None)], y[: start + (cut is None)], x[start:], y[start:]]
    outputs = {"function": "train_vaild_split", "split_index": cut, "arrays": [encode(p) for p in parts]}
    found = judge_split(outputs, folder.x_train, folder.y_train, function="the split")
    assert found.verdict == verdict and words in found.summary, found.summary


# ---------------------------------------------------------------------------------------------- (d) training


@pytest.fixture(scope="module")
def data() -> TrainingData:
    return make_data(np.random.default_rng(6), 32, 4)


def _tiny() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))


def _saved(value: Any) -> str:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return base64.b64encode(buffer.getvalue()).decode()


def _training(data: TrainingData, **changes: Any) -> dict[str, Any]:
    net = _tiny()
    logits = np.eye(10)[data.y] * 3.0
    outputs: dict[str, Any] = {
        "before": encode(np.zeros((len(data.y), 10))),
        "after": encode(logits),
        "weights_changed": 0.5,
        "steps": [
            {
                "backwards": 1,
                "parameters": 4,
                "grad_norm": 1.0,
                "since_step_norm": 1.0,
                "residual_since_step": 0.0,
                "residual_since_start": 0.0 if i == 0 else 0.7,
            }
            for i in range(12)
        ],
        "bn": {"train": {"train_grad": 24}, "test": {"eval_no_grad": 32}},
        "checkpoints": {
            "folder": "m",
            "files": [{"name": "model-3.ckpt", "size": 9}],
            "newest": "model-3.ckpt",
            "data": _saved(net.state_dict()),
        },
        "state_dict": [[name, list(t.shape)] for name, t in net.state_dict().items()],
    }
    return outputs | changes


SPEC = parse_code_checks({})["training"]


def test_a_correct_loop_passes_all_four(data: TrainingData) -> None:
    verdicts = judge_training(_training(data), data, spec=SPEC).to_json()
    assert {name: v["verdict"] for name, v in verdicts.items()} == dict.fromkeys(verdicts, "correct"), verdicts


@pytest.mark.parametrize(
    ("changes", "check", "verdict", "words"),
    [
        ({"after": encode(np.zeros((32, 10)))}, "training_loss", "incorrect", "did not go down"),
        ({"weights_changed": 0.0}, "training_loss", "incorrect", "unchanged"),
        (
            {"bn": {"train": {"train_grad": 24}, "test": {"train_no_grad": 32}}},
            "batch_norm",
            "incorrect",
            "call self.network.eval()",
        ),
        (
            {"bn": {"train": {"train_grad": 20, "eval_grad": 4}, "test": {"eval_no_grad": 32}}},
            "batch_norm",
            "incorrect",
            "self.network.train()",
        ),
        (
            {
                "steps": [
                    {
                        "residual_since_step": 0.0 if i == 0 else 0.6,
                        "residual_since_start": 0.0,
                        "grad_norm": 1.0,
                        "since_step_norm": 1.0,
                    }
                    for i in range(12)
                ]
            },
            "zero_grad",
            "incorrect",
            "never zeroed",
        ),
        (
            {
                "steps": [
                    {"residual_since_step": 1.0, "residual_since_start": 1.0, "grad_norm": 0.0, "since_step_norm": 1.0}
                    for _ in range(12)
                ]
            },
            "zero_grad",
            "incorrect",
            "already zero",
        ),
        ({"steps": []}, "zero_grad", "partial", "never called"),
        ({"steps": [], "weights_changed": 0.0}, "zero_grad", "incorrect", "never called"),
        ({"checkpoints": {"files": []}}, "checkpoint", "incorrect", "saved nothing"),
    ],
)
def test_training_mistakes(data: TrainingData, changes: dict, check: str, verdict: str, words: str) -> None:
    found = judge_training(_training(data, **changes), data, spec=SPEC).to_json()[check]
    assert found["verdict"] == verdict and words in found["summary"], found


def test_a_whole_pickled_model_or_another_networks_weights_are_no_fitting_state_dict(data: TrainingData) -> None:
    whole = _training(data, checkpoints={"files": [{"name": "m.ckpt"}], "data": _saved(_tiny())})
    found = judge_training(whole, data, spec=SPEC).checkpoint
    assert found.verdict == "incorrect" and "not a state_dict" in found.summary
    other = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3)).state_dict()
    wrong = _training(data, checkpoints={"files": [{"name": "m.ckpt"}], "data": _saved(other)})
    assert "does not fit the network" in judge_training(wrong, data, spec=SPEC).checkpoint.summary


# ---------------------------------------------------------------------------------------------- the rubric section


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"nope": 1}, "unknown key 'nope'"),
        ({"training": {"class": "not a name"}}, "code_checks.training.class must be a Python identifier"),
        ({"preprocessing": {"seeds": 3}}, "seeds must be a whole number in 64..2000"),
        ({"preprocessing": {"false_alarm_rate": 0.9}}, "false_alarm_rate"),
        ({"network": {"sizes": []}}, "code_checks.network.sizes"),
    ],
)
def test_bad_code_checks_sections_are_refused(raw: dict, message: str) -> None:
    with pytest.raises(RubricError, match=message):
        parse_code_checks(raw)
