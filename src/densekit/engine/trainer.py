"""The training loop: config -> data -> model -> steps -> run folder. Readable top to bottom.

Speed comes from a few visible choices: the data set resident in memory as uint8, batches
normalised and augmented as tensors on the training device, channels-last and autocast per the
device's fast defaults (``precision.py``), optional ``torch.compile``.

A kill at any instant loses nothing that was saved and changes no result. ``checkpoints/last.pt``
is the one commit point: it holds the weights, optimizer, progress, RNG and the journal of
finished epochs (``history``) that ``metrics.jsonl`` is rewritten from. At an epoch's end the
order is validate -> best.pt (when improved) -> last.pt -> metrics.jsonl, so a kill before
last.pt is replaced resumes at the end of the epoch's steps and redoes its validation and best
decision, and the data order and augmentation are functions of (seed, epoch, step), so the
resumed run computes exactly what the interrupted one would have. SIGINT and SIGTERM stop at
the next step boundary with a checkpoint.

Setup (settings, data, model, run folder) is one linear step apart from the loop
(``engine/setup.py``); the per-epoch sums are ``distributed.EpochTally``. The file stays over 350
lines on purpose: the loop, its commit points (``save``/``restore``), its stop paths (signals,
divergence, early stopping) and the final summary are one protocol, and the kill/resume
guarantee above is only checkable when they are read together.
"""
from __future__ import annotations

import math
import os
import random
import shlex
import signal
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ..config import TrainConfig
from ..errors import DensekitError
from ..files import WriteError
from ..models import get_entry
from ..models.finetune import set_frozen
from . import checkpoint, distributed, setup
from .calibration import calibrate_run
from .callbacks import Callback, Context, Run
from .distributed import EpochTally
from .evaluate import EvalOptions, run_eval
from .metrics import class_metrics
from .precision import autocast, peak_memory_mb, pick_device, precision_name
from .progress import ProgressBar, fmt_time
from .run import check_run_name, now, resume_settings
from .losses import multilabel_loss
from .multilabel import summary_figures, thresholds_of
from .schedule import lr_factor, plateau_factor

__all__ = ["Callback", "Context", "Run", "Trainer"]


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _versions() -> dict:
    import platform

    from .. import __version__
    return {"densekit": __version__, "torch": str(torch.__version__), "python": platform.python_version()}


class Trainer:
    """One training run: ``__init__`` sets it up (one linear step, ``engine/setup.py``), ``fit``
    runs the loop; ``prepare`` and ``step`` are one optimisation step, which ``lr_find`` uses too."""

    def __init__(self, cfg: TrainConfig, resume: str | Path | None = None, callbacks=(), verbose: bool = True,
                 payload: dict | None = None, command: str | None = None):
        """``resume``: a run folder to continue; ``payload``: its last checkpoint when the caller has
        already reconciled the settings (``run.resume_settings``, as ``densekit.train`` does);
        ``command``: the command line to record in config.yaml's history (default: this process's)."""
        if resume is not None and payload is None:
            cfg, _, payload = resume_settings(resume, cfg.to_dict())
        # (a run killed before its first checkpoint has none: it starts afresh with its own settings)
        self.verbose, self.stop, self.stop_reason, self.early_stopped = verbose, False, None, False
        self.signal = None                     # the signal that asked the run to stop, if any
        # -- settings, device, seeds -------------------------------------------------------------------
        cfg = cfg.validate()
        if cfg.name is not None:
            check_run_name(cfg.name)
        get_entry(cfg.model)  # an unknown model fails before any data is read
        self.device = pick_device(cfg.device)
        self.rank, self.world_size = distributed.init(self.device)
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        # -- data: train_ds, val_ds, test_ds, classes, normalize, augment, tta, loader, class_weights --
        self.cfg, data = setup.build_data(cfg, self.device, self.rank, self.world_size, payload)
        vars(self).update(vars(data))
        self.data_info = data.info
        self.multilabel = self.cfg.task == "multilabel"
        self.calibration = {}                 # multi-label: the thresholds tuned on validation
        # -- model: model, net, ddp, frozen, dtype, channels_last, memory_format, optimizer, scaler, ema --
        parts = setup.build_model(self.cfg, data, self.device, self.world_size, payload)
        vars(self).update(vars(parts))
        self.model_spec = parts.spec
        self.eval_opts = EvalOptions(tuple(self.classes), self.normalize, self.device, self.dtype, self.channels_last,
                                     self.cfg.eval_batch_size, self.cfg.workers, task=self.cfg.task)
        # -- progress ------------------------------------------------------------------------------
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.elapsed = 0.0                    # training seconds before this process started
        self.now = 0.0                        # seconds since fit() started, as of the last _tick()
        self.t0 = None
        self.compile_s = None                 # torch.compile's cost: the first compiled step's time
        self.best, self.bad_epochs = None, 0
        self.early_best = None
        self.tally = EpochTally()             # the epoch in progress
        self.initial_loss = None
        self.history: list[dict] = []         # one record per finished epoch: the journal
        self.planned_steps = self.cfg.epochs * len(self.loader) // self.cfg.accumulate * self.cfg.accumulate
        # -- the run folder ----------------------------------------------------------------------------
        self.run = setup.open_run(self.cfg, resume, self.rank)
        commands = _commands(self.run) if resume is not None else []   # before config.yaml is rewritten
        if payload is not None:
            self.restore(payload)
            note = distributed.resize_note(payload["progress"], self.world_size, self.cfg.batch_size)
            if note:
                self.log(note)
        self.run.write_config({**self.cfg.to_dict(), "resolved": {
            "model": self.model_spec, "data": self.data_info, "device": str(self.device), **self.precision,
            "distributed": distributed.describe(self.world_size, self.cfg.batch_size, self.cfg.sync_bn, self.device),
            "lr": self.base_lr, "augment": self.augment.preset, "tta": self.tta, "versions": _versions(),
            "commands": commands + [{"command": command or _command_line(), "epoch": self.epoch,
                                     "epochs": self.cfg.epochs, "time_budget": self.cfg.time_budget}]}})
        self.run.write_metrics(self.history)
        self.callbacks = list(callbacks)
        self.context = Context(self)

    # -- checkpoints ----------------------------------------------------------------------------------
    def _payload(self, partial: dict) -> dict:
        return checkpoint.build(
            "training", self.model_spec, self.model.state_dict(), data=self.data_info, precision=self.precision,
            ema_state_dict=self.ema.state_dict() if self.ema else None,
            optimizer=self.optimizer.state_dict(), scaler=self.scaler.state_dict(), config=self.cfg.to_dict(),
            progress={"epoch": self.epoch, "step": self.step_in_epoch, "global_step": self.global_step,
                      "elapsed": self.elapsed + self._clock(), "best": self.best, "bad_epochs": self.bad_epochs,
                      "early_best": self.early_best, "partial": partial,
                      "initial_loss": self.initial_loss, "ema_updates": self.ema.updates if self.ema else 0,
                      "world_size": self.world_size},
            history=list(self.history), calibration=self.calibration or None,
            rng={"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
                 "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else []})

    def restore(self, payload: dict):
        """Continue from a training checkpoint: weights, optimizer, progress, the journal, RNG."""
        self.model.load_state_dict(payload["state_dict"])
        if self.ema and payload.get("ema_state_dict"):
            self.ema.load_state_dict(payload["ema_state_dict"])
            self.ema.updates = payload["progress"].get("ema_updates", 0)
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scaler.load_state_dict(payload["scaler"])
        self.calibration = dict(payload.get("calibration") or {})
        p = payload["progress"]
        self.epoch, self.step_in_epoch, self.global_step = p["epoch"], p["step"], p["global_step"]
        self.elapsed, self.best, self.bad_epochs = p["elapsed"], p["best"], p["bad_epochs"]
        self.early_best, self.initial_loss = p["early_best"], p["initial_loss"]
        self.tally = EpochTally.from_checkpoint(p["partial"], self.rank)   # the saved sums are every rank's
        # checkpoints from before the journal: the metrics file, cut to the checkpoint's epochs
        self.history = payload.get("history") or [r for r in self.run.read_metrics() if r.get("epoch", 0) <= self.epoch]
        torch.set_rng_state(payload["rng"]["torch"])
        random.setstate((3, tuple(payload["rng"]["python"]), None))
        if payload["rng"]["cuda"] and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(payload["rng"]["cuda"])

    def save(self, which: str = "last"):
        partial = self.tally.to_checkpoint()   # a collective: every rank saves
        if self.rank == 0:
            try:
                checkpoint.save_checkpoint(self._payload(partial), self.run.checkpoint(which))
            except WriteError as err:
                last = self.run.checkpoint("last")
                kept = "no checkpoint was written yet"
                if last.is_file():
                    p = checkpoint.load_checkpoint(last)["progress"]
                    kept = f"{last} (epoch {p['epoch']} step {p['step']}) is intact"
                raise DensekitError(f"could not write {err.path.name}: {err.why}; {kept}; free space, then "
                                    f"densekit train --resume {self.run.path}") from None
        distributed.barrier()

    # -- the loop -------------------------------------------------------------------------------------
    def _clock(self) -> float:
        return time.perf_counter() - self.t0 if self.t0 is not None else 0.0

    def _tick(self):
        """Read the clock and the stop signal for this step's decisions: rank 0's readings on every
        rank (``distributed.same_on_all_ranks``), taken at points all ranks pass in step."""
        self.now, signalled = distributed.same_on_all_ranks([self._clock(), float(self.signal or 0)])
        if signalled and not self.stop:
            name = signal.Signals(int(signalled)).name
            self.signal = int(signalled)
            self.request_stop(f"{name} received")

    def request_stop(self, reason: str):
        """End the run at the next step boundary (a signal) or after this epoch (a callback)."""
        self.stop, self.stop_reason = True, self.stop_reason or reason

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
        self.run.write_status("running", started=self.run.read_status().get("started", now()), pid=os.getpid(),
                              reason=None)
        for cb in self.callbacks:
            cb.on_train_start(self.context)
        budget = f", time budget {fmt_time(cfg.time_budget)}" if cfg.time_budget else ""
        self.log(f"training {cfg.model} ({sum(p.numel() for p in self.model.parameters()):,} params) on "
                 f"{cfg.dataset}: {len(self.train_ds):,} train / {len(self.val_ds) if self.val_ds else 0:,} val / "
                 f"{len(self.test_ds) if self.test_ds else 0:,} test, {self.device}, "
                 f"{precision_name(self.dtype)}{budget} -> {self.run.path}")
        max_epochs = 10**6 if cfg.time_budget else cfg.epochs
        previous = self._catch_signals()
        try:
            while True:
                self._tick()
                if self.stop:
                    break
                steps_left = self.progress() < 1 and self.epoch < max_epochs
                if not steps_left and self.step_in_epoch == 0:
                    break
                if steps_left:
                    self._train_epoch()
                if self.stop and self.step_in_epoch < len(self.loader) and self.progress() < 1:
                    break              # stopped mid-epoch: last.pt already saved there
                self._end_epoch()      # also the end of an epoch whose steps a killed run finished
            return self._finish()
        except DensekitError as err:
            if self.run.read_status().get("status") != "diverged":   # the guard writes its own
                self._record_end("failed", str(err))
            raise
        except KeyboardInterrupt:
            self._record_end("stopped", "interrupted")
            raise
        except BaseException as err:
            self._record_end("failed", f"{type(err).__name__}: {err}".strip().rstrip(":"))
            raise
        finally:
            self._restore_signals(previous)
            self.run.unlock()

    def _record_end(self, status: str, reason: str):
        """Record why the run ended, best effort: the error being raised matters more (a full disk
        may refuse this write too)."""
        try:
            self.run.write_status(status, ended=now(), reason=reason)
        except DensekitError:
            pass

    def _catch_signals(self) -> dict:
        """SIGINT/SIGTERM ask for a stop at the next step boundary; a second SIGINT exits at once."""
        if sys.platform == "win32" or not hasattr(signal, "SIGTERM"):
            return {}
        try:
            return {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        except ValueError:      # not the main thread: leave the host's handlers alone
            return {}

    def _restore_signals(self, previous: dict):
        for s, handler in previous.items():
            signal.signal(s, handler)

    def _on_signal(self, signum, frame):
        if self.signal is not None and signum == signal.SIGINT:
            print(f"densekit: second interrupt, exiting at once; resume from the last checkpoint with "
                  f"densekit train --resume {self.run.path}", file=sys.stderr, flush=True)
            os._exit(130)
        self.signal = signum
        if self.rank == 0:
            print(f"\ndensekit: {signal.Signals(signum).name} received, stopping at the next step with a checkpoint "
                  "(interrupt again to exit at once)", file=sys.stderr, flush=True)

    def prepare(self, x: torch.Tensor, y: torch.Tensor, epoch: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A loaded uint8 batch -> (the network's input, targets): normalised in the run's layout and
        augmented as the (epoch, step) batch of the global batch (this rank's rows of it)."""
        x = self.normalize(x).contiguous(memory_format=self.memory_format)
        return distributed.augment_shard(self.augment, x, y, epoch, step, self.loader.rows(step))

    def step(self, x: torch.Tensor, target: torch.Tensor, lr: float | None = None,
             index: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimisation step on a prepared batch (a micro-step under gradient accumulation):
        (loss, logits). ``lr``: the schedule's LR when None (the LR range test gives its own);
        ``index``: the micro-step's place in the epoch, which decides whether the accumulated
        gradients apply (default: the trainer's own ``step_in_epoch``)."""
        cfg = self.cfg
        if lr is None:
            lr = self.base_lr * lr_factor(self.progress(), cfg.schedule, *cfg.schedule_points(), cfg.gamma)
            if cfg.schedule == "plateau":
                lr *= plateau_factor(self.history, cfg.gamma)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)     # --lr-backbone
        applies = ((self.step_in_epoch if index is None else index) + 1) % cfg.accumulate == 0
        with distributed.grad_sync(self.ddp, sync=applies):   # no gradient all-reduce while accumulating
            with autocast(self.device, self.dtype):
                logits = self.net(x)
                loss = self._loss(logits.float(), target)
                if getattr(self.model, "aux_outputs", None):   # GoogLeNet's auxiliary classifiers (aux_logits=True)
                    loss = loss + self._aux_loss(target)
            self.scaler.scale(loss / cfg.accumulate).backward()
        if applies:
            if cfg.clip_grad:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            if self.ema:
                self.ema.update(self.model)
        return loss, logits

    def _train_epoch(self):
        cfg = self.cfg
        self.model.train()
        set_frozen(self.model, self.frozen, not cfg.unfreeze_after or self.epoch < cfg.unfreeze_after)
        n_steps = len(self.loader)
        of = "" if cfg.time_budget else f"/{cfg.epochs}"
        bar = ProgressBar(n_steps, f"epoch {self.epoch + 1}{of}", enabled=self.verbose and self.rank == 0, plain=True)
        tally, last_save, shown = self.tally, self.now, None
        check_every = 1 if self.device.type == "cpu" else 10
        t_data = time.perf_counter()
        for x, y in self.loader.epoch(self.epoch, self.step_in_epoch):
            x, target = self.prepare(x, y, self.epoch, self.step_in_epoch)
            t_compute = time.perf_counter()
            tally.data_time += t_compute - t_data

            loss, logits = self.step(x, target)

            if cfg.compile and self.compile_s is None:   # compilation happens inside the first step
                self.compile_s = time.perf_counter() - t_compute
                self.log(f"torch.compile: the first step took {self.compile_s:.1f}s (compilation)")
            self.step_in_epoch += 1
            self.global_step += 1
            tally.add(loss, logits, target, self.multilabel)
            tally.compute_time += time.perf_counter() - t_compute
            if self.step_in_epoch % check_every == 0 or self.step_in_epoch == n_steps:
                step_loss, *shown = tally.step_figures(loss)   # every rank's, one all-reduce
                self._guard(step_loss)
            shown_loss, shown_acc = shown or tally.running()
            done = self.progress()   # the ETA is the whole run's
            bar.update(self.step_in_epoch, eta=(self.elapsed + self.now) * (1 - done) / max(done, 1e-9),
                       loss=f"{shown_loss:.4f}", **{self._acc_name: f"{100 * shown_acc:.1f}%"},
                       **{"img/s": f"{tally.images_per_s():.0f}"})
            self._tick()
            if self.now - last_save > cfg.checkpoint_every and self.step_in_epoch % cfg.accumulate == 0:
                self.save("last")
                last_save = self.now
            if self.stop or self.progress() >= 1:
                break
            t_data = time.perf_counter()
        bar.close()
        if self.stop and self.step_in_epoch < n_steps and self.progress() < 1:
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
        kept = self.run.checkpoint("last")
        kept = f"the last good checkpoint is {kept}" if kept.exists() else "no checkpoint was written before it"
        message = (f"training diverged at epoch {self.epoch + 1} step {self.step_in_epoch}: the loss is {what}; "
                   f"lower the learning rate (now {self.cfg.optimizer} lr {self.base_lr:g}) or add --warmup 0.05; {kept}")
        self.run.write_status("diverged", step=self.global_step, ended=now(), reason=message)
        raise DensekitError(message)

    def _end_epoch(self):
        tally = self.tally
        loss_sum, correct, count = tally.totals()
        seen = max(count, 1)   # every rank's images: the epoch's figures are the whole batch's, not one shard's
        record = {"epoch": self.epoch + 1, "global_step": self.global_step,
                  "lr": self.optimizer.param_groups[0]["lr"], "train_images": int(count),
                  "train_loss": loss_sum / seen, self._acc_key: correct / seen,
                  "images_per_s": tally.images_per_s(seen),
                  "data_time_s": tally.data_time, "compute_time_s": tally.compute_time}
        # One model on every rank (rank 0's BN running statistics, which its checkpoint holds), so the
        # ranks' shards of the validation add up and every rank takes the same best/early-stop decisions.
        distributed.sync_buffers(self.model, self.ema.module if self.ema else None)
        if self.val_ds is not None and self.multilabel:
            val = run_eval(self.eval_model(), self.val_ds, self.eval_opts)
            record.update({"val_loss": val["loss"], "val_map": val["map"], "val_auroc": val["auroc"]})
            # this epoch's weights' own thresholds: best.pt and last.pt each carry their weights'
            self.calibration = {**self.calibration, "thresholds": thresholds_of(val)}
        elif self.val_ds is not None:
            val = run_eval(self.eval_model(), self.val_ds, self.eval_opts)
            record.update({"val_loss": val["loss"], "val_top1": val["top1"], "val_top5": val["top5"]})
        self.epoch += 1
        self.step_in_epoch = 0
        self.tally = EpochTally()
        record["elapsed_s"] = self.elapsed + self._clock()
        improved = self._track_best(record)
        self.history.append(record)
        if improved:            # before the commit point: a kill between the two redoes this decision
            self.save("best")
        self.save("last")       # the commit point
        self.run.write_metrics(self.history)
        for cb in self.callbacks:
            cb.on_epoch_end(self.context, record)
        # A callback may stop the run on one rank only (it sees that rank's state): stop all of
        # them, or the others would wait forever in the next epoch's all-reduce.
        if distributed.sum_over_ranks([float(self.stop)])[0] > 0:
            self.request_stop("a callback asked to stop")
        val_txt = f" val loss {record['val_loss']:.4f} top-1 {100 * record['val_top1']:.2f}%" if "val_top1" in record else ""
        if "val_map" in record:
            val_txt = (f" val loss {record['val_loss']:.4f} mAP {_pct(record['val_map'])} "
                       f"AUROC {_pct(record['val_auroc'])}")
        self.log(f"epoch {record['epoch']}: train loss {record['train_loss']:.4f} {self._acc_name} "
                 f"{100 * record[self._acc_key]:.2f}%{val_txt} lr {record['lr']:.3g} "
                 f"{record['images_per_s']:.0f} img/s (data {record['data_time_s']:.1f}s, "
                 f"compute {record['compute_time_s']:.1f}s) [{fmt_time(record['elapsed_s'])}]")

    # multi-label runs report the fraction of known labels right at 0.5 where single-label ones report top-1
    _acc_name = property(lambda self: "label-acc" if self.multilabel else "top-1")
    _acc_key = property(lambda self: "train_label_acc" if self.multilabel else "train_top1")

    def _loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of one label per image; a sigmoid per label (masked BCE or ASL) for several."""
        cfg = self.cfg
        if self.multilabel:
            return multilabel_loss(logits, target, cfg.loss, self.pos_weight, cfg.label_smoothing)
        return F.cross_entropy(logits, target, weight=self.class_weights, label_smoothing=cfg.label_smoothing)

    def _aux_loss(self, target: torch.Tensor):
        if not self.multilabel:
            return self.model.aux_loss(target, label_smoothing=self.cfg.label_smoothing)
        from ..models.googlenet import AUX_WEIGHT
        outputs, self.model.aux_outputs = self.model.aux_outputs, []
        return sum(AUX_WEIGHT * self._loss(o.float(), target) for o in outputs)

    def eval_model(self):
        return self.ema.module if self.ema else self.model

    def _track_best(self, record: dict) -> bool:
        """Update best-checkpoint and early-stopping state; True when this epoch is the new best."""
        cfg = self.cfg
        metric = cfg.best_metric if cfg.best_metric in record else self._acc_key
        value, lower = record[metric], metric.endswith("loss")
        if value is None:   # mAP/AUROC of a validation split where no label has both a positive and a negative
            value = math.inf if lower else -math.inf
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
                    self.request_stop(f"early stopping: {cfg.early_stop_metric} did not improve "
                                      f"for {self.bad_epochs} epochs")
                    self.early_stopped = True
        return improved

    def _finish(self) -> Run:
        """Evaluate the best checkpoint (by validation) on the test split and write the summary."""
        finished = not self.stop or self.early_stopped
        summary = {"model": self.cfg.model, "dataset": self.cfg.dataset, "epochs": self.epoch,
                   "global_step": self.global_step, "duration_s": self.elapsed + self._clock(),
                   "params": sum(p.numel() for p in self.model.parameters()),
                   "train_images_per_s": sum(r["images_per_s"] for r in self.history) / max(len(self.history), 1),
                   "peak_memory_mb": peak_memory_mb(self.device), "best_" + self.cfg.best_metric: self.best,
                   "run_dir": str(self.run.path)}
        if self.cfg.time_budget:
            summary["time_budget_s"] = self.cfg.time_budget
        if self.compile_s is not None:
            summary["compile_s"] = self.compile_s
        if self.test_ds is not None and finished:
            best = self.run.checkpoint("best")
            model = self.eval_model()
            from_best = best.exists() and self.val_ds is not None
            thresholds = self.calibration.get("thresholds")
            if from_best:
                payload = checkpoint.load_checkpoint(best)
                model.load_state_dict(payload["ema_state_dict"] or payload["state_dict"])
                thresholds = (payload.get("calibration") or {}).get("thresholds")
            # one pass for the summary and for the callbacks' plots and embeddings
            test = run_eval(model, self.test_ds, self.eval_opts.replace(tta=self.tta), per_class=True, outputs=True,
                            features=self.cfg.embeddings if "tensorboard" in self.cfg.trackers() else 0,   # the projector's
                            thresholds=thresholds)
            self.context.test = test
        if self.test_ds is not None and finished and self.multilabel:
            summary.update(summary_figures(test, "test_"), test_loss=test["loss"], test_count=test["count"],
                           test_tta=self.tta, test_checkpoint="best" if from_best else "last",
                           test_thresholds="tuned on validation" if thresholds else "0.5",
                           per_label=test["per_label"])
        elif self.test_ds is not None and finished:
            summary.update(test_loss=test["loss"], test_top1=test["top1"], test_top5=test["top5"],
                           test_count=test["count"], test_tta=self.tta, test_checkpoint="best" if from_best else "last",
                           per_class={c: a for c, a in zip(self.classes, test["per_class"])},
                           class_metrics=class_metrics(test["confusion"], self.classes))
            if "top1_single" in test:
                summary["test_top1_single"] = test["top1_single"]
        if finished:   # temperature, abstention and OOD thresholds, fitted on the validation split
            summary["calibration"] = calibrate_run(self.context, self.eval_opts.replace(tta=self.tta), self.log)
        status = "finished" if finished else "stopped"
        summary["status"] = status
        if self.stop_reason:
            summary["stop_reason"] = self.stop_reason
        if self.signal:
            summary["signal"] = self.signal
        self.run.write_json("summary.json", summary)
        for cb in self.callbacks:
            cb.on_train_end(self.context, summary)
        # last: "finished" means every artefact is written, so a resume may leave a finished run alone
        self.run.write_status(status, ended=now(), reason=self.stop_reason if not finished or self.early_stopped else None,
                              summary={k: v for k, v in summary.items() if k not in ("per_class", "class_metrics", "per_label")})
        if not finished and self.rank == 0:
            where = f"epoch {self.epoch + 1} step {self.step_in_epoch}" if self.step_in_epoch else f"after epoch {self.epoch}"
            print(f"densekit: stopped ({self.stop_reason}) {where}, checkpoint saved; continue with: "
                  f"densekit train --resume {self.run.path}", file=sys.stderr, flush=True)
        result = Run(self.run.path, summary, list(self.history))
        self.log(result.result_line())
        return result


def _command_line() -> str:
    """This process's command as the user typed it (``python -m densekit`` reads as ``densekit``)."""
    argv = list(sys.argv)
    if argv and (Path(argv[0]).name == "densekit" or Path(argv[0]).parent.name == "densekit"):
        argv[0] = "densekit"       # the console script, or python -m densekit's __main__.py
    return " ".join(map(shlex.quote, argv))


def _commands(run) -> list[dict]:
    """The commands that trained this run so far, from its config.yaml (one ``command`` in older runs)."""
    try:
        resolved = run.read_config().get("resolved") or {}
    except DensekitError:    # killed before its first config.yaml
        return []
    if isinstance(resolved.get("commands"), list):
        return [c for c in resolved["commands"] if isinstance(c, dict)]
    return [{"command": resolved["command"], "epoch": 0}] if resolved.get("command") else []
