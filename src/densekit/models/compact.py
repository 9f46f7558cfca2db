"""Compact DenseNets for small grayscale images (Fashion-MNIST, MNIST): the fastest to accuracy on a CPU.

On a CPU, a small DenseNet's training time goes to its 3x3 convolutions (~55%) and the
BatchNorm/ReLU passes around them (~25%), both proportional to channels x height x width. So these
nets spend almost nothing at the input's full 28x28 resolution: the stem is one strided
convolution (28x28 -> 14x14), and the dense blocks run at 14x14, 7x7 and 3x3 with few, wide layers.
See docs/time-to-accuracy.md for the candidates measured and the figures of the chosen ones.
"""
from __future__ import annotations

from torch import nn

from .densenet import DenseNet
from .registry import register_model


class CompactDenseNet(DenseNet):
    """A :class:`DenseNet` with a strided convolutional stem.

    Args:
        stem_stride: stride of the stem's convolution (2: 28x28 input -> 14x14 into the first block).
        stem_kernel: its kernel size (padding ``(stem_kernel - 1) // 2``).
        Everything else as :class:`DenseNet`; ``stem`` must be "cifar" (one convolution, no pooling),
        which this class replaces by the strided convolution.
    """

    def __init__(self, stem_stride: int = 2, stem_kernel: int = 3, stem: str = "cifar", **kwargs):
        if stem != "cifar":
            raise ValueError(f"CompactDenseNet builds its own strided stem; stem must be 'cifar', got {stem!r}")
        super().__init__(stem=stem, **kwargs)
        old = self.features.conv0
        self.features.conv0 = nn.Conv2d(old.in_channels, old.out_channels, stem_kernel, stem_stride,
                                        (stem_kernel - 1) // 2, bias=False)
        nn.init.kaiming_normal_(self.features.conv0.weight)
        self.stem_stride = stem_stride
        self.feature_info = [(name, ch, red * stem_stride) for name, ch, red in self.feature_info]


_META = {"family": "densenet", "source": "densekit (compact, for 28x28 grayscale)", "input_size": (1, 28, 28)}

# DenseNet-C (compression 0.5, no bottleneck: with two to four layers per block a 4k bottleneck's
# extra BN-ReLU-conv1x1 costs more than it saves) with three blocks at 14x14, 7x7 and 3x3: 16.6M
# multiply-adds per 28x28 image. Chosen by accuracy at the epochs a 5-minute budget affords on
# 2 CPU cores (docs/time-to-accuracy.md). The quick start's default model.
register_model("densenet-c-fmnist", CompactDenseNet,
               meta={**_META, "paper": "2 CPU cores, 5 min: Fashion-MNIST 93.45% (flips), MNIST 99.68%"},
               growth_rate=32, block_config=(2, 4, 2), num_init_features=64, bn_size=None, compression=0.5,
               stem_stride=2, stem_kernel=3, in_channels=1, num_classes=10)
