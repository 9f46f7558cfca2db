"""Inception-ResNet-v2 (Szegedy, Ioffe, Vanhoucke & Alemi, "Inception-v4, Inception-ResNet and the
Impact of Residual Connections on Learning", arXiv 1602.07261), the seed's tflearn / MXNet net.

Stem (conv2d_1a ... conv2d_4a, the 35x35x320 ``mixed_5b``), Inception-ResNet-A blocks (``block35``,
residual scale 0.17), reduction A (``mixed_6a``), Inception-ResNet-B blocks (``block17``, 0.1),
reduction B (``mixed_7a``), Inception-ResNet-C blocks (``block8``, 0.2; the last one unscaled and
without its ReLU, as slim has it), 1x1 conv to 1536, global average pooling, dropout 0.2 (slim's
keep_prob 0.8), ``classif``.

The paper's Figure 15 draws 5 / 10 / 5 blocks, but the network Google released (TF-slim's
``inception_resnet_v2``, which the seed follows and every published weight file comes from) has
10 / 20 / 10 (9 with ReLU + the final ``block8``), and its stem ends in ``mixed_5b``'s 320 channels
where Figure 3's gives 384; ``repeats`` picks the block counts, the released ones by default.

Module names are timm's lower-case forms of TF-slim's scopes (conv2d_1a, mixed_5b, repeat,
mixed_6a, repeat_1, mixed_7a, repeat_2, block8, conv2d_7b, classif; branch0..3 and conv2d inside a
block), so timm's ``inception_resnet_v2`` state_dicts, converted from slim's checkpoint, load with
``load_weights`` (``benchmarks/timm_parity.py``: identical outputs). Convolutions without bias +
BatchNorm eps 0.001 (slim's), except each block's final 1x1 projection: a bias and no BN, as in slim.
"""
from __future__ import annotations

import torch
from torch import nn

from .baselines import check_input_size
from .googlenet import BasicConv2d
from .registry import register_model


class Mixed5b(nn.Module):
    """The stem's last module: 35x35x192 -> 320 (96 + 64 + 96 + 64)."""

    def __init__(self):
        super().__init__()
        self.branch0 = BasicConv2d(192, 96, 1)
        self.branch1 = nn.Sequential(BasicConv2d(192, 48, 1), BasicConv2d(48, 64, 5, padding=2))
        self.branch2 = nn.Sequential(BasicConv2d(192, 64, 1), BasicConv2d(64, 96, 3, padding=1),
                                     BasicConv2d(96, 96, 3, padding=1))
        self.branch3 = nn.Sequential(nn.AvgPool2d(3, 1, 1, count_include_pad=False), BasicConv2d(192, 64, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)


class Residual(nn.Module):
    """x + scale * conv1x1(concat(branch0, branch1, ...)), then ReLU: the shape of block35/17/8.
    The scaling (section 3.3) keeps stacks of more than 1000 filters from dying early in training."""

    def __init__(self, channels: int, branches: list[nn.Module], scale: float, relu: bool = True):
        super().__init__()
        for i, branch in enumerate(branches):
            self.add_module(f"branch{i}", branch)
        self.num_branches = len(branches)
        mixed = sum(_out_channels(b) for b in branches)
        self.scale = scale
        self.conv2d = nn.Conv2d(mixed, channels, 1)
        self.relu = nn.ReLU() if relu else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = torch.cat([getattr(self, f"branch{i}")(x) for i in range(self.num_branches)], 1)
        out = self.conv2d(mixed) * self.scale + x
        return out if self.relu is None else self.relu(out)


def _out_channels(branch: nn.Module) -> int:
    last = branch[-1] if isinstance(branch, nn.Sequential) else branch
    return last.conv.out_channels


def Block35(scale: float = 0.17) -> Residual:
    """Inception-ResNet-A (Figure 16), 35x35x320: 32 + 32 + 64 channels mixed."""
    return Residual(320, [BasicConv2d(320, 32, 1),
                          nn.Sequential(BasicConv2d(320, 32, 1), BasicConv2d(32, 32, 3, padding=1)),
                          nn.Sequential(BasicConv2d(320, 32, 1), BasicConv2d(32, 48, 3, padding=1),
                                        BasicConv2d(48, 64, 3, padding=1))], scale)


def Block17(scale: float = 0.1) -> Residual:
    """Inception-ResNet-B (Figure 17), 17x17x1088, with the factorised 1x7 / 7x1 pair."""
    return Residual(1088, [BasicConv2d(1088, 192, 1),
                           nn.Sequential(BasicConv2d(1088, 128, 1), BasicConv2d(128, 160, (1, 7), padding=(0, 3)),
                                         BasicConv2d(160, 192, (7, 1), padding=(3, 0)))], scale)


def Block8(scale: float = 0.2, relu: bool = True) -> Residual:
    """Inception-ResNet-C (Figure 19), 8x8x2080, with the 1x3 / 3x1 pair."""
    return Residual(2080, [BasicConv2d(2080, 192, 1),
                           nn.Sequential(BasicConv2d(2080, 192, 1), BasicConv2d(192, 224, (1, 3), padding=(0, 1)),
                                         BasicConv2d(224, 256, (3, 1), padding=(1, 0)))], scale, relu)


class Mixed6a(nn.Module):
    """Reduction A (Figure 7 with k, l, m, n = 256, 256, 384, 384): 35x35x320 -> 17x17x1088."""

    def __init__(self):
        super().__init__()
        self.branch0 = BasicConv2d(320, 384, 3, 2)
        self.branch1 = nn.Sequential(BasicConv2d(320, 256, 1), BasicConv2d(256, 256, 3, padding=1),
                                     BasicConv2d(256, 384, 3, 2))
        self.branch2 = nn.MaxPool2d(3, 2)

    def forward(self, x):
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1)


class Mixed7a(nn.Module):
    """Reduction B (Figure 18): 17x17x1088 -> 8x8x2080 (384 + 288 + 320 + 1088)."""

    def __init__(self):
        super().__init__()
        self.branch0 = nn.Sequential(BasicConv2d(1088, 256, 1), BasicConv2d(256, 384, 3, 2))
        self.branch1 = nn.Sequential(BasicConv2d(1088, 256, 1), BasicConv2d(256, 288, 3, 2))
        self.branch2 = nn.Sequential(BasicConv2d(1088, 256, 1), BasicConv2d(256, 288, 3, padding=1),
                                     BasicConv2d(288, 320, 3, 2))
        self.branch3 = nn.MaxPool2d(3, 2)

    def forward(self, x):
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)


class InceptionResNetV2(nn.Module):
    """Inception-ResNet-v2 at 299x299 (any size from 75x75: the stem's unpadded convolutions and
    the two reductions need it).

    Args:
        repeats: blocks of type A, B and C (the last C block has no ReLU); (10, 20, 10) as released,
            (5, 10, 5) as the paper's Figure 15 draws.
        scales: residual scaling of the A, B and C blocks (0.17, 0.1, 0.2 as released).
        drop_rate: dropout before the classifier.
        in_channels, num_classes: input channels and classifier outputs.
    """

    min_input_size = 75

    def __init__(self, repeats=(10, 20, 10), scales=(0.17, 0.1, 0.2), drop_rate: float = 0.2,
                 in_channels: int = 3, num_classes: int = 1000):
        super().__init__()
        if len(repeats) != 3 or min(repeats) < 1 or len(scales) != 3:
            raise ValueError(f"repeats and scales need three entries (A, B, C blocks), repeats >= 1; "
                             f"got {repeats}, {scales}")
        a, b, c = repeats
        self.conv2d_1a = BasicConv2d(in_channels, 32, 3, 2)
        self.conv2d_2a = BasicConv2d(32, 32, 3)
        self.conv2d_2b = BasicConv2d(32, 64, 3, padding=1)
        self.maxpool_3a = nn.MaxPool2d(3, 2)
        self.conv2d_3b = BasicConv2d(64, 80, 1)
        self.conv2d_4a = BasicConv2d(80, 192, 3)
        self.maxpool_5a = nn.MaxPool2d(3, 2)
        self.mixed_5b = Mixed5b()
        self.repeat = nn.Sequential(*[Block35(scales[0]) for _ in range(a)])
        self.mixed_6a = Mixed6a()
        self.repeat_1 = nn.Sequential(*[Block17(scales[1]) for _ in range(b)])
        self.mixed_7a = Mixed7a()
        self.repeat_2 = nn.Sequential(*[Block8(scales[2]) for _ in range(c - 1)])
        self.block8 = Block8(1.0, relu=False)     # slim's block8(net, activation_fn=None): default scale 1
        self.conv2d_7b = BasicConv2d(2080, 1536, 1)
        self.num_features = 1536
        self.drop_rate = drop_rate
        self.dropout = nn.Dropout(drop_rate)
        self.classif = nn.Linear(1536, num_classes)
        # timm's feature_info: the end of each resolution, strides 2 to 32.
        self.feature_info = [("conv2d_2b", 64, 2), ("conv2d_4a", 192, 4), ("repeat", 320, 8),
                             ("repeat_1", 1088, 16), ("conv2d_7b", 1536, 32)]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for m in self.modules():
            if isinstance(m, Residual):
                nn.init.zeros_(m.conv2d.bias)

    STAGES = ["conv2d_1a", "conv2d_2a", "conv2d_2b", "maxpool_3a", "conv2d_3b", "conv2d_4a", "maxpool_5a",
              "mixed_5b", "repeat", "mixed_6a", "repeat_1", "mixed_7a", "repeat_2", "block8", "conv2d_7b"]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x, self.min_input_size, "Inception-ResNet-v2")
        for name in self.STAGES:
            x = getattr(self, name)(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.dropout(x.mean((2, 3)))
        return x if pre_logits else self.classif(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output at the end of each resolution (strides in ``feature_info``)."""
        check_input_size(x, self.min_input_size, "Inception-ResNet-v2")
        wanted, outs = {name for name, _, _ in self.feature_info}, []
        for name in self.STAGES:
            x = getattr(self, name)(x)
            if name in wanted:
                outs.append(x)
        return outs

    def reset_classifier(self, num_classes: int):
        self.classif = nn.Linear(self.num_features, num_classes)

    def summary_stages(self):
        return [("stem", [getattr(self, n) for n in self.STAGES[:7]]), ("mixed_5b", [self.mixed_5b]),
                ("repeat", [self.repeat]), ("mixed_6a", [self.mixed_6a]), ("repeat_1", [self.repeat_1]),
                ("mixed_7a", [self.mixed_7a]), ("repeat_2", [self.repeat_2, self.block8]),
                ("conv2d_7b", [self.conv2d_7b]), ("head", [self.classif])]


register_model("inception-resnet-v2", InceptionResNetV2,
               meta={"family": "inception", "source": "Szegedy et al. 2016 / TF-slim / timm",
                     "paper": "ImageNet top-1 / top-5 error 19.9% / 4.9%, one crop", "input_size": (3, 299, 299)},
               num_classes=1000, in_channels=3)
