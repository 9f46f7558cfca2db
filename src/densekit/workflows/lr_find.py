"""``densekit.lr_find``: the learning-rate range test (Smith, "Cyclical Learning Rates for Training
Neural Networks", arXiv 1506.01186; the sweep fastai's ``lr_find`` made popular).

The LR grows exponentially from ``start_lr`` to ``end_lr`` over ``num_iter`` optimizer steps of
the model, data, normalisation, augmentation, precision and optimizer that ``densekit train``
would build from the same ``TrainConfig`` (it is the trainer's own: ``engine.Trainer``). The loss
is smoothed with an exponential moving average (debiased, beta 0.98, as fastai); the sweep stops
once the smoothed loss exceeds ``diverge`` (4) times its minimum or turns non-finite.

The suggestion is the LR of the smallest smoothed loss divided by 10 (fastai's ``minimum``:
an order of magnitude below where the loss stops falling). The point of steepest descent of the
smoothed loss (fastai's ``steep``) is returned beside it and marked on the plot, but not
suggested: on short or noisy sweeps (the 8x8 digits at batch 32, 100 steps) the steepest slope
is often noise at a tiny LR, while the minimum / 10 landed next to the LR that trains well. Written here rather than taken from torch-lr-finder because the sweep must run the
trainer's on-device normalisation, batched augmentation, autocast and gradient accumulation,
which that library's model/loader interface would have to be wrapped around; the test is ~40 lines.
"""
from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..config import TrainConfig
from ..errors import DensekitError
from ..files import save_figure


@dataclass
class LRFind:
    """What ``lr_find`` returns. ``losses`` are the smoothed losses, one per LR in ``lrs``."""
    suggestion: float               # min_lr / 10: use as --lr
    min_lr: float                   # the LR of the smallest smoothed loss
    steepest: float                 # the LR where the smoothed loss falls fastest (not suggested)
    lrs: list = field(default_factory=list)
    losses: list = field(default_factory=list)
    raw_losses: list = field(default_factory=list)
    stopped_early: bool = False     # the loss diverged before end_lr
    start_lr: float = 1e-7
    end_lr: float = 10.0
    plot: str | None = None
    run_dir: str | None = None      # the kept run folder, if one was asked for

    def to_dict(self) -> dict:
        return asdict(self)


def suggest(lrs: list[float], losses: list[float]) -> tuple[float, float]:
    """(LR of the minimum, steepest-descent LR) of a smoothed loss curve. The first tenth of the
    points is skipped (fastai v1's ``skip_start``): there the average still rests on a handful of
    losses, and their noise, not the LR, makes the steepest slopes."""
    if len(lrs) < 5:
        raise DensekitError(f"the LR sweep took only {len(lrs)} step(s) before the loss diverged; "
                            "lower --start-lr or raise --num-iter")
    lo = torch.tensor(losses, dtype=torch.float64)
    log_lr = torch.tensor(lrs, dtype=torch.float64).log()
    skip = max(len(lrs) // 10, 1)
    best = skip + int(lo[skip:].argmin())
    slopes = (lo[2:] - lo[:-2]) / (log_lr[2:] - log_lr[:-2])     # central differences at points 1..n-2
    window = slopes[skip - 1:max(best - 1, skip)]                 # points skip..best-1: the descent
    steep = skip + int(window.argmin())
    return float(lrs[best]), float(lrs[steep])


def lr_find(config: TrainConfig | dict | None = None, start_lr: float = 1e-7, end_lr: float = 10.0,
            num_iter: int = 100, beta: float = 0.98, diverge: float = 4.0, plot: str | Path | None = "lr_find.png",
            keep: bool = False, verbose: bool = True, **overrides) -> LRFind:
    """Sweep the LR for the model and data of ``config`` (``overrides`` on top) and suggest one.

    The model is built and trained exactly as ``densekit train`` would (same data, split,
    augmentation, optimizer, precision), for ``num_iter`` steps at LRs growing exponentially from
    ``start_lr`` to ``end_lr``; epochs, time budget and LR schedule do not apply to a sweep.
    ``plot`` writes loss against LR with the suggestion marked (None: no plot). No run folder is
    left behind unless ``keep``: then ``config.out/NAME`` holds config.yaml, lr_find.json and
    lr_find.png (and ``plot`` defaults there)."""
    from ..engine.trainer import Trainer

    if config is None:
        config = TrainConfig()
    elif isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    if overrides:
        config = config.replace(**overrides)
    if not 0 < start_lr < end_lr:
        raise DensekitError(f"LR sweep from {start_lr:g} to {end_lr:g}: need 0 < --start-lr < --end-lr")
    if num_iter < 3:
        raise DensekitError(f"--num-iter {num_iter}: the sweep needs at least 3 steps (100 is usual)")
    if not diverge > 1:
        raise DensekitError(f"--diverge {diverge:g}: the stopping factor must be above 1 (4 is usual)")
    if not 0 <= beta < 1:
        raise DensekitError(f"smoothing {beta:g}: must be in [0, 1) (0.98 is usual)")

    tmp = None if keep else tempfile.mkdtemp(prefix="densekit-lr-find-")
    trainer = None
    try:
        cfg = config.replace(out=config.out if keep else tmp, tensorboard=False, plots=False,
                             name=config.name or (f"lr-find-{config.model}-{config.dataset.split(':')[0]}"
                                                  if keep else "lr-find"))
        trainer = Trainer(cfg, verbose=False)
        result = _sweep(trainer, start_lr, end_lr, num_iter, beta, diverge, verbose)
        if keep:
            run_dir = trainer.run.path
            shutil.rmtree(trainer.run.checkpoints, ignore_errors=True)   # nothing was trained to keep
            result.run_dir = str(run_dir)
            if plot == "lr_find.png":
                plot = run_dir / "lr_find.png"
        if plot is not None:
            plot_lr_find(result, Path(plot), title=f"{cfg.model} on {cfg.dataset}, batch {cfg.batch_size}, "
                                                   f"{cfg.optimizer}")
            result.plot = str(plot)
        if keep:
            trainer.run.write_json("lr_find.json", result.to_dict())
        return result
    finally:
        if trainer is not None:
            trainer.run.unlock()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _sweep(t, start_lr, end_lr, num_iter, beta, diverge, verbose) -> LRFind:
    """The trainer's own training step (``Trainer.prepare`` and ``Trainer.step``: normalisation,
    augmentation, loss, clipping, scaler, accumulation) at LR ``start_lr * q**i``."""
    from ..engine.progress import ProgressBar

    from ..models.finetune import set_frozen

    cfg, model = t.cfg, t.model
    model.train()
    set_frozen(model, t.frozen, True)      # the sweep is for the first epochs: what --freeze trains
    q = (end_lr / start_lr) ** (1 / (num_iter - 1))
    lrs, smooth, raw = [], [], []
    avg, best, stopped = 0.0, math.inf, False
    bar = ProgressBar(num_iter, "lr sweep", enabled=verbose)
    epoch, batch_in_acc, acc_loss = 0, 0, 0.0
    while len(lrs) < num_iter and not stopped:
        for step, (x, y) in enumerate(t.loader.epoch(epoch)):
            lr = start_lr * q ** len(lrs)
            x, target = t.prepare(x, y, epoch, step)
            loss, _ = t.step(x, target, lr, index=step)   # the index decides when accumulated gradients apply
            acc_loss += loss.item() / cfg.accumulate
            batch_in_acc += 1
            if batch_in_acc < cfg.accumulate:
                continue
            value, batch_in_acc, acc_loss = acc_loss, 0, 0.0
            lrs.append(lr)
            raw.append(value)
            if not math.isfinite(value):
                stopped = True
                lrs.pop(), raw.pop()
                break
            avg = beta * avg + (1 - beta) * value
            smoothed = avg / (1 - beta ** len(lrs))        # debiased, as Adam's moments
            smooth.append(smoothed)
            best = min(best, smoothed)
            bar.update(len(lrs), lr=f"{lr:.2e}", loss=f"{smoothed:.4f}")
            if smoothed > diverge * best:
                stopped = True
                break
            if len(lrs) == num_iter:
                break
        epoch += 1
    bar.close()
    min_lr, steepest = suggest(lrs, smooth)
    return LRFind(suggestion=min_lr / 10, min_lr=min_lr, steepest=steepest, lrs=lrs, losses=smooth, raw_losses=raw,
                  stopped_early=stopped, start_lr=start_lr, end_lr=end_lr)


def plot_lr_find(result: LRFind, path: Path, title: str = ""):
    """Smoothed loss against LR (log scale), the suggestion (minimum / 10), the minimum and the
    steepest descent marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(result.lrs, result.raw_losses, color="0.8", lw=0.8, label="loss per step")
    ax.plot(result.lrs, result.losses, lw=1.5, label="smoothed loss")
    ax.axvline(result.suggestion, color="C3", lw=1.5, label=f"suggestion {result.suggestion:.2e} (minimum / 10)")
    for lr, style, name in ((result.min_lr, "o", "minimum"), (result.steepest, "v", "steepest descent")):
        ax.plot([lr], [result.losses[result.lrs.index(lr)]], style, color="0.3", label=f"{name} {lr:.2e}")
    ax.set_xscale("log")
    low, high = min(result.losses), max(result.losses)
    ax.set_ylim(low - 0.05 * (high - low + 1e-9), min(high, low + 2 * (result.losses[0] - low) + 1e-9) * 1.05)
    ax.set(xlabel="learning rate", ylabel="training loss", title=title or "LR range test")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
