"""The paper's building blocks: dense layer, dense block, transition (Huang et al., arXiv 1608.06993).

Module and parameter names follow torchvision (``norm1``, ``conv1``, ``denselayer1`` ...) so
its state_dicts load unchanged.
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


class DenseLayer(nn.Module):
    """BN-ReLU-Conv1x1(bn_size*k) then BN-ReLU-Conv3x3(k) ("DenseNet-B"); without a bottleneck
    (``bn_size=None``) just BN-ReLU-Conv3x3(k), the paper's basic composite function H_l."""

    def __init__(self, in_channels: int, growth_rate: int, bn_size: int | None = 4,
                 drop_rate: float = 0.0, memory_efficient: bool = False,
                 norm_layer=nn.BatchNorm2d):
        super().__init__()
        self.bottleneck = bn_size is not None
        if self.bottleneck:
            width = bn_size * growth_rate
            self.norm1 = norm_layer(in_channels)
            self.relu1 = nn.ReLU(inplace=True)
            self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
            self.norm2 = norm_layer(width)
            self.relu2 = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(width, growth_rate, 3, padding=1, bias=False)
        else:
            self.norm1 = norm_layer(in_channels)
            self.relu1 = nn.ReLU(inplace=True)
            self.conv1 = nn.Conv2d(in_channels, growth_rate, 3, padding=1, bias=False)
        self.drop_rate = float(drop_rate)
        self.memory_efficient = memory_efficient

    def _bottleneck(self, *features: torch.Tensor) -> torch.Tensor:
        x = torch.cat(features, 1)
        return self.conv1(self.relu1(self.norm1(x)))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        if self.memory_efficient and self.training and any(f.requires_grad for f in features):
            # Recompute concat-BN-ReLU-conv1x1 in backward instead of storing it (Pleiss et al. 2017).
            out = checkpoint(self._bottleneck, *features, use_reentrant=False)
        else:
            out = self._bottleneck(*features)
        if self.bottleneck:
            if self.drop_rate > 0:
                out = F.dropout(out, self.drop_rate, self.training)
            out = self.conv2(self.relu2(self.norm2(out)))
        if self.drop_rate > 0:
            out = F.dropout(out, self.drop_rate, self.training)
        return out


class DenseBlock(nn.ModuleDict):
    """``num_layers`` dense layers; each sees the concatenation of the block input and all
    earlier outputs. Output channels: in_channels + num_layers * growth_rate."""

    def __init__(self, num_layers: int, in_channels: int, growth_rate: int, **layer_kwargs):
        super().__init__()
        for i in range(num_layers):
            self.add_module(f"denselayer{i + 1}",
                            DenseLayer(in_channels + i * growth_rate, growth_rate, **layer_kwargs))
        self.out_channels = in_channels + num_layers * growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    """BN-ReLU-Conv1x1 to ``out_channels`` (the compression factor theta sets it) then 2x2 average pool."""

    def __init__(self, in_channels: int, out_channels: int, drop_rate: float = 0.0,
                 norm_layer=nn.BatchNorm2d):
        super().__init__()
        self.add_module("norm", norm_layer(in_channels))
        self.add_module("relu", nn.ReLU(inplace=True))
        self.add_module("conv", nn.Conv2d(in_channels, out_channels, 1, bias=False))
        if drop_rate > 0:
            self.add_module("drop", nn.Dropout(drop_rate))
        self.add_module("pool", nn.AvgPool2d(2, 2))


def batch_norm(eps: float = 1e-5, momentum: float = 0.1):
    """A BatchNorm2d factory with the given epsilon/momentum (Keras uses eps 1.001e-5)."""
    return partial(nn.BatchNorm2d, eps=eps, momentum=momentum)
