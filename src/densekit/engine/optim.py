"""Optimizers, with weight decay kept off BatchNorm and bias parameters when asked."""
from __future__ import annotations

import torch
from torch import nn

DEFAULT_LR = {"sgd": 0.1, "adam": 1e-3, "adamw": 1e-3, "rmsprop": 1e-3}


def param_groups(model: nn.Module, weight_decay: float, exclude_norm_bias: bool) -> list[dict]:
    if not exclude_norm_bias or weight_decay == 0:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}]
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            # 1-d tensors are BN scales/shifts and biases: decaying them only fights normalisation.
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, cfg) -> torch.optim.Optimizer:
    lr = base_lr(cfg)
    groups = param_groups(model, cfg.weight_decay, cfg.wd_exclude_norm_bias)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=lr)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    return torch.optim.RMSprop(groups, lr=lr, momentum=cfg.momentum if cfg.momentum else 0.0)


def base_lr(cfg) -> float:
    lr = cfg.lr if cfg.lr is not None else DEFAULT_LR[cfg.optimizer]
    return lr * cfg.batch_size * cfg.accumulate / 128 if cfg.scale_lr else lr
