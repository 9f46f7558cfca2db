"""Compact DenseNets for small grayscale images (Fashion-MNIST, MNIST): the fastest to accuracy on a CPU.

On a CPU, a small DenseNet's training time goes to its 3x3 convolutions (~55%) and the
BatchNorm/ReLU passes around them (~25%), both proportional to channels x height x width. So these
nets spend almost nothing at the input's full 28x28 resolution: the stem is one strided
convolution (28x28 -> 14x14), and the dense blocks run at 14x14, 7x7 and 3x3 with few, wide layers.
See docs/time-to-accuracy.md for the candidates measured and the figures of the chosen ones.
"""
from __future__ import annotations

from .densenet import DenseNet
from .registry import register_model


_META = {"family": "densenet", "source": "densekit (compact, for 28x28 grayscale)", "input_size": (1, 28, 28)}

# DenseNet-C (compression 0.5, no bottleneck: with two to four layers per block a 4k bottleneck's
# extra BN-ReLU-conv1x1 costs more than it saves) with three blocks at 14x14, 7x7 and 3x3: 16.6M
# multiply-adds per 28x28 image. Chosen by accuracy at the epochs a 5-minute budget affords on
# 2 CPU cores (docs/time-to-accuracy.md). The quick start's default model.
# What it reached on the 2-core CPU: the one source of these figures, which `densekit models` prints
# and the README's Results table must show (tests/test_models.py checks that it does).
MEASURED = [
    {"dataset": "Fashion-MNIST", "top1": 93.64, "command": "densekit train --dataset fashion-mnist --time-budget 5m",
     "date": "2026-12-01"},
    {"dataset": "MNIST", "top1": 99.60, "command": "densekit train --dataset mnist --time-budget 5m"},
]
register_model("densenet-c-fmnist", DenseNet,
               meta={**_META, "measured": MEASURED,
                     "paper": "2 CPU cores, 5 min: " + ", ".join(f"{m['dataset']} {m['top1']:.2f}%" for m in MEASURED)},
               growth_rate=32, block_config=(2, 4, 2), num_init_features=64, bn_size=None, compression=0.5,
               stem="cifar", stem_stride=2, in_channels=1, num_classes=10)
