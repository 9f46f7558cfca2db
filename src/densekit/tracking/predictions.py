"""The eval model's outputs on the test split, computed once per run and shared by the callbacks
that need more than the trainer's summary (embeddings, worst-classified images)."""
from __future__ import annotations

import torch

from .. import data as D
from ..data.augment import TTA
from ..engine.precision import autocast


@torch.no_grad()
def test_outputs(trainer) -> dict | None:
    """``{"labels", "logits", "features"}`` over the test split (None without one); ``features``
    (penultimate layer) only for the first ``cfg.embeddings`` images, to bound memory on big sets.

    Called from ``on_train_end``, after the trainer loaded the best checkpoint into the eval model,
    so these are the predictions the summary's test accuracy was measured on (with the run's
    test-time augmentation; the features are the plain view's)."""
    if getattr(trainer, "test_ds", None) is None:
        return None
    cached = getattr(trainer, "_test_outputs", None)
    if cached is not None:
        return cached
    model, keep = trainer.eval_model(), trainer.cfg.embeddings
    was_training = model.training
    model.eval()
    labels, logits, features, kept = [], [], [], 0
    for x, y in D.Loader(trainer.test_ds, trainer.cfg.eval_batch_size, device=trainer.device, workers=0).epoch():
        x = trainer.normalize(x).contiguous(memory_format=trainer.memory_format)
        with autocast(trainer.device, trainer.dtype):
            feat = model.forward_features(x)     # every registered model has this surface (timm's)
            pre, out = model.forward_head(feat, pre_logits=True), model.forward_head(feat)
            # with test-time augmentation, the other views' logits averaged in, as run_eval does
            out = torch.stack([out.float()] + [model(v).float() for v in TTA[trainer.tta](x)[1:]]).mean(0)
        labels.append(y.cpu())
        logits.append(out.cpu())
        if kept < keep:
            features.append(pre[:keep - kept].float().cpu())
            kept += len(features[-1])
    model.train(was_training)
    trainer._test_outputs = {"labels": torch.cat(labels), "logits": torch.cat(logits),
                             "features": torch.cat(features) if features else torch.zeros(0)}
    return trainer._test_outputs


def image_batch(ds, indices) -> torch.Tensor:
    """uint8 N x C x H x W images of ``ds`` at ``indices`` (works for streamed sets too)."""
    return torch.stack([ds[i][0] for i in indices]) if len(indices) else torch.zeros(0, *ds.shape, dtype=torch.uint8)
