"""The paper's building blocks: dense layer, dense block, transition (Huang et al., arXiv 1608.06993),
assembled into the network by ``DenseNet`` in ``densenet.py``.

Module and parameter names follow torchvision (``norm1``, ``conv1``, ``denselayer1`` ...) so
its state_dicts load unchanged. The forward passes compute the same function as torchvision's
but take the cheaper route where one exists (docs/speed.md); ``reference.py`` holds the plain
version they are tested against.
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from . import fused_block


def bn_relu(x: torch.Tensor, norm: nn.Module, update_stats: bool = True) -> torch.Tensor:
    """BatchNorm then ReLU, the ReLU in place on BN's fresh output (BN's backward needs its
    input, not its output). ``update_stats=False`` normalises with the batch statistics but
    leaves the running averages alone, for recomputation in the memory-efficient mode."""
    if norm.training and not update_stats and isinstance(norm, nn.BatchNorm2d):
        out = F.batch_norm(x, None, None, norm.weight, norm.bias, True, 0.0, norm.eps)
    else:
        out = norm(x)
    return out.relu_()


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
        # relu1/relu2 hold no state; they keep torchvision's module tree (for printing and
        # hooks), while forward applies ReLU in place through bn_relu.
        self.drop_rate = float(drop_rate)
        self.memory_efficient = memory_efficient

    def _concat_bn_relu_conv1(self, *features: torch.Tensor) -> torch.Tensor:
        x = torch.cat(features, 1) if len(features) > 1 else features[0]
        return self.conv1(bn_relu(x, self.norm1))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        if self.memory_efficient and self.training and torch.is_grad_enabled():
            out = _RecomputedConcatBNReLU.apply(self, self.norm1.weight, self.norm1.bias,
                                                self.conv1.weight, *features)
        else:
            out = self._concat_bn_relu_conv1(*features)
        if self.bottleneck:
            if self.drop_rate > 0:
                out = F.dropout(out, self.drop_rate, self.training)
            out = self.conv2(bn_relu(out, self.norm2))
        if self.drop_rate > 0:
            out = F.dropout(out, self.drop_rate, self.training)
        return out


class _RecomputedConcatBNReLU(torch.autograd.Function):
    """conv1(ReLU(BN(cat(features)))) that keeps no concatenation for backward (Pleiss et al.,
    arXiv 1707.06990): backward rebuilds the concatenation and its BN-ReLU, which are cheap
    elementwise passes, and takes conv1's gradients from them directly, without re-running
    conv1 as a checkpoint would. Only the layer's inputs are kept, and later layers keep
    those anyway, so the O(L^2) memory of a block becomes O(L).
    """

    @staticmethod
    def forward(ctx, layer, norm_weight, norm_bias, conv_weight, *features):
        ctx.layer = layer
        ctx.device_type = features[0].device.type
        ctx.autocast = torch.is_autocast_enabled(ctx.device_type)
        ctx.dtype = torch.get_autocast_dtype(ctx.device_type)
        ctx.save_for_backward(*features)
        return layer._concat_bn_relu_conv1(*features)

    @staticmethod
    def backward(ctx, grad_out):
        layer, features = ctx.layer, ctx.saved_tensors
        conv, norm = layer.conv1, layer.norm1
        with torch.autocast(ctx.device_type, ctx.dtype, enabled=ctx.autocast):
            x = torch.cat(features, 1) if len(features) > 1 else features[0]
        # Batch statistics again (the running averages were updated in forward already), and
        # ATen's own kernels for the backward, without building an autograd graph.
        out, mean, invstd = torch.native_batch_norm(x, norm.weight, norm.bias, None, None, True, 0.0, norm.eps)
        a = out.relu_()
        weight = conv.weight.to(a.dtype)
        grad_out = grad_out.to(a.dtype)
        a_nhwc, g_nhwc = a.permute(0, 2, 3, 1), grad_out.permute(0, 2, 3, 1)
        if layer.bottleneck and a_nhwc.is_contiguous() and g_nhwc.is_contiguous():
            # 1x1 on channels-last: two matrix products over the (N*H*W, C) views, no copies.
            a2, g2 = a_nhwc.flatten(0, 2), g_nhwc.flatten(0, 2)
            grad_w = (g2.t() @ a2).view_as(conv.weight)
            grad_a = (g2 @ weight.flatten(1)).view(a_nhwc.shape).permute(0, 3, 1, 2)
        else:
            grad_a, grad_w, _ = torch.ops.aten.convolution_backward(
                grad_out, a, weight, None, conv.stride, conv.padding, conv.dilation,
                False, [0, 0], 1, [True, True, False])
        grad_a = torch.ops.aten.threshold_backward(grad_a, a, 0)
        grad_x, grad_nw, grad_nb = torch.ops.aten.native_batch_norm_backward(
            grad_a, x, norm.weight, None, None, mean, invstd, True, norm.eps, [True, True, True])
        grad_inputs = grad_x.split([f.shape[1] for f in features], 1)
        grad_w = grad_w.to(conv.weight.dtype) if ctx.needs_input_grad[3] else None
        return (None, grad_nw, grad_nb, grad_w, *grad_inputs)


class DenseBlock(nn.ModuleDict):
    """``num_layers`` dense layers; each sees the concatenation of the block input and all
    earlier outputs. Output channels: in_channels + num_layers * growth_rate.

    In training mode on small feature maps the block runs as one autograd node that computes
    each feature map's batch statistics once and shares them between the layers
    (``fused_block.py``): the same function as the per-layer route. ``fused`` None picks the
    route by size, True and False force one (benchmarks, tests)."""

    fused: bool | None = None

    def __init__(self, num_layers: int, in_channels: int, growth_rate: int, **layer_kwargs):
        super().__init__()
        for i in range(num_layers):
            self.add_module(f"denselayer{i + 1}",
                            DenseLayer(in_channels + i * growth_rate, growth_rate, **layer_kwargs))
        self.out_channels = in_channels + num_layers * growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if fused_block.chosen(self, x):
            return fused_block.dense_block(self, x)
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = bn_relu(x, self.norm)
        if hasattr(self, "drop"):
            return self.pool(self.drop(self.conv(x)))
        # A 1x1 convolution and average pooling are both linear and act on different axes,
        # so they commute: pooling first does the convolution on a quarter of the pixels.
        return self.conv(self.pool(x))


def batch_norm(eps: float = 1e-5, momentum: float = 0.1):
    """A BatchNorm2d factory with the given epsilon/momentum (Keras uses eps 1.001e-5)."""
    return partial(nn.BatchNorm2d, eps=eps, momentum=momentum)
