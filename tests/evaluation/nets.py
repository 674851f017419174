"""Test networks written as students and public repositories write them (not the grader's reference code).

- `StarterResNet`: the course starter code's naming (start_layer, batch_norm_relu_start, stack_layers[i].layer[j],
  shortcut, output_layer), any activation order and block type.
- `AkamasterResNet`: torchvision-style CIFAR naming (conv1, bn1, layer1..3, linear), post-activation standard
  blocks with option A or conv+BN shortcuts.
- `PreActBottleneckResNet`: kuangliu-style pre-activation bottleneck (conv1, layer1..3, shortcut.0, bn, fc).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BatchNormRelu(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.batch_norm = nn.BatchNorm2d(channels, eps=1e-5, momentum=0.997)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.batch_norm(x))


class StarterBlock(nn.Module):
    """standard_block / bottleneck_block of the starter code, post- or pre-activation."""

    def __init__(self, cin: int, filters: int, stride: int, *, pre: bool, bottleneck: bool) -> None:
        super().__init__()
        self.pre, self.bottleneck = pre, bottleneck
        cout = filters * 4 if bottleneck else filters
        # Registered first, as students typically do with the `projection_shortcut` argument.
        needs = stride != 1 or cin != cout
        self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False) if needs else None
        if bottleneck:
            shapes = [(cin, filters, 1, 1), (filters, filters, 3, stride), (filters, cout, 1, 1)]
        else:
            shapes = [(cin, filters, 3, stride), (filters, cout, 3, 1)]
        for k, (i, o, kernel, s) in enumerate(shapes):
            setattr(self, f"conv{k + 1}", nn.Conv2d(i, o, kernel, s, kernel // 2, bias=False))
            setattr(self, f"bn{k + 1}", nn.BatchNorm2d(i if pre else o))
        self.depth = len(shapes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        convs = [getattr(self, f"conv{k + 1}") for k in range(self.depth)]
        bns = [getattr(self, f"bn{k + 1}") for k in range(self.depth)]
        if self.pre:
            out = F.relu(bns[0](x))
            residual = self.shortcut(out) if self.shortcut is not None else x
            out = convs[0](out)
            for conv, bn in zip(convs[1:], bns[1:], strict=True):
                out = conv(F.relu(bn(out)))
            return out + residual
        out = x
        for k, (conv, bn) in enumerate(zip(convs, bns, strict=True)):
            out = bn(conv(out))
            out = F.relu(out) if k < self.depth - 1 else out
        return F.relu(out + (self.shortcut(x) if self.shortcut is not None else x))


class StackLayer(nn.Module):
    def __init__(self, cin: int, filters: int, stride: int, blocks: int, *, pre: bool, bottleneck: bool) -> None:
        super().__init__()
        cout = filters * 4 if bottleneck else filters
        self.layer = nn.ModuleList(
            StarterBlock(cin if b == 0 else cout, filters, stride if b == 0 else 1, pre=pre, bottleneck=bottleneck)
            for b in range(blocks)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.layer:
            x = block(x)
        return x


class OutputLayer(nn.Module):
    def __init__(self, channels: int, final_bn: bool, num_classes: int) -> None:
        super().__init__()
        self.bn_relu = BatchNormRelu(channels) if final_bn else None
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bn_relu is not None:
            x = self.bn_relu(x)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class StarterResNet(nn.Module):
    """NetWork.ResNet(resnet_version, resnet_size, num_classes, first_num_filters) with a free block choice."""

    def __init__(self, version: int, size: int, first: int = 8, *, bottleneck: bool | None = None) -> None:
        super().__init__()
        pre = version == 2
        bottleneck = pre if bottleneck is None else bottleneck
        self.version = version
        self.start_layer = nn.Conv2d(3, first, 3, 1, 1, bias=True)
        if version == 1:
            self.batch_norm_relu_start = BatchNormRelu(first)
        layers, cin = [], first
        for i in range(3):
            layers.append(StackLayer(cin, first * 2**i, 1 if i == 0 else 2, size, pre=pre, bottleneck=bottleneck))
            cin = first * 2**i * (4 if bottleneck else 1)
        self.stack_layers = nn.ModuleList(layers)
        self.output_layer = OutputLayer(cin, final_bn=pre, num_classes=10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.start_layer(x)
        if self.version == 1:
            x = self.batch_norm_relu_start(x)
        for stack in self.stack_layers:
            x = stack(x)
        return self.output_layer(x)


class LambdaLayer(nn.Module):
    def __init__(self, planes: int, *, symmetric: bool = True) -> None:
        super().__init__()
        self.planes, self.symmetric = planes, symmetric

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.planes // 4
        sides = (pad, pad) if self.symmetric else (0, 2 * pad)
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, *sides), "constant", 0)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, planes: int, stride: int, option: str, symmetric: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Sequential()
        if stride != 1 or cin != planes:
            if option == "A":
                self.shortcut = LambdaLayer(planes, symmetric=symmetric)
            else:
                self.shortcut = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class AkamasterResNet(nn.Module):
    """akamaster/pytorch_resnet_cifar10's ResNet (v1), option A or B shortcuts."""

    def __init__(self, size: int, first: int = 8, option: str = "A", symmetric: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, first, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(first)
        cin = first
        for i in range(3):
            planes = first * 2**i
            blocks = []
            for b in range(size):
                blocks.append(BasicBlock(cin, planes, 2 if i > 0 and b == 0 else 1, option, symmetric))
                cin = planes
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.linear = nn.Linear(cin, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.avg_pool2d(out, out.size()[3])
        return self.linear(out.view(out.size(0), -1))


class PreActBottleneck(nn.Module):
    def __init__(self, cin: int, planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, 4 * planes, 1, bias=False)
        if stride != 1 or cin != 4 * planes:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, 4 * planes, 1, stride, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if hasattr(self, "shortcut") else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        return out + shortcut


class PreActBottleneckResNet(nn.Module):
    def __init__(self, size: int, first: int = 8) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, first, 3, 1, 1, bias=False)
        cin = first
        for i in range(3):
            planes = first * 2**i
            blocks = []
            for b in range(size):
                blocks.append(PreActBottleneck(cin, planes, 2 if i > 0 and b == 0 else 1))
                cin = 4 * planes
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        out = F.relu(self.bn(out))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


def calibrate(model: nn.Module, images: torch.Tensor, seed: int = 0) -> nn.Module:
    """Random BN affine parameters, then running statistics from real images, so predictions vary."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0.0, 0.2, generator=generator)
                module.momentum = None  # cumulative average over the calibration batches
                module.reset_running_stats()
        model.train()
        for start in range(0, images.shape[0], 100):
            model(images[start : start + 100])
        model.eval()
        # Centre the logits so no class wins for every image (random features share a large common part).
        classifier = [module for module in model.modules() if isinstance(module, nn.Linear)][-1]
        logits = model(images)
        classifier.bias -= logits.mean(dim=0)
        classifier.weight /= logits.std(dim=0).clamp_min(1e-6).unsqueeze(1)
        classifier.bias /= logits.std(dim=0).clamp_min(1e-6)
    return model
