"""ResNet, the baseline the DenseNet paper compares with (He et al., "Deep Residual Learning for
Image Recognition", arXiv 1512.03385).

Two forms, one class: the CIFAR form of section 4.2 (3x3 stem of 16, three stages of 2n 3x3 layers
of 16/32/64 channels, parameter-free "option A" shortcuts: 6n+2 layers, ResNet-20/32/56/110) and
the ImageNet form of Table 1 (7x7/2 stem + max pool, four stages, projection "option B" shortcuts,
ResNet-18 basic / ResNet-50 bottleneck blocks). Module names follow torchvision (conv1, bn1,
layer1..4, fc), so its ResNet state_dicts load with ``load_weights``. ``preact=True`` gives the
full pre-activation form (He et al., "Identity Mappings in Deep Residual Networks", arXiv
1603.05027) that seed 002's tflearn CIFAR-10 recipe trains (``resnet32-tflearn``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register_model


class PadShortcut(nn.Module):
    """Option A: subsample by striding and zero-pad the new channels (no parameters)."""

    def __init__(self, stride: int, extra_channels: int):
        super().__init__()
        self.stride, self.extra = stride, extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::self.stride, ::self.stride]
        half = self.extra // 2
        return F.pad(x, (0, 0, 0, 0, half, self.extra - half))


def _shortcut(kind: str, in_ch: int, out_ch: int, stride: int) -> nn.Module | None:
    if stride == 1 and in_ch == out_ch:
        return None
    if kind == "A":
        return PadShortcut(stride, out_ch - in_ch)
    # Option B: 1x1 projection; torchvision calls it downsample.0 / downsample.1.
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity shortcut (ResNet-18/34, all CIFAR ResNets).
    Pre-activation (``preact``): BN-ReLU before each convolution, nothing after the addition."""
    expansion = 1

    def __init__(self, in_ch: int, width: int, stride: int = 1, shortcut: str = "B",
                 preact: bool = False, bias: bool = False):
        super().__init__()
        self.preact = preact
        self.conv1 = nn.Conv2d(in_ch, width, 3, stride, 1, bias=bias)
        self.bn1 = nn.BatchNorm2d(in_ch if preact else width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=bias)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(shortcut, in_ch, width, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        if self.preact:
            out = self.conv1(torch.relu(self.bn1(x)))
            return self.conv2(self.relu(self.bn2(out))) + identity
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride, as torchvision's "v1.5"), 1x1 expand by 4 (ResNet-50)."""
    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int = 1, shortcut: str = "B", preact: bool = False,
                 bias: bool = False):
        super().__init__()
        if preact or bias:
            raise ValueError("the bottleneck block is post-activation and bias-free only")
        out_ch = width * self.expansion
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(shortcut, in_ch, out_ch, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(nn.Module):
    """A ResNet: stem, stages of residual blocks (stride 2 at each stage but the first), GAP, linear.

    Args:
        block: "basic" or "bottleneck".
        layers: blocks per stage.
        widths: channels of each stage (before the bottleneck's 4x expansion).
        stem: "imagenet" (7x7/2 conv, BN, ReLU, 3x3/2 max pool) or "cifar" (3x3 conv, BN, ReLU).
        shortcut: "A" (zero-pad, the paper's CIFAR nets) or "B" (1x1 projection, ImageNet).
        preact: pre-activation blocks; the stem is then a bare convolution and a final BN-ReLU
            (``norm_final``) precedes pooling.
        conv_bias: biases in every convolution (tflearn's default).
    """

    def __init__(self, block: str = "basic", layers=(2, 2, 2, 2), widths=(64, 128, 256, 512),
                 stem: str = "imagenet", shortcut: str = "B", in_channels: int = 3, num_classes: int = 1000,
                 preact: bool = False, conv_bias: bool = False):
        super().__init__()
        if block not in BLOCKS or stem not in ("imagenet", "cifar") or shortcut not in ("A", "B"):
            raise ValueError(f"bad ResNet config: block={block!r} stem={stem!r} shortcut={shortcut!r}")
        cls = BLOCKS[block]
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        else:
            self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=conv_bias)
            self.maxpool = nn.Identity()
        # Pre-activation nets normalise inside each block, so the stem is the convolution alone.
        self.bn1 = nn.Identity() if preact else nn.BatchNorm2d(widths[0])
        self.relu = nn.Identity() if preact else nn.ReLU(inplace=True)
        channels, reduction = widths[0], (4 if stem == "imagenet" else 1)
        self.feature_info = []
        for i, (n, width) in enumerate(zip(layers, widths)):
            stride = 1 if i == 0 else 2
            reduction *= stride
            blocks = []
            for j in range(n):
                blocks.append(cls(channels, width, stride if j == 0 else 1, shortcut, preact, conv_bias))
                channels = width * cls.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            self.feature_info.append((f"layer{i + 1}", channels, reduction))
        self.num_features = channels
        self.norm_final = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True)) if preact else nn.Identity()
        self.fc = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _stages(self):
        return [getattr(self, name) for name, _, _ in self.feature_info]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in self._stages():
            x = stage(x)
        return self.norm_final(x)

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of every stage (strides in ``feature_info``)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for stage in self._stages():
            x = stage(x)
            outs.append(x)
        return outs

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean((2, 3))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int):
        self.fc = nn.Linear(self.num_features, num_classes)

    def summary_stages(self):
        stem = [("stem", [self.conv1, self.bn1, self.relu, self.maxpool])]
        stages = [(name, [getattr(self, name)]) for name, _, _ in self.feature_info]
        return stem + stages + [("head", [self.norm_final, self.fc])]


for _n in (3, 5, 9, 18):   # 6n+2 = 20, 32, 56, 110 layers (He et al. section 4.2; seed 002's tflearn n)
    register_model(f"resnet{6 * _n + 2}", ResNet, meta={"family": "resnet", "source": "He et al. 2015 (CIFAR)",
                                                        "input_size": (3, 32, 32)},
                   block="basic", layers=(_n,) * 3, widths=(16, 32, 64), stem="cifar", shortcut="A",
                   num_classes=10, in_channels=3)
register_model("resnet18", ResNet, meta={"family": "resnet", "source": "He et al. 2015 / torchvision",
                                         "input_size": (3, 224, 224)},
               block="basic", layers=(2, 2, 2, 2), num_classes=1000, in_channels=3)
register_model("resnet50", ResNet, meta={"family": "resnet", "source": "He et al. 2015 / torchvision",
                                         "input_size": (3, 224, 224)},
               block="bottleneck", layers=(3, 4, 6, 3), num_classes=1000, in_channels=3)
# Seed 002's tflearn CIFAR-10 ResNet (n=5: 32 layers): pre-activation, biased convolutions,
# stride-2 subsampling + zero-padded channels on the shortcut.
register_model("resnet32-tflearn", ResNet, meta={"family": "resnet", "source": "seed 002 (tflearn CIFAR-10)",
                                                 "input_size": (3, 32, 32)},
               block="basic", layers=(5, 5, 5), widths=(16, 32, 64), stem="cifar", shortcut="A", preact=True,
               conv_bias=True, num_classes=10, in_channels=3)
