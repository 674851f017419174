"""Q1(a) code checks: the student's `load_data` on a small CIFAR-10 folder the grader writes, and their train /
validation split.

The folder is the real python-batch format, written the way the official files were (Python 2 pickles, protocol 2:
keys and file names as byte strings, the pixels as a numpy uint8 array [N, 3072]), so that a student's unpickling
with encoding="bytes" and key b"data", or encoding="latin1" and key "data", works as on the real download. Each
batch file holds a few records with distinct random pixels and known labels; the grader reads its files back with
its own reader (grader/evaluation/cifar.py, which never runs the pickle's code) as the reference.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from grader.evaluation.cifar import BATCHES_FOLDER, CLASS_NAMES, read_python_batch
from grader.evaluation.student.code_checks_common import (
    CORRECT,
    INCORRECT,
    PARTIAL,
    Unreadable,
    Verdict,
    decode_array,
    dtype_of,
    shape_of,
    student_error,
)

TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"


@dataclass(frozen=True, slots=True)
class Folder:
    """The small CIFAR-10 folder: what the reference reading of its files gives."""

    x_train: np.ndarray
    """uint8 [5 × records, 3072], data_batch_1 to data_batch_5 in order."""
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def write_folder(root: Path, rng: np.random.Generator, records_per_batch: int) -> Folder:
    """Write `root/cifar-10-batches-py/` (five training batches, test batch, batches.meta); its reference reading."""
    folder = root / BATCHES_FOLDER
    folder.mkdir(parents=True, mode=0o755)
    total = records_per_batch * (len(TRAIN_FILES) + 1)
    pixels = rng.integers(0, 256, size=(total, 3072), dtype=np.uint8)
    labels = rng.integers(0, 10, size=total).tolist()
    names = [*TRAIN_FILES, TEST_FILE]
    for index, name in enumerate(names):
        rows = slice(index * records_per_batch, (index + 1) * records_per_batch)
        title = f"training batch {index + 1} of 5" if name != TEST_FILE else "testing batch 1 of 1"
        _write(folder / name, _batch(title, pixels[rows], labels[rows]))
    _write(folder / "batches.meta", _meta(records_per_batch))
    read = [read_python_batch(folder / name) for name in names]  # the reference reading, by the grader's reader
    x_train = np.concatenate([images for images, _ in read[:-1]])
    y_train = np.array([label for _, batch in read[:-1] for label in batch])
    return Folder(x_train, y_train, read[-1][0], np.array(read[-1][1]))


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o644)


# A Python 2 (cPickle, protocol 2) pickle, opcode by opcode: Python 3 would write str keys as unicode and bytes
# through _codecs.encode, and neither reads back like the official files under both encodings.
def _string(text: bytes) -> bytes:
    return (b"U" + bytes([len(text)]) if len(text) < 256 else b"T" + struct.pack("<I", len(text))) + text


def _int(value: int) -> bytes:
    if 0 <= value < 256:
        return b"K" + bytes([value])
    if 0 <= value < 65536:
        return b"M" + struct.pack("<H", value)
    return b"J" + struct.pack("<i", value)


def _array(pixels: np.ndarray) -> bytes:
    rows, columns = pixels.shape
    dtype = b"cnumpy\ndtype\n" + _string(b"u1") + _int(0) + _int(1) + b"\x87R"
    dtype += b"(" + _int(3) + _string(b"|") + b"NNN" + _int(-1) + _int(-1) + _int(0) + b"tb"
    state = b"(" + _int(1) + _int(rows) + _int(columns) + b"\x86" + dtype + b"\x89" + _string(pixels.tobytes()) + b"tb"
    return (
        b"cnumpy.core.multiarray\n_reconstruct\n"
        + b"cnumpy\nndarray\n"
        + _int(0)
        + b"\x85"
        + _string(b"b")
        + b"\x87R"
        + state
    )


def _batch(title: str, pixels: np.ndarray, labels: Sequence[int]) -> bytes:
    names = [f"record_{i}_{CLASS_NAMES[label]}.png".encode() for i, label in enumerate(labels)]
    body = _string(b"batch_label") + _string(title.encode())
    body += _string(b"labels") + b"](" + b"".join(_int(label) for label in labels) + b"e"
    body += _string(b"data") + _array(pixels)
    body += _string(b"filenames") + b"](" + b"".join(_string(name) for name in names) + b"e"
    return b"\x80\x02}(" + body + b"u."


def _meta(records_per_batch: int) -> bytes:
    body = _string(b"num_cases_per_batch") + _int(records_per_batch)
    body += _string(b"label_names") + b"](" + b"".join(_string(name.encode()) for name in CLASS_NAMES) + b"e"
    body += _string(b"num_vis") + _int(3072)
    return b"\x80\x02}(" + body + b"u."


# ---------------------------------------------------------------------------------------------- judging


def judge_load(outputs: Any, folder: Folder, *, function: str) -> tuple[Verdict, Verdict]:
    """(training data verdict, test data verdict) for load_data's four arrays."""
    error = student_error(outputs)
    if error is not None:
        failed = Verdict(INCORRECT, f"{function} failed {error}")
        return failed, failed
    arrays = outputs.get("arrays") if isinstance(outputs, Mapping) else None
    if not isinstance(arrays, list) or len(arrays) != 4:
        failed = Verdict(INCORRECT, f"{function} did not return x_train, y_train, x_test, y_test.")
        return failed, failed
    per_batch = folder.x_test.shape[0]
    train = _judge_pair(arrays[0], arrays[1], folder.x_train, folder.y_train, "training", per_batch, folder)
    test = _judge_pair(arrays[2], arrays[3], folder.x_test, folder.y_test, "test", per_batch, folder)
    return train, test


def _judge_pair(
    x_entry: Any, y_entry: Any, x_ref: np.ndarray, y_ref: np.ndarray, which: str, per_batch: int, folder: Folder
) -> Verdict:
    files = "data_batch_1 to data_batch_5" if which == "training" else "test_batch"
    count = x_ref.shape[0]
    shape = shape_of(x_entry)
    evidence: dict[str, Any] = {"x_shape": shape, "x_dtype": dtype_of(x_entry), "y_shape": shape_of(y_entry)}
    evidence["expected_x_shape"], evidence["expected_y_shape"] = [count, 3072], [count]
    if shape is None or not shape or shape[0] != count:
        rows = shape[0] if shape else "no"
        hint = " (it must not assume 10,000 records per file)" if isinstance(rows, int) and rows % 10000 == 0 else ""
        return Verdict(
            INCORRECT,
            f"x_{'train' if which == 'training' else 'test'} has {rows} rows for a folder whose {files} hold {count} "
            f"records ({per_batch} per file){hint}.",
            evidence,
        )
    try:
        x = decode_array(x_entry, f"the {which} images").reshape(count, -1)
        y = decode_array(y_entry, f"the {which} labels")
    except (Unreadable, ValueError) as exc:
        return Verdict(INCORRECT, f"The {which} data could not be compared: {exc}.", evidence)
    notes, verdict = [], CORRECT
    if x.shape[1] != 3072:
        return Verdict(INCORRECT, f"Each {which} image has {x.shape[1]} values; a CIFAR-10 record has 3072.", evidence)
    if shape != (count, 3072):
        notes.append(f"the images come as {list(shape)}; the starter documents [N, 3072], one row per record")
        verdict = PARTIAL
    if not all(_whole(row) for row in x) and all(_whole(row * 255) for row in x):
        notes.append("the pixel values are divided by 255 (the starter's load_data returns raw pixels 0–255)")
        x, verdict = np.round(x * 255), PARTIAL
    labels = _labels(y, count)
    if isinstance(labels, str):
        return Verdict(INCORRECT, f"The {which} labels {labels}.", evidence)
    index = {row.tobytes(): i for i, row in enumerate(x_ref)}
    found = [index.get(np.round(row).clip(0, 255).astype(np.uint8).tobytes()) if _whole(row) else None for row in x]
    if any(i is None for i in found):
        return _unknown_rows(x, found, folder, which, files, evidence)
    if len(set(found)) != count:
        return Verdict(INCORRECT, f"Some {which} records appear twice and others not at all ({files}).", evidence)
    if any(labels[i] != y_ref[j] for i, j in enumerate(found)):
        wrong = sum(1 for i, j in enumerate(found) if labels[i] != y_ref[j])
        return Verdict(
            INCORRECT,
            f"{wrong} of {count} {which} labels do not belong to their images: images and labels must stay paired "
            "(shuffle both with the same permutation, or not at all).",
            evidence,
        )
    if found != list(range(count)):
        notes.append(f"the records come in another order than in {files} (they stay paired with their labels)")
    evidence["dtypes"] = {"x": dtype_of(x_entry), "y": dtype_of(y_entry)}
    text = f"The {which} images and labels equal the reference reading of {files} ({count} records)"
    return Verdict(
        verdict, text + ("; but " if verdict != CORRECT else "; ") * bool(notes) + "; ".join(notes) + ".", evidence
    )


def _whole(row: np.ndarray) -> bool:
    return bool(np.all(np.abs(row - np.round(row)) < 1e-3) and row.min() >= 0 and row.max() <= 255)


def _labels(y: np.ndarray, count: int) -> list[int] | str:
    if y.shape == (count, 10) and np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1):
        return "are one-hot vectors; the starter's y_train is one class index (0..9) per record"
    flat = y.reshape(-1) if y.size == count else None
    if flat is None:
        return f"have shape {list(y.shape)}; expected [{count}]"
    if not np.all(flat == np.round(flat)) or flat.min() < 0 or flat.max() > 9:
        return "are not class indices 0..9"
    return [int(v) for v in flat]


def _unknown_rows(
    x: np.ndarray, found: list[int | None], folder: Folder, which: str, files: str, evidence: dict[str, Any]
) -> Verdict:
    other = folder.x_test if which == "training" else folder.x_train
    others = {row.tobytes() for row in other}
    mixed = sum(1 for row in x if _whole(row) and np.round(row).astype(np.uint8).tobytes() in others)
    if mixed:
        where = "test_batch" if which == "training" else "the training batches"
        return Verdict(INCORRECT, f"{mixed} of the {which} records come from {where}.", evidence)
    scrambled = _scrambled(x, folder, which)
    if scrambled:
        return Verdict(INCORRECT, f"The {which} images are not the records of {files}: {scrambled}.", evidence)
    missing = sum(1 for i in found if i is None)
    return Verdict(
        INCORRECT,
        f"{missing} of the {x.shape[0]} {which} images are not records of {files} (the pixel values differ).",
        evidence,
    )


def _scrambled(x: np.ndarray, folder: Folder, which: str) -> str:
    """A word on how the rows differ, where a common mistake explains it."""
    reference = folder.x_train if which == "training" else folder.x_test
    sorted_rows = {np.sort(row).tobytes() for row in reference}
    if all(_whole(row) and np.sort(np.round(row).astype(np.uint8)).tobytes() in sorted_rows for row in x):
        return "each row holds a record's values in another order (the rows must stay as the file stores them)"
    return ""


def _rows(array: np.ndarray) -> np.ndarray:
    """One row per record (an empty part: no rows of 3072)."""
    return array.reshape(array.shape[0], -1) if array.ndim and array.shape[0] else array.reshape(0, 3072)


def judge_split(outputs: Any, x: np.ndarray, y: np.ndarray, *, function: str) -> Verdict:
    """The split of the grader's arrays (x uint8 [N, 3072], y [N]): every record exactly once, paired, sized."""
    error = student_error(outputs)
    if error is not None:
        return Verdict(INCORRECT, f"{function} failed {error}")
    arrays = outputs.get("arrays") if isinstance(outputs, Mapping) else None
    name = str(outputs.get("function", function))[:60] if isinstance(outputs, Mapping) else function
    if not isinstance(arrays, list) or len(arrays) != 4:
        return Verdict(INCORRECT, f"{name} did not return x_train, y_train, x_valid, y_valid.")
    split_index = outputs.get("split_index")
    try:
        parts = [decode_array(entry, f"{name}'s output {i + 1}") for i, entry in enumerate(arrays)]
    except Unreadable as exc:
        return Verdict(INCORRECT, str(exc))
    x_train, y_train, x_valid, y_valid = parts
    evidence = {"split_index": split_index, "sizes": [int(x_train.shape[0]), int(x_valid.shape[0])], "records": len(y)}
    try:
        rows = np.concatenate([_rows(x_train), _rows(x_valid)])
        labels = np.concatenate([y_train.reshape(-1), y_valid.reshape(-1)])
    except ValueError:
        return Verdict(INCORRECT, f"{name}'s outputs do not hold rows of 3072 values and one label each.", evidence)
    if rows.shape[1] != 3072 or rows.shape[0] != labels.shape[0]:
        return Verdict(INCORRECT, f"{name}'s outputs do not hold rows of 3072 values and one label each.", evidence)
    index = {row.tobytes(): i for i, row in enumerate(x)}
    found = [index.get(np.round(row).clip(0, 255).astype(np.uint8).tobytes()) if _whole(row) else None for row in rows]
    counts = [found.count(i) for i in range(len(y))]
    if any(i is None for i in found) or any(c != 1 for c in counts):
        lost, twice = sum(1 for c in counts if c == 0), sum(1 for c in counts if c > 1)
        return Verdict(
            INCORRECT,
            f"{name} does not keep every record exactly once: {lost} of {len(y)} are lost and {twice} appear twice.",
            evidence,
        )
    if any(int(labels[k]) != int(y[i]) for k, i in enumerate(found) if i is not None):
        return Verdict(INCORRECT, f"{name} separates images from their labels.", evidence)
    if split_index is not None and x_train.shape[0] != split_index:
        return Verdict(
            PARTIAL,
            f"{name} keeps every record once, but with split_index={split_index} the training part has "
            f"{x_train.shape[0]} records.",
            evidence,
        )
    if x_valid.shape[0] == 0:
        return Verdict(PARTIAL, f"{name} keeps every record once, but the validation set is empty.", evidence)
    return Verdict(
        CORRECT,
        f"{name} keeps each of the {len(y)} records exactly once ({x_train.shape[0]} for training, "
        f"{x_valid.shape[0]} for validation), each with its label.",
        evidence,
    )
