"""A dense block's training step as one autograd node, with shared batch statistics.

In training mode every dense layer's ``norm1`` normalises the concatenation of the block input
and the earlier layers' outputs with that concatenation's batch statistics (Huang et al., arXiv
1608.06993; Ioffe & Szegedy, arXiv 1502.03167). A channel's statistics are the same in every
layer that sees it (the feature maps do not change between layers), so this route computes each
feature map's mean and variance once, when it is produced, and each layer applies only its own
scale and shift (BatchNorm's inference-form kernel fed the batch statistics): the O(L^2)
statistics passes of a block become O(L). Every ``norm1``'s running averages are updated from
the shared statistics exactly as its own training forward would update them.

The layers write their outputs into one preallocated block buffer (the "shared memory" layout
of Pleiss et al., arXiv 1707.06990), so the block's final concatenation is free; each layer
still copies its input channels out of it, because a channel slice of a channels-last tensor is
strided and BatchNorm's kernels are several times slower on strided input than the copy.
Backward walks the layers in reverse and sums every feature map's gradient in one block-sized
buffer (no ``cat`` backward, no per-feature gradient sums): a layer's output gradient is
complete once the layers after it are done. Each layer's BatchNorm gradient comes from ATen's
training-form backward fed the shared statistics, which is the gradient its own BatchNorm
gives, the statistics' part included; the 1x1 convolutions' gradients are two matrix products
over the channels-last (N*H*W, C) view (oneDNN's 1x1 backward is 2-5x slower on small maps on
AMX CPUs; its forward is not, so the forward stays a convolution).

``memory_efficient`` layers keep neither their copied input nor its BN-ReLU for backward and
rebuild both from the buffer there (two cheap elementwise passes): O(L) memory per block.
Measurements and the route's limits: docs/speed.md.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_aten = torch.ops.aten


# The block route wins where a step is bound by the number of kernel calls rather than by
# memory traffic: measured per block on one Sapphire Rapids core (DenseNet-121's blocks, batch
# 32, bf16, channels-last, docs/speed.md), 1.07x and 1.18x at 4x4 and 2x2 maps (512 and 128
# values per channel), 0.98x at 8x8 (2,048), 0.86x at 16x16 (8,192; 0.98x with densekit's
# allocator tuning).
AUTO_MAX_VALUES_PER_CHANNEL = 1024


def chosen(block: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``block(x)`` takes this route: ``block.fused`` True forces it where supported,
    False never takes it, None (the default) takes it where it is measured to pay off."""
    if block.fused is False or not supported(block, x):
        return False
    return block.fused is True or x.shape[0] * x.shape[2] * x.shape[3] <= AUTO_MAX_VALUES_PER_CHANNEL


def supported(block: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``block`` in training mode can take the shared-statistics route with input ``x``.

    Dropout, BatchNorm variants (SyncBatchNorm, frozen or cumulative-average BN), a norm1 eps
    that differs between layers and ``torch.compile`` tracing take the plain route, and so do
    CUDA tensors: the route is exact there too, but measured only on CPUs."""
    if not block.training or x.dim() != 4 or not x.is_floating_point() or x.device.type != "cpu" \
            or torch.compiler.is_compiling():
        return False
    if x.shape[0] * x.shape[2] * x.shape[3] < 2:  # BN's own error message for a 1-value batch
        return False
    layers = list(block.values())
    eps = layers[0].norm1.eps
    for layer in layers:
        if layer.drop_rate > 0 or layer.norm1.eps != eps:
            return False
        for norm in _norms(layer):
            if type(norm) is not nn.BatchNorm2d or not norm.affine or not norm.track_running_stats \
                    or norm.momentum is None:
                return False
    return True


def dense_block(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The block's output (the concatenation of ``x`` and every layer's output), training mode."""
    params = [p for layer in block.values() for p in _layer_params(layer)]
    return _SharedStatsBlock.apply(block, x, *params)


def _norms(layer):
    return [layer.norm1, layer.norm2] if layer.bottleneck else [layer.norm1]


def _layer_params(layer):
    params = [layer.norm1.weight, layer.norm1.bias, layer.conv1.weight]
    if layer.bottleneck:
        params += [layer.norm2.weight, layer.norm2.bias, layer.conv2.weight]
    return params


def _nhwc(t: torch.Tensor) -> bool:
    return t.permute(0, 2, 3, 1).is_contiguous()


def _conv_backward(grad: torch.Tensor, a: torch.Tensor, weight: torch.Tensor, conv: nn.Conv2d):
    """(grad of the input, grad of the weight) of ``F.conv2d(a, weight)`` with ``conv``'s geometry."""
    if conv.kernel_size == (1, 1) and _nhwc(a) and _nhwc(grad):
        a2, g2 = a.permute(0, 2, 3, 1).flatten(0, 2), grad.permute(0, 2, 3, 1).flatten(0, 2)
        grad_w = (g2.t() @ a2).view_as(weight)
        grad_a = (g2 @ weight.view(weight.shape[0], -1)).view(a.permute(0, 2, 3, 1).shape).permute(0, 3, 1, 2)
        return grad_a, grad_w
    grad_a, grad_w, _ = _aten.convolution_backward(grad, a, weight, None, conv.stride, conv.padding,
                                                   conv.dilation, False, [0, 0], 1, [True, True, False])
    return grad_a, grad_w


def _update_running(norm: nn.BatchNorm2d, mean: torch.Tensor, unbiased_var: torch.Tensor):
    """What BatchNorm2d's training forward does to its buffers, from given batch statistics."""
    norm.running_mean.lerp_(mean.to(norm.running_mean.dtype), norm.momentum)
    norm.running_var.lerp_(unbiased_var.to(norm.running_var.dtype), norm.momentum)
    norm.num_batches_tracked.add_(1)


class _SharedStatsBlock(torch.autograd.Function):
    @staticmethod
    def forward(ctx, block, x, *params):
        layers = list(block.values())
        device = x.device.type
        autocast = torch.is_autocast_enabled(device)
        cdtype = torch.get_autocast_dtype(device) if autocast else x.dtype  # the convolutions' dtype
        fmt = torch.channels_last if _nhwc(x) and not x.is_contiguous() else torch.contiguous_format
        n, c0, h, w = x.shape
        widths = [layer.conv2.out_channels if layer.bottleneck else layer.conv1.out_channels for layer in layers]
        total = c0 + sum(widths)
        # torch.cat's promotion of the block input with the layers' outputs.
        buf = torch.empty((n, total, h, w), dtype=torch.promote_types(x.dtype, cdtype), device=x.device,
                          memory_format=fmt)
        buf[:, :c0].copy_(x)
        sdtype = torch.promote_types(buf.dtype, torch.float32)  # statistics in at least float32
        mean = torch.empty(total, dtype=sdtype, device=x.device)
        var = torch.empty_like(mean)
        count = n * h * w
        eps = layers[0].norm1.eps

        def chunk_stats(lo, hi):
            m, v = torch.batch_norm_update_stats(buf[:, lo:hi].to(sdtype, memory_format=fmt), None, None, 0.0)
            mean[lo:hi], var[lo:hi] = m, v

        saved = []
        with torch.autocast(device, enabled=False):
            chunk_stats(0, c0)
            channels = c0
            for layer, width in zip(layers, widths):
                norm1, conv1 = layer.norm1, layer.conv1
                _update_running(norm1, mean[:channels], var[:channels] * (count / (count - 1)))
                inp = buf[:, :channels].contiguous(memory_format=fmt)
                a1 = F.batch_norm(inp, mean[:channels], var[:channels], norm1.weight, norm1.bias,
                                  False, 0.0, eps).relu_().to(cdtype)
                w1 = conv1.weight.to(cdtype)
                out = F.conv2d(a1, w1, None, conv1.stride, conv1.padding)
                keep = dict(w1=w1)
                if not layer.memory_efficient:
                    keep.update(inp=inp, a1=a1)
                if layer.bottleneck:
                    norm2, conv2 = layer.norm2, layer.conv2
                    y1 = out
                    a2, mean2, invstd2 = torch.native_batch_norm(y1, norm2.weight, norm2.bias, norm2.running_mean,
                                                                 norm2.running_var, True, norm2.momentum, norm2.eps)
                    norm2.num_batches_tracked.add_(1)
                    a2 = a2.relu_().to(cdtype)
                    w2 = conv2.weight.to(cdtype)
                    out = F.conv2d(a2, w2, None, conv2.stride, conv2.padding)
                    keep.update(y1=y1, a2=a2, mean2=mean2, invstd2=invstd2, w2=w2)
                buf[:, channels:channels + width].copy_(out)
                chunk_stats(channels, channels + width)
                saved.append(keep)
                channels += width
        ctx.block, ctx.fmt, ctx.eps, ctx.c0, ctx.widths, ctx.x_dtype = block, fmt, eps, c0, widths, x.dtype
        # Everything through save_for_backward, so that saved-tensor hooks (offloading, the
        # memory tests) see it; ctx.keys says which saved tensor is which.
        ctx.keys = [list(keep) for keep in saved]
        ctx.save_for_backward(buf, mean, var, *[t for keep in saved for t in keep.values()])
        return buf

    @staticmethod
    def backward(ctx, grad_out):
        buf, mean, var, *flat = ctx.saved_tensors
        layers, fmt, eps = list(ctx.block.values()), ctx.fmt, ctx.eps
        saved, flat = [], iter(flat)
        for keys in ctx.keys:
            saved.append({key: next(flat) for key in keys})
        # The full gradient of every feature map, summed over the block output and every layer
        # that reads it: layer l's slice is complete once the layers after it are done.
        acc = grad_out.clone(memory_format=fmt)
        invstd = (var + eps).rsqrt()
        grads = []
        channels = ctx.c0 + sum(ctx.widths)
        for layer, width, keep in reversed(list(zip(layers, ctx.widths, saved))):
            channels -= width
            norm1, conv1 = layer.norm1, layer.conv1
            if keep.get("inp") is None:  # memory-efficient: rebuild what forward did not keep
                inp = buf[:, :channels].contiguous(memory_format=fmt)
                a1 = F.batch_norm(inp, mean[:channels], var[:channels], norm1.weight, norm1.bias,
                                  False, 0.0, eps).relu_().to(keep["w1"].dtype)
            else:
                inp, a1 = keep["inp"], keep["a1"]
            g = acc[:, channels:channels + width]
            layer_grads = []
            if layer.bottleneck:
                norm2, conv2 = layer.norm2, layer.conv2
                g_a2, g_w2 = _conv_backward(g.to(keep["w2"].dtype).contiguous(memory_format=fmt),
                                            keep["a2"], keep["w2"], conv2)
                g_a2 = _aten.threshold_backward(g_a2, keep["a2"], 0)
                g, g_n2w, g_n2b = _aten.native_batch_norm_backward(
                    g_a2, keep["y1"], norm2.weight, None, None, keep["mean2"], keep["invstd2"], True, norm2.eps,
                    [True, True, True])
                layer_grads = [g_n2w, g_n2b, g_w2.to(conv2.weight.dtype)]
            g_a1, g_w1 = _conv_backward(g.to(keep["w1"].dtype).contiguous(memory_format=fmt), a1, keep["w1"], conv1)
            g_a1 = _aten.threshold_backward(g_a1, a1, 0).to(inp.dtype)
            # The training-form backward with the shared statistics: exactly what this layer's own
            # BatchNorm would give, the statistics' gradient included.
            g_inp, g_n1w, g_n1b = _aten.native_batch_norm_backward(
                g_a1, inp, norm1.weight, None, None, mean[:channels], invstd[:channels], True, eps, [True, True, True])
            acc[:, :channels].add_(g_inp)
            grads[:0] = [g_n1w, g_n1b, g_w1.to(conv1.weight.dtype)] + layer_grads
        # A copy, not a view that would keep the whole block's gradient buffer alive.
        grad_x = acc[:, :ctx.c0].to(ctx.x_dtype, memory_format=fmt) if ctx.needs_input_grad[1] else None
        return (None, grad_x, *grads)

