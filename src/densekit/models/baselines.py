"""Small baselines the seeds set DenseNet against: a plain CNN (Densenet-Tensorflow's "CNN" column)
and a small AlexNet-style net (Krizhevsky et al. 2012, NIPS, scaled down for 32x32 inputs as in
the cuda-convnet CIFAR-10 recipes: five convolutions, three max pools, two hidden dense layers).
ResNet, VGG, GoogLeNet, NiN and Inception-ResNet-v2 have files of their own; the two helpers here
(``pool_stages`` for ``summary``, ``check_input_size``) serve them all.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import DensekitError
from .registry import register_model


def pool_stages(features) -> list:
    """``summary`` rows of a conv stack: one per resolution, each up to and including its max pool."""
    stages, current = [], []
    for m in features:
        current.append(m)
        if isinstance(m, nn.MaxPool2d):
            stages.append((f"stage{len(stages) + 1}", current))
            current = []
    if current:
        stages.append((f"stage{len(stages) + 1}", current))
    return stages


def check_input_size(x: torch.Tensor, min_size: int, what: str):
    """One clear line instead of a pooling error deep inside the net when an image is too small."""
    if not torch.compiler.is_compiling() and min(x.shape[-2:]) < min_size:
        raise DensekitError(f"{what} needs images of at least {min_size}x{min_size}, got "
                            f"{x.shape[-2]}x{x.shape[-1]}; resize them (--image-size {min_size}) "
                            "or pick a model for small images (`densekit models '*cifar*'`)")


class _Classifier(nn.Module):
    """The shared surface: ``features`` then ``classifier`` after global average pooling."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.pool(x), 1)
        return self.classifier[:-1](x) if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int):
        last = self.classifier[-1]
        self.classifier[-1] = nn.Linear(last.in_features, num_classes)

    def summary_stages(self):
        return pool_stages(self.features) + [("head", [self.pool, self.classifier])]


class PlainCNN(_Classifier):
    """Stages of ``convs_per_stage`` conv3x3-BN-ReLU layers, a 2x2 max pool after each but the last,
    global average pooling, a linear classifier: DenseNet without the dense connections."""

    def __init__(self, widths=(32, 64, 128), convs_per_stage: int = 2, in_channels: int = 3,
                 num_classes: int = 10, drop_rate: float = 0.0):
        super().__init__()
        layers, channels = [], in_channels
        for i, width in enumerate(widths):
            for _ in range(convs_per_stage):
                layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                           nn.ReLU(inplace=True)]
                channels = width
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = channels
        self.classifier = nn.Sequential(nn.Dropout(drop_rate), nn.Linear(channels, num_classes))


class AlexNetSmall(_Classifier):
    """AlexNet's shape at CIFAR scale: 5x5 and 3x3 convolutions with ReLU and overlapping 3x3/2 max
    pools, then dropout-dense-ReLU twice. No LRN (later work found it does not help)."""

    def __init__(self, widths=(64, 192, 384, 256, 256), hidden: int = 1024, in_channels: int = 3,
                 num_classes: int = 10, drop_rate: float = 0.5):
        super().__init__()
        c1, c2, c3, c4, c5 = widths
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1),
            nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1),
            nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c4, c5, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        # A fixed 2x2 grid keeps the dense layers' size independent of the input resolution.
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.num_features = hidden
        self.classifier = nn.Sequential(
            nn.Dropout(drop_rate), nn.Linear(c5 * 4, hidden), nn.ReLU(inplace=True),
            nn.Dropout(drop_rate), nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_classes))


register_model("plain-cnn", PlainCNN, meta={"family": "baseline", "source": "plain CNN (Densenet-Tensorflow)",
                                            "input_size": (3, 32, 32)}, num_classes=10, in_channels=3)
register_model("alexnet-small", AlexNetSmall, meta={"family": "baseline", "source": "AlexNet-style, CIFAR scale",
                                                    "input_size": (3, 32, 32)}, num_classes=10, in_channels=3)
