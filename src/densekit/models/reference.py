"""A naive DenseNet, exactly as the paper draws it: every dense layer concatenates all earlier
feature maps with ``torch.cat`` and applies BN-ReLU-Conv to the result, in NCHW float32.

It is the yardstick for the fast layers (tests compare outputs and gradients against it) and
for ``densekit bench`` (which reports densekit's speed as a ratio to it). The parameter and
buffer names are the fast model's (torchvision's), so one state_dict loads into both.
"""
from __future__ import annotations

import copy
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from .layers import DenseBlock, DenseLayer, Transition


class ReferenceDenseLayer(nn.Module):
    """H_l of the paper on the concatenation, with the same submodules as ``DenseLayer``."""

    def __init__(self, layer: DenseLayer):
        super().__init__()
        self.bottleneck = layer.bottleneck
        self.drop_rate = layer.drop_rate
        for name in ("norm1", "conv1", "norm2", "conv2"):
            if hasattr(layer, name):
                self.add_module(name, copy.deepcopy(getattr(layer, name)))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(torch.cat(features, 1))))
        if self.bottleneck:
            out = F.dropout(out, self.drop_rate, self.training)
            out = self.conv2(F.relu(self.norm2(out)))
        return F.dropout(out, self.drop_rate, self.training)


class ReferenceDenseBlock(nn.ModuleDict):
    def __init__(self, block: DenseBlock):
        super().__init__({name: ReferenceDenseLayer(layer) for name, layer in block.items()})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


def _swap_blocks(module: nn.Module):
    for name, child in module.named_children():
        if isinstance(child, DenseBlock):
            setattr(module, name, ReferenceDenseBlock(child))
        elif isinstance(child, Transition):
            # nn.Sequential's own forward: BN, ReLU, conv, (dropout), pool, in that order.
            setattr(module, name, nn.Sequential(OrderedDict(child.named_children())))
        else:
            _swap_blocks(child)


def reference_model(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (same weights, same state_dict keys) whose dense blocks are naive.

    Transitions run in the plain order, stem and head are the model's own modules; the copy is
    float32 NCHW."""
    ref = copy.deepcopy(model).float().to(memory_format=torch.contiguous_format)
    _swap_blocks(ref)
    return ref
