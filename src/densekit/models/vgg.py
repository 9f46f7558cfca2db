"""VGG with batch normalisation (Simonyan & Zisserman, "Very Deep Convolutional Networks for
Large-Scale Image Recognition", arXiv 1409.1556, configurations A = VGG-11 and D = VGG-16).

The layout and module indices follow torchvision's ``vgg*_bn`` (features.N, classifier.0/3/6), so
its state_dicts load. ``head="global"`` swaps the 7x7x512 -> 4096 -> 4096 head for global average
pooling and one linear layer, the usual form on 32x32 inputs.
"""
from __future__ import annotations

import torch
from torch import nn

from .baselines import pool_stages
from .registry import register_model

# Channels of each 3x3 conv; "M" is a 2x2 max pool. (Table 1 of the paper, columns A and D.)
CONFIGS = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
}


class VGG(nn.Module):
    """Stacks of conv3x3-BN-ReLU separated by max pools, then the classifier head."""

    def __init__(self, depth: int = 16, head: str = "imagenet", in_channels: int = 3, num_classes: int = 1000,
                 drop_rate: float = 0.5):
        super().__init__()
        if depth not in CONFIGS or head not in ("imagenet", "global"):
            raise ValueError(f"VGG depth must be one of {sorted(CONFIGS)} and head 'imagenet' or 'global'")
        layers, channels = [], in_channels
        for v in CONFIGS[depth]:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                channels = v
        self.features = nn.Sequential(*layers)
        self.head = head
        self.drop_rate = drop_rate
        self.num_features = 4096 if head == "imagenet" else channels
        self.avgpool = nn.AdaptiveAvgPool2d(7 if head == "imagenet" else 1)
        self.reset_classifier(num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def reset_classifier(self, num_classes: int):
        if self.head == "imagenet":
            self.classifier = nn.Sequential(
                nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(self.drop_rate),
                nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(self.drop_rate), nn.Linear(4096, num_classes))
        else:
            self.classifier = nn.Sequential(nn.Linear(self.num_features, num_classes))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)
        if pre_logits:
            return self.classifier[:-1](x) if self.head == "imagenet" else x
        return self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def summary_stages(self):
        return pool_stages(self.features) + [("head", [self.avgpool, self.classifier])]


for _depth in CONFIGS:
    register_model(f"vgg{_depth}-bn", VGG, meta={"family": "vgg", "source": "Simonyan & Zisserman / torchvision",
                                                 "input_size": (3, 224, 224)},
                   depth=_depth, head="imagenet", num_classes=1000, in_channels=3)
    register_model(f"vgg{_depth}-bn-cifar", VGG, meta={"family": "vgg", "source": "VGG, global-pool head",
                                                       "input_size": (3, 32, 32)},
                   depth=_depth, head="global", num_classes=10, in_channels=3)
