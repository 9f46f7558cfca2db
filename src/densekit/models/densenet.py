"""DenseNet (Huang et al., "Densely Connected Convolutional Networks", arXiv 1608.06993).

Every structural knob is a constructor argument; named configurations of the paper, of
torchvision and of the seed projects are registered at the bottom of this file.
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
        stem: "cifar" (3x3 conv, stride 1) or "imagenet" (7x7/2 conv, BN, ReLU, 3x3/2 max pool).
        in_channels, num_classes: input channels and classifier outputs.
        bn_eps, bn_momentum: BatchNorm epsilon and momentum (PyTorch convention).
        transition_after_last: also put a transition after the last block (the Keras seed).
        memory_efficient: recompute concat-BN-ReLU-conv1x1 in backward (Pleiss et al. 2017).
    """

    def __init__(self, growth_rate: int = 32, block_config=(6, 12, 24, 16), num_init_features: int = 64,
                 bn_size: int | None = 4, compression: float = 0.5, drop_rate: float = 0.0,
                 stem: str = "imagenet", in_channels: int = 3, num_classes: int = 1000,
                 bn_eps: float = 1e-5, bn_momentum: float = 0.1, transition_after_last: bool = False,
                 memory_efficient: bool = False):
        super().__init__()
        if not 0 < compression <= 1:
            raise ValueError(f"compression must be in (0, 1], got {compression}")
        if stem not in ("cifar", "imagenet"):
            raise ValueError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")
        norm = batch_norm(bn_eps, bn_momentum)
        if stem == "imagenet":
            layers = [("conv0", nn.Conv2d(in_channels, num_init_features, 7, 2, 3, bias=False)),
                      ("norm0", norm(num_init_features)), ("relu0", nn.ReLU(inplace=True)),
                      ("pool0", nn.MaxPool2d(3, 2, 1))]
        else:
            layers = [("conv0", nn.Conv2d(in_channels, num_init_features, 3, 1, 1, bias=False))]
        self.features = nn.Sequential(OrderedDict(layers))

        channels = num_init_features
        self.feature_info = []  # (module name, channels, reduction) after each dense block
        reduction = 4 if stem == "imagenet" else 1
        for i, num_layers in enumerate(block_config):
            block = DenseBlock(num_layers, channels, growth_rate, bn_size=bn_size, drop_rate=drop_rate,
                               memory_efficient=memory_efficient, norm_layer=norm)
            self.features.add_module(f"denseblock{i + 1}", block)
            channels = block.out_channels
            self.feature_info.append((f"denseblock{i + 1}", channels, reduction))
            if i < len(block_config) - 1 or transition_after_last:
                out = int(channels * compression)
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

    def reset_classifier(self, num_classes: int):
        """Replace the classifier with a freshly initialised one of ``num_classes`` outputs."""
        self.classifier = nn.Linear(self.num_features, num_classes)
        nn.init.zeros_(self.classifier.bias)


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
