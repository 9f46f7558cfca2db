"""The training loop: config -> data -> model -> steps -> run folder. Readable top to bottom.

Speed comes from a few visible choices: the data set resident in memory as uint8, batches
normalised and augmented as tensors on the training device, channels-last and autocast per the
device's fast defaults (``precision.py``), optional ``torch.compile``.
Every checkpoint holds what resuming needs (weights, optimizer, progress, RNG), and the data
order and augmentation are functions of (seed, epoch, step), so a resumed run continues
exactly where the interrupted one stood.
"""
from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import data as D
from ..data import augment as A
from ..data.balance import class_weights
from ..data.dataset import MissingSplit
from ..data.splits import carve_val
from ..config import TrainConfig
from ..errors import DensekitError
from ..models import create_model, get_entry
from ..models.finetune import frozen_modules, set_frozen
from ..models.pretrained import pretrained_stats
from . import distributed
from .checkpoint import load_checkpoint, save_checkpoint
from .ema import EMA
from .evaluate import run_eval, tta_note
from .metrics import class_metrics
from .optim import base_lr, build_optimizer
from .precision import autocast, fast_defaults, peak_memory_mb, pick_device, precision_name, resolve_precision
from .progress import ProgressBar, fmt_time
from .run import RunFolder, now
from .schedule import lr_factor


@dataclass
class Run:
    """What ``train`` returns: the run folder, its per-epoch metrics and the final summary."""
    dir: Path
    summary: dict
    metrics: list = field(default_factory=list)


def _new_partial() -> dict:
    """The running sums of an epoch in progress (checkpointed, so a resumed epoch reports whole)."""
    return {"loss": 0.0, "correct": 0.0, "seen": 0, "data_time": 0.0, "compute_time": 0.0}


class Callback:
    """Hooks for tracking (TensorBoard, plots) and control; set ``trainer.stop = True`` to stop."""

    def on_train_start(self, trainer): ...
    def on_epoch_end(self, trainer, record: dict): ...
    def on_train_end(self, trainer, summary: dict): ...


class Trainer:
    def __init__(self, cfg: TrainConfig, resume: str | Path | None = None, callbacks=(), verbose: bool = True):
        self.verbose, self.stop, self.early_stopped = verbose, False, False
        payload = None
        if resume is not None:
            payload = load_checkpoint(Path(resume) / "checkpoints" / "last.pt")
            # Only how long to train may change on resume; everything else is the run's own.
            cfg = TrainConfig.from_dict(payload["config"]).replace(epochs=cfg.epochs, time_budget=cfg.time_budget)
        self.cfg = cfg = cfg.validate()
        get_entry(cfg.model)  # an unknown model fails before any data is read
        self.device = pick_device(cfg.device)
        self.rank, self.world_size = distributed.init(self.device)
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)

        # -- data -----------------------------------------------------------------------------
        opts = dict(image_size=cfg.image_size, channels=cfg.channels, skip_bad=cfg.skip_bad)
        opts = {k: v for k, v in opts.items() if v not in (None, False)}
        train_ds = D.load_dataset(cfg.dataset, "train", cfg.data_dir, **opts)
        val_ds = self._optional_split("val", opts)
        if val_ds is None and cfg.val_split:
            train_ds, val_ds = carve_val(train_ds, cfg.val_split, cfg.seed)
        self.test_ds = self._optional_split("test", opts)
        self.train_ds, self.val_ds = train_ds, val_ds
        self.classes = list(train_ds.classes)
        channels, height, width = train_ds.shape
        if payload is not None:
            mean, std = payload["data"]["mean"], payload["data"]["std"]
        elif cfg.pretrained:                   # the statistics the weights were trained with
            mean, std = pretrained_stats(channels)
        else:
            mean, std = D.channel_stats(train_ds, workers=cfg.workers)
        self.normalize = D.Normalize(mean, std)
        self.augment = A.Augment(self._augment_preset(), seed=cfg.seed, num_classes=len(train_ds.classes))
        self.tta = A.default_tta(self.augment.preset) if cfg.tta == "auto" else cfg.tta
        self.loader = D.Loader(train_ds, cfg.batch_size, shuffle=True, seed=cfg.seed, drop_last=len(train_ds) > cfg.batch_size,
                               device=self.device, workers=cfg.workers, rank=self.rank, world_size=self.world_size,
                               balanced=cfg.sampler == "balanced")
        weights = class_weights(cfg.class_weights, train_ds.labels, self.classes)
        self.class_weights = None if weights is None else weights.to(self.device)
        self.data_info = {"classes": self.classes, "mean": list(mean), "std": list(std),
                          "channels": channels, "image_size": [height, width], "dataset": cfg.dataset,
                          "tta": self.tta}

        # -- model, precision, optimizer ----------------------------------------------------------
        self.model = create_model(cfg.model, num_classes=len(self.classes), in_channels=channels, **cfg.model_args,
                                  pretrained=cfg.pretrained and payload is None,
                                  weights=cfg.weights if payload is None else None)
        self.frozen = frozen_modules(self.model, cfg.freeze) if cfg.freeze else []
        self.model_spec = {"name": cfg.model, "args": self.model.model_args}
        fast = fast_defaults(self.device)
        self.dtype = resolve_precision(cfg.precision, self.device)
        self.channels_last = fast["channels_last"] if cfg.channels_last is None else cfg.channels_last
        self.memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        self.model.to(self.device, memory_format=self.memory_format)
        self.optimizer = build_optimizer(self.model, cfg)
        self.base_lr = base_lr(cfg)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
        self.ema = EMA(self.model, cfg.ema) if cfg.ema else None
        self.net = self.model
        if self.world_size > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=bool(self.frozen))   # frozen parameters get no gradient
        if cfg.compile:
            self.net = torch.compile(self.net)

        # -- progress -----------------------------------------------------------------------------
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.elapsed = 0.0                    # training seconds before this process started
        self.now = 0.0                        # seconds since fit() started, as of the last _tick()
        self.compile_s = None                 # torch.compile's cost: the first compiled step's time
        self.best, self.bad_epochs = None, 0
        self.early_best = None
        self.partial = _new_partial()
        self.initial_loss = None
        self.planned_steps = cfg.epochs * len(self.loader) // cfg.accumulate * cfg.accumulate
        if payload is not None:
            self._restore(payload)
            self.run = RunFolder(Path(resume), main=self.rank == 0)
            self.run.truncate_metrics(self.epoch)
        else:
            name = distributed.same_on_all_ranks(
                cfg.name or f"{cfg.model}-{cfg.dataset.split(':')[0]}-{time.strftime('%Y%m%d-%H%M%S')}")
            self.run = RunFolder.create(cfg.out, name, main=self.rank == 0)
        self.run.write_config({**cfg.to_dict(), "resolved": {"model": self.model_spec, "data": self.data_info,
                                                             "device": str(self.device),
                                                             "precision": precision_name(self.dtype),
                                                             "channels_last": self.channels_last}})
        self.callbacks = list(callbacks)

    def _optional_split(self, split, opts):
        try:
            return D.load_dataset(self.cfg.dataset, split, self.cfg.data_dir, **opts)
        except MissingSplit:   # the source simply has no such split
            return None

    def _augment_preset(self) -> str:
        if self.cfg.augment != "auto":
            return self.cfg.augment
        return A.default_augment(self.cfg.dataset)

    # -- checkpoints ----------------------------------------------------------------------------------
    def _payload(self, kind: str = "training") -> dict:
        payload = {"kind": kind, "model": self.model_spec, "data": self.data_info,
                   "state_dict": self.model.state_dict(),
                   "ema_state_dict": self.ema.state_dict() if self.ema else None}
        if kind == "training":
            payload.update(
                optimizer=self.optimizer.state_dict(), scaler=self.scaler.state_dict(), config=self.cfg.to_dict(),
                progress={"epoch": self.epoch, "step": self.step_in_epoch, "global_step": self.global_step,
                          "elapsed": self.elapsed + self._clock(), "best": self.best, "bad_epochs": self.bad_epochs,
                          "early_best": self.early_best, "partial": dict(self.partial),
                          "initial_loss": self.initial_loss, "ema_updates": self.ema.updates if self.ema else 0},
                rng={"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
                     "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else []})
        return payload

    def _restore(self, payload: dict):
        self.model.load_state_dict(payload["state_dict"])
        if self.ema and payload.get("ema_state_dict"):
            self.ema.load_state_dict(payload["ema_state_dict"])
            self.ema.updates = payload["progress"].get("ema_updates", 0)
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scaler.load_state_dict(payload["scaler"])
        p = payload["progress"]
        self.epoch, self.step_in_epoch, self.global_step = p["epoch"], p["step"], p["global_step"]
        self.elapsed, self.best, self.bad_epochs = p["elapsed"], p["best"], p["bad_epochs"]
        self.early_best, self.partial, self.initial_loss = p["early_best"], p["partial"], p["initial_loss"]
        torch.set_rng_state(payload["rng"]["torch"])
        random.setstate((3, tuple(payload["rng"]["python"]), None))
        if payload["rng"]["cuda"] and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(payload["rng"]["cuda"])

    def save(self, which: str = "last"):
        if self.rank == 0:
            save_checkpoint(self._payload(), self.run.checkpoint(which))
        distributed.barrier()

    # -- the loop -------------------------------------------------------------------------------------
    def _clock(self) -> float:
        return time.perf_counter() - self.t0 if hasattr(self, "t0") else 0.0

    def _tick(self):
        """Read the clock for this step's time-based decisions: rank 0's reading on every rank
        (``distributed.same_on_all_ranks``), taken at points all ranks pass in step."""
        self.now = distributed.same_on_all_ranks(self._clock())

    def progress(self) -> float:
        """Fraction of training done, which drives the LR schedule. Under a time budget it is the
        fraction of the budget spent: the measured step time is only a forecast on a shared or
        throttled machine, while the clock guarantees the schedule completes (the LR anneals)
        exactly when the budget ends, however the speed changes on the way."""
        if self.cfg.time_budget:
            return (self.elapsed + self.now) / self.cfg.time_budget
        return self.global_step / max(self.planned_steps, 1)

    def log(self, text: str):
        if self.verbose and self.rank == 0:
            print(text, flush=True)

    def fit(self) -> Run:
        cfg = self.cfg
        self.t0, self.now = time.perf_counter(), 0.0
        self.run.write_status("running", started=self.run.read_status().get("started", now()), pid=os.getpid())
        for cb in self.callbacks:
            cb.on_train_start(self)
        budget = f", time budget {fmt_time(cfg.time_budget)}" if cfg.time_budget else ""
        self.log(f"training {cfg.model} ({sum(p.numel() for p in self.model.parameters()):,} params) on "
                 f"{cfg.dataset}: {len(self.train_ds):,} train / {len(self.val_ds) if self.val_ds else 0:,} val / "
                 f"{len(self.test_ds) if self.test_ds else 0:,} test, {self.device}, "
                 f"{precision_name(self.dtype)}{budget} -> {self.run.path}")
        max_epochs = 10**6 if cfg.time_budget else cfg.epochs
        try:
            while self.epoch < max_epochs and not self.stop:
                self._tick()
                if self.progress() >= 1:
                    break
                self._train_epoch()
                if self.stop and self.step_in_epoch:   # stopped mid-epoch: last.pt already saved
                    break
                self._end_epoch()
        except KeyboardInterrupt:
            self.run.write_status("stopped")
            raise
        except Exception:
            if self.run.read_status().get("status") != "diverged":   # the guard writes its own
                self.run.write_status("failed")
            raise
        return self._finish()

    def _train_epoch(self):
        cfg, model, net = self.cfg, self.model, self.net
        model.train()
        set_frozen(model, self.frozen, not cfg.unfreeze_after or self.epoch < cfg.unfreeze_after)
        n_steps = len(self.loader)
        bar = ProgressBar(n_steps, f"epoch {self.epoch + 1}", enabled=self.verbose and self.rank == 0)
        part = self.partial
        last_save = self.now
        t_data = time.perf_counter()
        check_every = 1 if self.device.type == "cpu" else 10
        for x, y in self.loader.epoch(self.epoch, self.step_in_epoch):
            x = self.normalize(x).contiguous(memory_format=self.memory_format)
            x, target = self.augment(x, y, self.epoch, self.step_in_epoch)
            t_compute = time.perf_counter()
            part["data_time"] += t_compute - t_data

            lr = self.base_lr * lr_factor(self.progress(), cfg.schedule, cfg.warmup,
                                          cfg.milestones, cfg.step_size, cfg.gamma)
            for group in self.optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)     # --lr-backbone
            with autocast(self.device, self.dtype):
                logits = net(x)
                loss = F.cross_entropy(logits.float(), target, weight=self.class_weights,
                                       label_smoothing=cfg.label_smoothing)
            self.scaler.scale(loss / cfg.accumulate).backward()
            if (self.step_in_epoch + 1) % cfg.accumulate == 0:
                if cfg.clip_grad:
                    self.scaler.unscale_(self.optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
                if self.ema:
                    self.ema.update(model)

            if cfg.compile and self.compile_s is None:   # compilation happens inside the first step
                self.compile_s = time.perf_counter() - t_compute
                self.log(f"torch.compile: the first step took {self.compile_s:.1f}s (compilation)")
            self.step_in_epoch += 1
            self.global_step += 1
            hard = target if target.dim() == 1 else target.argmax(1)
            if self.step_in_epoch % check_every == 0 or self.step_in_epoch == n_steps:
                self._guard(distributed.mean_over_ranks(loss.item()))
            part["loss"] += loss.detach().float() * len(y)
            part["correct"] += (logits.detach().argmax(1) == hard).sum()
            part["seen"] += len(y)
            part["compute_time"] += time.perf_counter() - t_compute
            seen = max(part["seen"], 1)
            bar.update(self.step_in_epoch, loss=f"{float(part['loss']) / seen:.4f}",
                       acc=f"{100 * float(part['correct']) / seen:.1f}%",
                       **{"img/s": f"{seen / max(part['data_time'] + part['compute_time'], 1e-9):.0f}"})
            self._tick()
            if self.now - last_save > cfg.checkpoint_every and self.step_in_epoch % cfg.accumulate == 0:
                self.save("last")
                last_save = self.now
            if self.stop or self.progress() >= 1:
                break
            t_data = time.perf_counter()
        bar.close()
        if self.step_in_epoch < n_steps and self.stop and self.progress() < 1:
            self.save("last")

    def _guard(self, loss: float):
        """Stop on a NaN/inf or exploding loss, keeping the last good checkpoint."""
        if self.initial_loss is None and math.isfinite(loss):
            self.initial_loss = loss
        limit = self.cfg.divergence_factor * max(self.initial_loss or 0.0, math.log(len(self.classes)))
        if math.isfinite(loss) and loss <= limit:
            return
        what = "not a number" if math.isnan(loss) else ("infinite" if math.isinf(loss) else
                                                         f"{loss:.3g}, over {self.cfg.divergence_factor:g}x the initial {self.initial_loss:.3g}")
        self.run.write_status("diverged", step=self.global_step)
        kept = self.run.checkpoint("last")
        kept = f"the last good checkpoint is {kept}" if kept.exists() else "no checkpoint was written before it"
        raise DensekitError(f"training diverged at epoch {self.epoch + 1} step {self.step_in_epoch}: the loss is {what}; "
                            f"lower the learning rate (now {self.cfg.optimizer} lr {self.base_lr:g}) or add --warmup 0.05; {kept}")

    def _end_epoch(self):
        cfg, part = self.cfg, self.partial
        loss_sum, correct, count = distributed.sum_over_ranks([float(part["loss"]), float(part["correct"]), part["seen"]])
        seen = max(count, 1)   # every rank's images: the epoch's figures are the whole batch's, not one shard's
        record = {"epoch": self.epoch + 1, "global_step": self.global_step,
                  "lr": self.optimizer.param_groups[0]["lr"], "train_images": int(count),
                  "train_loss": loss_sum / seen, "train_top1": correct / seen,
                  "images_per_s": seen / max(part["data_time"] + part["compute_time"], 1e-9),
                  "data_time_s": part["data_time"], "compute_time_s": part["compute_time"]}
        if self.val_ds is not None:
            val = run_eval(self.eval_model(), self.val_ds, self.normalize, self.device, self.dtype,
                           self.memory_format, self.cfg.eval_batch_size, len(self.classes))
            # Rank 0's figures everywhere: each rank's BN running statistics took its own last
            # batch, so the ranks' validation can differ, and the best-checkpoint and early-stop
            # decisions (barriers) made from it must not.
            record.update(distributed.same_on_all_ranks(
                {"val_loss": val["loss"], "val_top1": val["top1"], "val_top5": val["top5"]}))
        self.epoch += 1
        self.step_in_epoch = 0
        self.partial = _new_partial()
        record["elapsed_s"] = self.elapsed + self._clock()
        improved = self._track_best(record)
        self.run.append_metrics(record)
        self.save("last")
        if improved:
            self.save("best")
        for cb in self.callbacks:
            cb.on_epoch_end(self, record)
        # A callback may stop the run on one rank only (it sees that rank's state): stop all of
        # them, or the others would wait forever in the next epoch's all-reduce.
        self.stop = distributed.sum_over_ranks([float(self.stop)])[0] > 0
        val_txt = f" val loss {record['val_loss']:.4f} top1 {100 * record['val_top1']:.2f}%" if "val_top1" in record else ""
        self.log(f"epoch {record['epoch']}: train loss {record['train_loss']:.4f} top1 "
                 f"{100 * record['train_top1']:.2f}%{val_txt} lr {record['lr']:.3g} "
                 f"{record['images_per_s']:.0f} img/s (data {record['data_time_s']:.1f}s, "
                 f"compute {record['compute_time_s']:.1f}s) [{fmt_time(record['elapsed_s'])}]")

    def eval_model(self):
        return self.ema.module if self.ema else self.model

    def _track_best(self, record: dict) -> bool:
        """Update best-checkpoint and early-stopping state; True when this epoch is the new best."""
        cfg = self.cfg
        metric = cfg.best_metric if cfg.best_metric in record else "train_top1"
        value, lower = record[metric], metric.endswith("loss")
        improved = self.best is None or (value < self.best if lower else value > self.best)
        if improved:
            self.best = value
        if cfg.early_stop_patience and cfg.early_stop_metric in record:
            v, low = record[cfg.early_stop_metric], cfg.early_stop_metric.endswith("loss")
            if self.early_best is None or (v < self.early_best if low else v > self.early_best):
                self.early_best, self.bad_epochs = v, 0
            else:
                self.bad_epochs += 1
                if self.bad_epochs >= cfg.early_stop_patience:
                    self.log(f"early stopping: {cfg.early_stop_metric} has not improved for {self.bad_epochs} epochs")
                    self.stop = self.early_stopped = True
        return improved

    def _finish(self) -> Run:
        """Evaluate the best checkpoint (by validation) on the test split and write the summary."""
        finished = not self.stop or self.early_stopped
        metrics = self.run.read_metrics()
        summary = {"model": self.cfg.model, "dataset": self.cfg.dataset, "epochs": self.epoch,
                   "global_step": self.global_step, "duration_s": self.elapsed + self._clock(),
                   "params": sum(p.numel() for p in self.model.parameters()),
                   "train_images_per_s": sum(r["images_per_s"] for r in metrics) / max(len(metrics), 1),
                   "peak_memory_mb": peak_memory_mb(self.device), "best_" + self.cfg.best_metric: self.best,
                   "run_dir": str(self.run.path)}
        if self.cfg.time_budget:
            summary["time_budget_s"] = self.cfg.time_budget
        if self.compile_s is not None:
            summary["compile_s"] = self.compile_s
        if self.test_ds is not None and finished:
            best = self.run.checkpoint("best")
            model = self.eval_model()
            if best.exists() and self.val_ds is not None:
                payload = load_checkpoint(best, map_location=self.device)
                model.load_state_dict(payload["ema_state_dict"] or payload["state_dict"])
            test = run_eval(model, self.test_ds, self.normalize, self.device, self.dtype, self.memory_format,
                            self.cfg.eval_batch_size, len(self.classes), per_class=True, tta=self.tta)
            summary.update(test_loss=test["loss"], test_top1=test["top1"], test_top5=test["top5"],
                           test_count=test["count"], test_tta=self.tta,
                           per_class={c: a for c, a in zip(self.classes, test["per_class"])},
                           class_metrics=class_metrics(test["confusion"], self.classes))
            if "top1_single" in test:
                summary["test_top1_single"] = test["top1_single"]
            self.test_result = test
            self.log(f"test: top1 {100 * test['top1']:.2f}%{tta_note(test)}  top5 {100 * test['top5']:.2f}%  loss {test['loss']:.4f} "
                     f"({test['count']:,} images, {'best' if best.exists() and self.val_ds is not None else 'last'} checkpoint)")
        self.run.write_json("summary.json", summary)
        self.run.write_status("finished" if finished else "stopped", ended=now(), summary={
            k: v for k, v in summary.items() if k not in ("per_class", "class_metrics")})
        for cb in self.callbacks:
            cb.on_train_end(self, summary)
        self.log(f"run folder: {self.run.path}")
        return Run(self.run.path, summary, metrics)

