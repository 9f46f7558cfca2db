"""What training hands to the outside: ``Run`` (the result of ``densekit.train``), and the hooks a
callback implements with the ``Context`` they see, so tracking (TensorBoard, plots, CSV) and your
own callbacks never reach into the Trainer and the Trainer's inside can change freely.

    class Watch(densekit.engine.Callback):
        def on_epoch_end(self, ctx, record):
            if record.get("val_top1", 0) > 0.99:
                ctx.stop = True        # ends the run after this epoch (on every rank)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Run:
    """What ``train`` returns: the run folder, its per-epoch metrics and the final summary
    (``summary["status"]`` is finished, stopped...)."""
    dir: Path
    summary: dict
    metrics: list = field(default_factory=list)
    note: str = ""        # set when train(resume=...) found the run finished and changed nothing

    def result_line(self) -> str:
        """The one line that ends a run: its test figures (or why there are none) and where it is."""
        from .evaluate import tta_note, top5_name
        s = self.summary
        if "test_map" in s:   # several labels per image (engine/multilabel.py)
            pct = lambda v: "-" if v is None else f"{100 * v:.2f}%"   # noqa: E731
            return (f"test mAP {pct(s['test_map'])}  AUROC {pct(s['test_auroc'])}  exact match "
                    f"{pct(s['test_exact_match'])}  loss {s['test_loss']:.4f}  ({s['test_count']:,} images, "
                    f"{s.get('test_checkpoint', 'best')} checkpoint)  results in {self.dir}")
        if "test_top1" not in s:
            return f"{s.get('status', 'ended')}, no test figures (no test split, or stopped); results in {self.dir}"
        one_view = {"tta": s["test_tta"], "top1_single": s["test_top1_single"]} if "test_top1_single" in s else {}
        return (f"test top-1 {100 * s['test_top1']:.2f}%{tta_note(one_view)}  "
                f"{top5_name(len(s.get('per_class') or {}) or 5)} {100 * s['test_top5']:.2f}%  "
                f"loss {s['test_loss']:.4f}  ({s['test_count']:,} images, {s.get('test_checkpoint', 'best')} "
                f"checkpoint)  results in {self.dir}")


class Callback:
    """Hooks, each given the run's ``Context``; every rank calls them under torchrun."""

    def on_train_start(self, ctx: "Context"): ...
    def on_epoch_end(self, ctx: "Context", record: dict): ...
    def on_train_end(self, ctx: "Context", summary: dict): ...


class Context:
    """A callback's view of the run, read-only except ``stop``:

    cfg          the TrainConfig the run trains with (the run's own on resume)
    run          its RunFolder (``run.path``, ``run.read_metrics()``, ``run.write_json``)
    rank         this process's rank (0 when not distributed)
    classes      class names, index = logit position
    train_ds, val_ds, test_ds   the datasets (val/test None when the source has none)
    model        the weights being trained (not the DDP or compiled wrapper)
    eval_model   the weights evaluated: the EMA copy when training with EMA, else ``model``
    optimizer    the optimizer (its param_groups hold each group's current lr)
    epoch        epochs finished so far
    test         in ``on_train_end``: the final test pass of the best checkpoint, ``{"top1", "top5",
                 "loss", "count", "per_class", "confusion", "logits", "labels", "features"}``
                 (with the run's test-time augmentation; features are the plain view's), or None;
                 multi-label runs: ``{"loss", "count", "map", "auroc", ..., "per_label", "logits",
                 "labels"}`` (engine/multilabel.py)
    val          in ``on_train_end``: the best checkpoint's pass over the validation split with the
                 run's TTA (``logits``, ``labels``), which calibration was fitted on, or None
    calibration  in ``on_train_end``: the checkpoint's ``calibration`` dict (engine/calibration.py),
                 or None when the run has no validation split
    stop         set True to end the run after this epoch
    """

    def __init__(self, trainer):
        self._trainer = trainer
        self.test = self.val = self.calibration = None

    cfg = property(lambda self: self._trainer.cfg)
    run = property(lambda self: self._trainer.run)
    rank = property(lambda self: self._trainer.rank)
    classes = property(lambda self: self._trainer.classes)
    train_ds = property(lambda self: self._trainer.train_ds)
    val_ds = property(lambda self: self._trainer.val_ds)
    test_ds = property(lambda self: self._trainer.test_ds)
    model = property(lambda self: self._trainer.model)
    eval_model = property(lambda self: self._trainer.eval_model())
    optimizer = property(lambda self: self._trainer.optimizer)
    epoch = property(lambda self: self._trainer.epoch)

    @property
    def stop(self) -> bool:
        return self._trainer.stop

    @stop.setter
    def stop(self, value: bool):
        if value:
            self._trainer.request_stop("a callback asked to stop")
