"""Student-style submissions written as files: the starter code's NetWork.py and ImageUtils.py, and canaries."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

NETWORK = """
import torch
import torch.nn as nn
import torch.nn.functional as F


class batch_norm_relu_layer(nn.Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.997):
        super().__init__()
        self.batch_norm = nn.BatchNorm2d(num_features, eps=eps, momentum=momentum)
        self.relu = nn.ReLU()

    def forward(self, inputs):
        return self.relu(self.batch_norm(inputs))


class standard_block(nn.Module):
    def __init__(self, filters, projection_shortcut, strides, first_num_filters):
        super().__init__()
        in_filters = filters if projection_shortcut is None else filters // 2
        self.shortcut = projection_shortcut
        self.conv1 = nn.Conv2d(in_filters, filters, 3, strides, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(filters)
        self.conv2 = nn.Conv2d(filters, filters, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(filters)

    def forward(self, inputs):
        shortcut = inputs if self.shortcut is None else self.shortcut(inputs)
        out = F.relu(self.bn1(self.conv1(inputs)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + shortcut)


class bottleneck_block(nn.Module):
    def __init__(self, filters, projection_shortcut, strides, first_num_filters, in_filters):
        super().__init__()
        width = filters // 4
        self.shortcut = projection_shortcut
        self.bn1 = nn.BatchNorm2d(in_filters)
        self.conv1 = nn.Conv2d(in_filters, width, 1, 1, 0, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, strides, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, filters, 1, 1, 0, bias=False)

    def forward(self, inputs):
        out = torch.relu(self.bn1(inputs))
        shortcut = inputs if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out), inplace=True))
        out = self.conv3(self.bn3(out).relu())
        out += shortcut
        return out


class stack_layer(nn.Module):
    def __init__(self, filters, block_fn, strides, resnet_size, first_num_filters, in_filters):
        super().__init__()
        filters_out = filters * 4 if block_fn is bottleneck_block else filters
        self.layer = nn.ModuleList()
        for i in range(resnet_size):
            cin = in_filters if i == 0 else filters_out
            s = strides if i == 0 else 1
            projection = nn.Conv2d(cin, filters_out, 1, s, bias=False) if (s != 1 or cin != filters_out) else None
            if block_fn is bottleneck_block:
                self.layer.append(bottleneck_block(filters_out, projection, s, first_num_filters, cin))
            else:
                self.layer.append(standard_block(filters_out, projection, s, first_num_filters))

    def forward(self, inputs):
        for block in self.layer:
            inputs = block(inputs)
        return inputs


class output_layer(nn.Module):
    def __init__(self, filters, resnet_version, num_classes):
        super().__init__()
        self.bn_relu = batch_norm_relu_layer(filters) if resnet_version == 2 else None
        self.fc = nn.Linear(filters, num_classes)

    def forward(self, inputs):
        if self.bn_relu is not None:
            inputs = self.bn_relu(inputs)
        inputs = F.adaptive_avg_pool2d(inputs, 1).view(inputs.size(0), -1)
        return self.fc(inputs)


class ResNet(nn.Module):
    def __init__(self, resnet_version, resnet_size, num_classes, first_num_filters):
        super().__init__()
        self.resnet_version = resnet_version
        self.start_layer = nn.Conv2d(3, first_num_filters, 3, 1, 1, bias=True)
        if resnet_version == 1:
            self.batch_norm_relu_start = batch_norm_relu_layer(first_num_filters)
            block_fn = standard_block
        else:
            block_fn = bottleneck_block
        self.stack_layers = nn.ModuleList()
        cin = first_num_filters
        for i in range(3):
            filters = first_num_filters * (2 ** i)
            strides = 1 if i == 0 else 2
            self.stack_layers.append(stack_layer(filters, block_fn, strides, resnet_size, first_num_filters, cin))
            cin = filters * 4 if resnet_version == 2 else filters
        self.output_layer = output_layer(cin, resnet_version, num_classes)

    def forward(self, inputs):
        outputs = self.start_layer(inputs)
        if self.resnet_version == 1:
            outputs = self.batch_norm_relu_start(outputs)
        for stack in self.stack_layers:
            outputs = stack(outputs)
        return self.output_layer(outputs)
"""

IMAGE_UTILS = """
import numpy as np


def parse_record(record, training):
    depth_major = record.reshape((3, 32, 32))
    image = np.transpose(depth_major, [1, 2, 0])
    image = preprocess_image(image, training)
    return np.transpose(image, [2, 0, 1])


def preprocess_image(image, training):
    if training:
        image = np.pad(image, ((4, 4), (4, 4), (0, 0)))
    mean = np.mean(image)
    std = max(np.std(image), 1.0 / np.sqrt(image.size))
    return (image - mean) / std
"""


def write_submission(folder: Path, network: str = NETWORK, image_utils: str = IMAGE_UTILS, **extra: str) -> Path:
    """NetWork.py, ImageUtils.py and any `extra` modules (name → source) in a new folder."""
    folder.mkdir(parents=True)
    (folder / "NetWork.py").write_text(network)
    (folder / "ImageUtils.py").write_text(image_utils)
    for name, source in extra.items():
        (folder / f"{name}.py").write_text(source)
    return folder


def load_module(folder: Path, name: str) -> Any:
    """Import `name`.py from a submission folder here, in the test process (trusted: the test wrote it)."""
    spec = importlib.util.spec_from_file_location(f"student_{folder.name}_{name}", folder / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
