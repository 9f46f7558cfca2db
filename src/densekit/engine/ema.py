"""Exponential moving average of weights (Polyak averaging), evaluated and saved alongside."""
from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, decay: float):
        self.decay, self.updates = decay, 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module):
        # Warm the decay up from 0.1 (as timm does): a fixed 0.999 over a run of a few thousand steps
        # would keep a tenth of the random initialisation in the average.
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for e, p in zip(self.module.parameters(), model.parameters()):
            e.lerp_(p.detach(), 1 - decay)
        for e, b in zip(self.module.buffers(), model.buffers()):
            e.copy_(b)  # BN running statistics follow the live model

    def state_dict(self):
        return self.module.state_dict()

    def load_state_dict(self, state):
        self.module.load_state_dict(state)
