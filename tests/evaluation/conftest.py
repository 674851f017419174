"""Fixtures for the Q1 evaluator tests: the real CIFAR-10 test set and checkpoint, from environment settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from grader.evaluation.cifar import Cifar10TestSet, load_cifar10_test

SUBSET = 500
"""Images used where the full 10,000 are not needed (the loader, mapping and preprocessing are under test)."""


@pytest.fixture(scope="session")
def testset(cifar10_root: Path) -> Cifar10TestSet:
    return load_cifar10_test(cifar10_root, "cpu")


@pytest.fixture(autouse=True)
def _two_threads() -> None:
    # The grading machines and CI have few cores; oversubscription only makes the tests slower.
    torch.set_num_threads(min(2, os.cpu_count() or 1))
