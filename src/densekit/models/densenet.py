"""DenseNet (Huang et al., "Densely Connected Convolutional Networks", arXiv 1608.06993).

Every structural knob is a constructor argument; named configurations of the paper, of
torchvision and of the seed projects are registered at the bottom of this file. The paper's
building blocks (the dense layer BN-ReLU-Conv1x1-BN-ReLU-Conv3x3, the dense block that
concatenates, the transition) are in ``layers.py``: ``DenseLayer``, ``DenseBlock``, ``Transition``.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .layers import DenseBlock, Transition, batch_norm
from .registry import register_model


class DenseNet(nn.Module):
    """A DenseNet: stem, dense blocks joined by transitions, BN-ReLU-global-average-pool-linear head.

    Args:
        growth_rate: k, channels each dense layer adds.
        block_config: layers in each dense block.
        num_init_features: channels out of the stem.
        bn_size: bottleneck width as a multiple of k (4 in the paper, 2 in the Keras seed);
            None for no bottleneck.
        compression: theta, the fraction of channels a transition keeps (0.5 for DenseNet-C/BC).
        drop_rate: dropout after each convolution of a dense layer (and of a transition).
        stem: "cifar" (3x3 conv, stride 1), "imagenet" (7x7/2 conv, BN, ReLU, 3x3/2 max pool),
            "conv-pool" (7x7/2 conv then 3x3/2 max pool, no BN: the TF-slim and
            Densenet-Tensorflow seeds) or "keras" (3x3 conv with bias, ReLU, BN: the Keras seed).
        in_channels, num_classes: input channels and classifier outputs.
        bn_eps, bn_momentum: BatchNorm epsilon and momentum (PyTorch convention).
        transition_after_last: also put a transition after the last block (the Keras seed).
        transition_channels: a fixed transition width instead of ``compression`` (Densenet-Tensorflow
            uses k channels for every transition).
        memory_efficient: recompute concat-BN-ReLU-conv1x1 in backward (Pleiss et al. 2017).
        stem_stride: stride of the "cifar" stem's 3x3 convolution (2 for small inputs on a CPU:
            no dense layer then runs at the input's full resolution; see models/compact.py).
    """

    def __init__(self, growth_rate: int = 32, block_config=(6, 12, 24, 16), num_init_features: int = 64,
                 bn_size: int | None = 4, compression: float = 0.5, drop_rate: float = 0.0,
                 stem: str = "imagenet", in_channels: int = 3, num_classes: int = 1000,
                 bn_eps: float = 1e-5, bn_momentum: float = 0.1, transition_after_last: bool = False,
                 transition_channels: int | None = None, memory_efficient: bool = False, stem_stride: int = 1):
        super().__init__()
        if not 0 < compression <= 1:
            raise ValueError(f"compression must be in (0, 1], got {compression}")
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {', '.join(STEMS)}, got {stem!r}")
        if stem_stride != 1 and stem != "cifar":
            raise ValueError(f"stem_stride applies to the 'cifar' stem only, not {stem!r}")
        norm = batch_norm(bn_eps, bn_momentum)
        self.features = nn.Sequential(OrderedDict(_stem(stem, in_channels, num_init_features, norm, stem_stride)))

        channels = num_init_features
        self.feature_info = []  # (module name, channels, reduction) after each dense block
        reduction = STEMS[stem] * stem_stride
        for i, num_layers in enumerate(block_config):
            block = DenseBlock(num_layers, channels, growth_rate, bn_size=bn_size, drop_rate=drop_rate,
                               memory_efficient=memory_efficient, norm_layer=norm)
            self.features.add_module(f"denseblock{i + 1}", block)
            channels = block.out_channels
            self.feature_info.append((f"denseblock{i + 1}", channels, reduction))
            if i < len(block_config) - 1 or transition_after_last:
                out = transition_channels or int(channels * compression)
                self.features.add_module(f"transition{i + 1}",
                                         Transition(channels, out, drop_rate, norm_layer=norm))
                channels, reduction = out, reduction * 2
        self.features.add_module("norm5", norm(channels))
        self.num_features = channels
        self.classifier = nn.Linear(channels, num_classes)
        self._init_weights()

    def _init_weights(self):
        # He init for convolutions (the paper follows He et al. 2015); BN to identity; zero bias.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    @property
    def memory_efficient(self) -> bool:
        return any(getattr(m, "memory_efficient", False) for m in self.modules() if m is not self)

    @memory_efficient.setter
    def memory_efficient(self, value: bool):
        """Switch recomputation on or off at run time; weights are unaffected."""
        for m in self.modules():
            if m is not self and hasattr(m, "memory_efficient"):
                m.memory_efficient = bool(value)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem and dense blocks, up to and including the final BatchNorm-ReLU."""
        return torch.relu(self.features(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pooling, then the classifier (skipped when ``pre_logits``)."""
        x = x.mean((2, 3))
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of every dense block (before its transition), for use as a backbone;
        ``feature_info`` gives their channels and strides (4/8/16/32 for the ImageNet stem)."""
        wanted = {name for name, _, _ in self.feature_info}
        outs = []
        for name, module in self.features.named_children():
            x = module(x)
            if name in wanted:
                outs.append(x)
        return outs

    def summary_stages(self) -> list[tuple[str, list[nn.Module]]]:
        """Stem, each dense block, each transition, head: the rows of ``densekit summary``."""
        children = list(self.features.named_children())
        stem = [m for n, m in children if n.endswith("0")]
        stages = [("stem", stem)] + [(n, [m]) for n, m in children if n[:-1] in ("denseblock", "transition")]
        return stages + [("head", [self.features.norm5, self.classifier])]

    def reset_classifier(self, num_classes: int):
        """Replace the classifier with a freshly initialised one of ``num_classes`` outputs."""
        self.classifier = nn.Linear(self.num_features, num_classes)
        nn.init.zeros_(self.classifier.bias)


# Stem name -> its stride, so ``feature_info`` knows each block's reduction.
STEMS = {"cifar": 1, "imagenet": 4, "conv-pool": 4, "keras": 1}


def _stem(kind: str, in_channels: int, width: int, norm, stride: int = 1) -> list[tuple[str, nn.Module]]:
    if kind == "cifar":
        return [("conv0", nn.Conv2d(in_channels, width, 3, stride, 1, bias=False))]
    if kind == "keras":
        # Keras Conv2D(16, 3, activation="relu") keeps its bias, and BN comes after the ReLU.
        return [("conv0", nn.Conv2d(in_channels, width, 3, 1, 1)), ("relu0", nn.ReLU(inplace=True)),
                ("norm0", norm(width))]
    conv = ("conv0", nn.Conv2d(in_channels, width, 7, 2, 3, bias=False))
    if kind == "conv-pool":
        # The TF seeds pool the raw convolution: their first BN-ReLU is the first dense layer's.
        return [conv, ("pool0", nn.MaxPool2d(3, 2, 1))]
    return [conv, ("norm0", norm(width)), ("relu0", nn.ReLU(inplace=True)), ("pool0", nn.MaxPool2d(3, 2, 1))]


# ---- Named configurations -------------------------------------------------------------------

def _paper_cifar(depth: int, k: int, bc: bool) -> dict:
    """The paper's CIFAR nets: 3 blocks of equal depth, 3x3 stem of 16 (or 2k for BC) channels."""
    per_block = (depth - 4) // (6 if bc else 3)
    return dict(growth_rate=k, block_config=(per_block,) * 3, num_init_features=2 * k if bc else 16,
                bn_size=4 if bc else None, compression=0.5 if bc else 1.0, stem="cifar",
                num_classes=10, in_channels=3)


for _depth, _k, _bc, _paper in [(40, 12, False, "1.0M, C10+ 5.24 / C100+ 24.42"),
                                 (100, 12, False, "7.0M, C10+ 4.10 / C100+ 20.20"),
                                 (100, 24, False, "27.2M, C10+ 3.74 / C100+ 19.25"),
                                 (40, 12, True, "BC variant used for fast tests"),
                                 (100, 12, True, "0.8M, C10+ 4.51 / C100+ 22.27"),
                                 (250, 24, True, "15.3M, C10+ 3.62 / C100+ 17.60"),
                                 (190, 40, True, "25.6M, C10+ 3.46 / C100+ 17.18")]:
    register_model(f"densenet{'-bc' if _bc else ''}-{_depth}-k{_k}", DenseNet,
                   meta={"family": "densenet", "source": "paper (CIFAR)", "paper": _paper, "input_size": (3, 32, 32)},
                   **_paper_cifar(_depth, _k, _bc))

for _name, _k, _init, _blocks in [("densenet121", 32, 64, (6, 12, 24, 16)),
                                   ("densenet169", 32, 64, (6, 12, 32, 32)),
                                   ("densenet201", 32, 64, (6, 12, 48, 32)),
                                   ("densenet161", 48, 96, (6, 12, 36, 24)),
                                   ("densenet264", 32, 64, (6, 12, 64, 48))]:
    register_model(_name, DenseNet, meta={"family": "densenet", "source": "paper (ImageNet) / torchvision",
                                          "input_size": (3, 224, 224)},
                   growth_rate=_k, block_config=_blocks, num_init_features=_init, bn_size=4,
                   compression=0.5, stem="imagenet", num_classes=1000, in_channels=3)

# The seeds' own networks (../shared/docs/seeds-brief.md), rebuilt layer for layer. Conv biases that
# a BatchNorm removes anyway (d2l's Gluon defaults) are left out; they change nothing the net computes.
_SEEDS = {
    # 000: TF-slim quiz net, 3 blocks [2, 4, 6], k=32, bottleneck 4k, dropout 0.5 (the run's flag),
    # slim's 7x7/2 conv + max pool stem of 2k channels; classes come from the dataset.
    "seed-slim-quiz": (dict(growth_rate=32, block_config=(2, 4, 6), num_init_features=64, bn_size=4,
                            compression=0.5, drop_rate=0.5, stem="conv-pool", in_channels=3),
                       "TF-slim DenseNet, seed 000", (3, 224, 224)),
    # 001: Densenet-Tensorflow MNIST: 2 x (4-layer block + transition to k channels) + a 32-layer
    # block, dropout 0.2, tf.contrib batch_norm (epsilon 1e-3).
    "seed-tf-mnist": (dict(growth_rate=12, block_config=(4, 4, 32), num_init_features=24, bn_size=4,
                           transition_channels=12, drop_rate=0.2, stem="conv-pool", bn_eps=1e-3,
                           in_channels=1, num_classes=10),
                      "Densenet-Tensorflow MNIST, seed 001 (99.2% MNIST)", (1, 28, 28)),
    # 003: d2l Fashion-MNIST net: 4 blocks of 4 plain BN-ReLU-conv3x3 layers, channels halved between.
    "seed-d2l-fashion": (dict(growth_rate=32, block_config=(4, 4, 4, 4), num_init_features=64, bn_size=None,
                              compression=0.5, stem="imagenet", in_channels=1, num_classes=10),
                         "d2l DenseNet, seed 003 (Fashion-MNIST 96x96: test acc 0.881)", (1, 96, 96)),
    # 004: TF2 Keras CIFAR-10 net: bottleneck 2k, a transition after every block, Keras BN epsilon.
    # BN momentum stays PyTorch's 0.1 (Keras' 0.99 is bn_momentum=0.01 here).
    "seed-keras-cifar10": (dict(growth_rate=32, block_config=(4, 8, 16), num_init_features=16, bn_size=2,
                                compression=0.5, transition_after_last=True, stem="keras", bn_eps=1.001e-5,
                                in_channels=3, num_classes=10),
                           "Keras DenseNet, seed 004 (CIFAR-10 test 90.07%)", (3, 32, 32)),
}
for _name, (_args, _paper, _size) in _SEEDS.items():
    register_model(_name, DenseNet, meta={"family": "densenet", "source": "seed", "paper": _paper,
                                          "input_size": _size}, **_args)
