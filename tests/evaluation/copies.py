"""Checkpoints as classmates make them from one another, for the integrity tests: a ResNet-20 state dict at a
seed, the same after a few SGD steps on random images (a fine-tune), and torch.save's bytes."""

from __future__ import annotations

import io

import torch

from tests.evaluation.nets import AkamasterResNet


def resnet20(seed: int) -> dict[str, torch.Tensor]:
    """A freshly initialised ResNet-20 (v1, option A, widths 16/32/64: the real trained checkpoint's shapes)."""
    torch.manual_seed(seed)
    return AkamasterResNet(3, first=16).state_dict()


def fine_tuned(state: dict[str, torch.Tensor], steps: int = 3, lr: float = 0.05) -> dict[str, torch.Tensor]:
    """`state` after a few SGD steps on random images: what continuing a classmate's training looks like."""
    model = AkamasterResNet(3, first=16)
    model.load_state_dict(state)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    generator = torch.Generator().manual_seed(7)
    for _ in range(steps):
        images = torch.randn(16, 3, 32, 32, generator=generator)
        labels = torch.randint(0, 10, (16,), generator=generator)
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def torch_file(state: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()
