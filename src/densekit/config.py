"""The training configuration: one plain dataclass, saved human-readable in every run folder.

Everything needed to rebuild the model and the data pipeline lives here; the run folder's
``config.yaml`` adds what training resolved (classes, channels, normalisation statistics).

Each field's metadata is its one description: the help text and group of its `densekit train`
flag, the values it allows (``interval``, ``choices``), whether it acts under the other settings
(``applies``) and what a resume may do with it (``resume``). ``validate`` checks every field from
that metadata before any data is read, so no value is accepted and then ignored or misused.
Rules are written here rather than with a schema library (pydantic, attrs validators) because
the messages must name the `densekit train` flag and the fix in one line, and the same metadata
drives the CLI's help and the resume policy. The file is long on purpose: every setting and its
rule in one place is what lets a reader (and ``--help``, and the settings page's test) find them all.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import DensekitError


_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")

# `densekit train --help` groups, in order (after timm's train.py).
GROUPS = {"data": "data", "model": "model", "optimizer": "optimizer and batches",
          "schedule": "learning-rate schedule and training length", "regularisation": "regularisation",
          "checkpointing": "checkpoints, stopping and the run folder", "tracking": "tracking",
          "devices": "devices and reproducibility"}

# What an epoch's record (metrics.jsonl) can hold for best_metric and early_stop_metric.
METRICS = ("val_top1", "val_loss", "val_top5", "train_top1", "train_loss", "val_map", "val_auroc")
SINGLE_LABEL_METRICS = ("val_top1", "val_top5", "train_top1")   # top-k needs one label per image
MULTILABEL_METRICS = ("val_map", "val_auroc")                    # engine/metrics.py

# How the position settings of the schedule read: below 1 a fraction of training, from 1 up a
# number of epochs (timm's --warmup-epochs, --decay-epochs, --decay-milestones).
_POSITION = "below 1 a fraction of training, from 1 up epochs"


def setting(default=dataclasses.MISSING, *, group: str, help: str, factory=None, interval: str | None = None,
            choices=None, none: str | None = None, applies=None, resume: str = "fixed"):
    """A TrainConfig field with its description and rules.

    interval: allowed numbers in interval notation, e.g. "[0, 1)", "(0, inf)"; floats must also be finite.
    choices: allowed values (a tuple, or a function returning one, for lists known elsewhere).
    none: what None means, shown as the default in the help ("the source's size").
    applies: (predicate(cfg), where) -- a value other than the default is refused when the
        predicate is false, because it would be ignored ("applies to --schedule step only").
    resume: "fixed" (must match the run), "extend" (how long to train), "free" (changes nothing
        the run's result depends on: applied), "locate" (finds the run folder; never applied).
    """
    meta = {"group": group, "help": help, "interval": _interval(interval) if interval else None,
            "choices": choices, "none": none, "applies": applies, "resume": resume}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _interval(text: str):
    m = re.fullmatch(r"([\[(])\s*(\S+)\s*,\s*(\S+)\s*([\])])", text)
    lo, hi = float(m.group(2)), float(m.group(3))
    return text, lo, m.group(1) == "[", hi, m.group(4) == "]"


def _inside(value: float, interval) -> bool:
    _, lo, lo_in, hi, hi_in = interval
    return (lo <= value if lo_in else lo < value) and (value <= hi if hi_in else value < hi)


def _interval_words(interval, whole: bool) -> str:
    text, lo, lo_in, hi, _ = interval
    number = "a whole number" if whole else "a number"
    if math.isinf(hi):
        return f"{number} {'of at least' if lo_in else 'above'} {lo:g}"
    return f"{number} in {text}"


# The presets --augment names, whose ops are data/augment.py's PRESETS (tests/test_data_augment.py keeps
# the two in step): named here so that building the command line's help does not import PyTorch.
AUGMENT_PRESETS = ("none", "standard", "crop", "flip", "keras", "color", "erasing", "mixup", "cutmix",
                   "randaugment", "trivialaugment", "augmix")


def _augment_presets():
    return ("auto", *AUGMENT_PRESETS)


# The table settings act on csv: datasets only.
_CSV = (lambda c: c.dataset.startswith("csv:"), "--dataset csv:FILE")
TABLE_FIELDS = ("image_col", "image_root", "label_col", "label_sep", "none_label", "label_cols", "uncertain",
                "split_col", "group_col")
# Experiment trackers ``--tracker`` may list (tracking/__init__.py builds their callbacks).
TRACKERS = ("tensorboard", "mlflow")
_tensorboard_on = (lambda c: c.tensorboard and "tensorboard" in c.tracker, "--tracker tensorboard")


def _schedule_is(*names):
    return (lambda c: c.schedule in names, f"--schedule {' or '.join(names)}")


# The LR an optimizer trains with when --lr is not given (engine/optim.py applies it).
DEFAULT_LR = {"sgd": 0.1, "adam": 1e-3, "adamw": 1e-3, "rmsprop": 1e-3}


@dataclass
class TrainConfig:
    # model
    model: str = setting("densenet-c-fmnist", group="model",   # models/compact.py: docs/time-to-accuracy.md
                         help="registered model name (see `densekit models`); densenet-c-fmnist is the quick start's")
    model_args: dict = setting(group="model", factory=dict,
                               help="model constructor override KEY=VALUE, repeatable, checked against the "
                                    "model's arguments (see `densekit summary MODEL`), e.g. --model-arg growth_rate=24")
    pretrained: bool = setting(False, group="model",
                               help="start from torchvision's ImageNet weights (densenet121/161/169/201), downloaded "
                                    "once into the cache and verified (docs/finetune.md)")
    weights: str | None = setting(None, group="model", none="no weights file",
                                  help="start from a local weights file (torchvision, densekit or safetensors)")
    freeze: list = setting(group="model", factory=list, none="nothing frozen",
                           help="train with these frozen: features (the backbone) or module names, e.g. denseblock1")
    unfreeze_after: int = setting(0, group="model", interval="[0, inf)",
                                  applies=(lambda c: bool(c.freeze), "--freeze"),
                                  help="epochs after which --freeze ends; 0: frozen throughout")
    lr_backbone: float | None = setting(None, group="optimizer", interval="(0, inf)", none="the same LR as the head",
                                        help="the backbone's LR as a factor of --lr (the head gets --lr), e.g. 0.1")
    # data
    dataset: str = setting("fashion-mnist", group="data", help="data source (see `densekit data list`), "
                           "kind:ARG (folder:PATH, tfrecord:PATTERN, synthetic:n=1000) or a folder path")
    data_dir: str | None = setting(None, group="data", none="the densekit data cache", resume="free",
                                   help="folder holding (or receiving) the dataset's files")
    val_split: float = setting(0.1, group="data", interval="[0, inf)",
                               help="items carved from train for validation: a fraction below 1, or a whole "
                                    "count; 0 for none (a source's own val split is used when it has one)")
    image_size: int | None = setting(None, group="data", interval="[1, inf)", none="the source's size",
                                     help="resize every image to this many pixels square")
    channels: int | None = setting(None, group="data", choices=(1, 3), none="the source's channels",
                                   help="convert every image to 1 (grayscale) or 3 (RGB) channels")
    augment: str = setting("auto", group="regularisation", choices=_augment_presets,
                           help="training augmentation preset from densekit.data.augment, combine with + "
                                "(crop+erasing), randaugment:N,M; auto: pad-crop and flip, no flip for digits and "
                                "characters, + trivialaugment and erasing when fine-tuning at 128 px or more")
    tta: str = setting("auto", group="regularisation", choices=("auto", "none", "flip"), resume="free",
                       help="test-time augmentation of the final test, eval and predict: none or flip; "
                            "auto: flip when the augmentation flips images")
    sampler: str = setting("shuffle", group="data", choices=("shuffle", "balanced"),
                           help="training order: shuffle, or balanced (each class equally likely per draw, with "
                                "replacement; resumable)")
    class_weights: str | None = setting(None, group="regularisation", none="every class weighs 1",
                                        help="loss weight per class: auto (inverse frequency) or a YAML/JSON file "
                                             "of weights")
    task: str = setting("auto", group="data", choices=("auto", "single-label", "multilabel"),
                        help="single-label (softmax, one class per image) or multilabel (a sigmoid per label, "
                             "several per image; docs/multilabel.md); auto: the dataset's")
    loss: str = setting("bce", group="regularisation", choices=("bce", "asl"),
                        applies=(lambda c: c.task != "single-label", "--task multilabel"),
                        help="multi-label loss: bce (binary cross-entropy on logits) or asl (asymmetric loss, "
                             "Ridnik et al. 2021)")
    pos_weight: str | None = setting(None, group="regularisation", choices=("auto",), none="every label weighs 1",
                                     applies=(lambda c: c.task != "single-label", "--task multilabel"),
                                     help="multi-label: weigh each label's positives by its negatives/positives "
                                          "(auto), for rare labels")
    workers: int = setting(2, group="data", interval="[0, inf)", resume="free",
                           help="decoding processes for streamed (folder/tfrecord) sets; 0 decodes in this process")
    skip_bad: bool = setting(False, group="data", help="warn about and skip undecodable items instead of stopping")
    # data: csv tables (data/table.py; docs/data.md "Data from a table")
    image_col: str | None = setting(None, group="data", applies=_CSV, none="a column named image/path/file, or the "
                                    "one holding image file names", help="csv: the column of image paths")
    image_root: str | None = setting(None, group="data", applies=_CSV, resume="free", none="the table's folder",
                                     help="csv: the folder the image paths start from")
    label_col: str | None = setting(None, group="data", applies=_CSV, none="a column named label/class/Finding "
                                    "Labels, or the one other column", help="csv: the column of labels")
    label_sep: str | None = setting(None, group="data", applies=_CSV, none="one label per row",
                                    help="csv: the separator of several labels in --label-col, e.g. '|' "
                                         "(ChestX-ray14): rows with other than one label make the run multi-label")
    none_label: str | None = setting(None, group="data", applies=_CSV, none="none",
                                     help="csv: the --label-col value meaning no label, e.g. 'No Finding'")
    label_cols: list | None = setting(None, group="data", applies=_CSV, none="the columns holding only 1/0/-1/empty",
                                      help="csv: one column per label (CheXpert): 1 present, 0 or empty absent, "
                                           "-1 uncertain; A,B,C on the command line")
    uncertain: str | None = setting(None, group="data", applies=_CSV, choices=("ones", "zeros", "ignore"),
                                    none="ignore", help="csv: what -1 in --label-cols means (CheXpert's U-Ones, "
                                                        "U-Zeros, U-Ignore: left out of the loss and metrics)")
    split_col: str | None = setting(None, group="data", applies=_CSV, none="a column named split, if any",
                                    help="csv: the column naming each row's split: train, val or test")
    group_col: str | None = setting(None, group="data", applies=_CSV, none="items carved one by one",
                                    help="csv: carve the validation split by this column (e.g. patient ID), so "
                                         "one group never lands on both sides")
    # schedule
    epochs: int = setting(12, group="schedule", interval="[1, inf)", resume="extend",
                          help="passes over the training set (the quick start: ~7 min on 2 quiet CPU cores); "
                               "ignored under --time-budget, which stops on the clock")
    time_budget: float | None = setting(None, group="schedule", interval="(0, inf)", resume="extend",
                                        none="train for --epochs",
                                        help="wall-clock seconds, or a duration such as 5m or 1h30m; plans the "
                                             "LR schedule to the clock and stops on time")
    batch_size: int = setting(128, group="optimizer", interval="[1, inf)", help="training images per step")
    eval_batch_size: int = setting(512, group="optimizer", interval="[1, inf)", resume="free",
                                   help="images per step of validation, test and prediction")
    optimizer: str = setting("sgd", group="optimizer", choices=("sgd", "adam", "adamw", "rmsprop"),
                             help="the optimizer")
    lr: float | None = setting(None, group="optimizer", interval="(0, inf)",
                               none="the optimizer's own: sgd 0.1, the others 1e-3",
                               help="base learning rate (scaled by --scale-lr when asked)")
    scale_lr: bool = setting(False, group="optimizer", help="linear scaling: lr x batch_size x accumulate / 128")
    momentum: float = setting(0.9, group="optimizer", interval="[0, 1)",
                              applies=(lambda c: c.optimizer in ("sgd", "rmsprop"), "--optimizer sgd or rmsprop"),
                              help="momentum of sgd and rmsprop")
    nesterov: bool = setting(True, group="optimizer", applies=(lambda c: c.optimizer == "sgd", "--optimizer sgd"),
                             help="Nesterov momentum (sgd with momentum above 0)")
    weight_decay: float = setting(5e-4, group="optimizer", interval="[0, inf)", help="L2 weight decay")
    wd_exclude_norm_bias: bool = setting(True, group="optimizer",
                                         help="no weight decay on BatchNorm and bias parameters")
    schedule: str = setting("onecycle", group="schedule",
                            choices=("constant", "step", "multistep", "cosine", "onecycle", "plateau"),
                            help="LR schedule over training progress (engine/schedule.py); plateau: x --gamma "
                                 "after each epoch whose validation loss did not improve (CheXNet)")
    milestones: list = setting(group="schedule", factory=lambda: [0.5, 0.75], interval="(0, inf)",
                               applies=_schedule_is("multistep"),
                               help=f"multistep: multiply the LR by --gamma at each of these points, {_POSITION}; "
                                    "P1,P2 on the command line")
    step_size: float = setting(0.3, group="schedule", interval="(0, inf)", applies=_schedule_is("step"),
                               help=f"step: decay every this much training, {_POSITION}")
    gamma: float = setting(0.1, group="schedule", interval="(0, 1]", applies=_schedule_is("step", "multistep", "plateau"),
                           help="step/multistep/plateau: the LR's factor at each decay")
    warmup: float = setting(0.0, group="schedule", interval="[0, inf)",
                            help=f"linear LR warmup, {_POSITION} (timm's --warmup-epochs); for onecycle its "
                                 "ramp (0: 10%)")
    label_smoothing: float = setting(0.1, group="regularisation", interval="[0, 1)",
                                     help="label smoothing of the cross-entropy (+0.2-0.3 points on Fashion-MNIST "
                                          "in short schedules)")
    clip_grad: float | None = setting(None, group="optimizer", interval="(0, inf)", none="no clipping",
                                      help="clip the gradients' global norm to this")
    accumulate: int = setting(1, group="optimizer", interval="[1, inf)",
                              help="gradient accumulation: steps per optimizer update")
    ema: float | None = setting(None, group="regularisation", interval="(0, 1)", none="no EMA",
                                help="decay of an exponential moving average of the weights (e.g. 0.999), "
                                     "evaluated and saved alongside")
    # stopping and keeping
    best_metric: str = setting("val_top1", group="checkpointing", choices=METRICS,
                               help="keep checkpoints/best.pt by this metric (the test uses it); val_top1 "
                                    "becomes train_top1 when the run has no validation split; for multi-label data "
                                    "val_map (train_loss without one)")
    coverage: float | None = setting(None, group="checkpointing", interval="(0, 1]", resume="free",
                                     none="no image rejected by default",
                                     help="abstain by default: the checkpoint stores the confidence threshold that "
                                          "keeps this fraction of the validation images (predict/eval/serve reject "
                                          "the rest as low_confidence; --reject-below overrides it)")
    early_stop_patience: int = setting(0, group="checkpointing", interval="[0, inf)",
                                       help="stop after this many epochs without improvement of "
                                            "--early-stop-metric; 0: off")
    early_stop_metric: str = setting("val_loss", group="checkpointing", choices=METRICS,
                                     applies=(lambda c: c.early_stop_patience > 0, "--early-stop-patience above 0"),
                                     help="the metric early stopping watches")
    divergence_factor: float = setting(10.0, group="checkpointing", interval="(1, inf)", resume="free",
                                       help="stop when the loss exceeds this many times the initial one (diverged)")
    # machine
    device: str = setting("auto", group="devices", resume="free",
                          help="auto (CUDA when torch sees a GPU, else CPU), cpu, cuda or cuda:N")
    precision: str = setting("auto", group="devices", choices=("auto", "fp32", "bf16", "fp16"), resume="free",
                             help="autocast dtype; auto: bf16 where the device runs it natively, else fp32")
    channels_last: bool | None = setting(None, group="devices", none="the device's fast default", resume="free",
                                         help="channels-last memory format")
    compile: bool = setting(False, group="devices", resume="free", help="torch.compile the model")
    sync_bn: bool = setting(False, group="devices",
                            help="under torchrun, BatchNorm statistics over the global batch (SyncBatchNorm)")
    seed: int = setting(0, group="devices", interval="[0, inf)",
                        help="seed of the weights, the data order and the augmentation")
    # run folder
    out: str = setting("runs", group="checkpointing", resume="locate", help="folder of run folders")
    name: str | None = setting(None, group="checkpointing", resume="locate", none="<model>-<dataset>-<time>",
                               help="this run's folder name under --out")
    checkpoint_every: float = setting(300.0, group="checkpointing", interval="[0, inf)", resume="free",
                                      help="also save checkpoints/last.pt mid-epoch every this many seconds")
    tensorboard: bool = setting(True, group="tracking", resume="free", help="write TensorBoard event files")
    histograms: bool = setting(False, group="tracking", resume="free", applies=_tensorboard_on,
                               help="TensorBoard: weight histograms every epoch (large event files)")
    embeddings: int = setting(256, group="tracking", interval="[0, inf)", resume="free", applies=_tensorboard_on,
                              help="TensorBoard projector: penultimate features of this many test images; 0: off")
    plots: bool = setting(True, group="tracking", resume="free", help="write PNG plots of the curves and samples")
    tracker: list = setting(group="tracking", factory=lambda: ["tensorboard"], choices=TRACKERS, resume="free",
                            help="experiment trackers, comma-separated: tensorboard (event files in the run folder; "
                                 "--no-tensorboard drops it), mlflow (params, per-epoch metrics, summary, plots and "
                                 "the model through MLflow's client; the mlflow extra, docs/tracking.md)")
    tracking_uri: str | None = setting(None, group="tracking", resume="free", none="sqlite:///OUT/mlflow.db",
                                       applies=(lambda c: "mlflow" in c.tracker, "--tracker mlflow"),
                                       help="MLflow's tracking store: sqlite:///FILE, file:FOLDER or an http(s) server")

    # -- checks ----------------------------------------------------------------------------------
    def validate(self) -> "TrainConfig":
        """Check every field against its metadata, then the few rules that join fields; raise
        one ``DensekitError`` line naming the field, the value and what is allowed."""
        self._check_types()
        defaults = TrainConfig()
        for f in dataclasses.fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if value is None:
                continue
            for v in (value if isinstance(value, list) else [value]):
                if isinstance(v, float) and not math.isfinite(v):
                    _bad(f.name, value, "must be a finite number")
                if meta["interval"] and not isinstance(v, bool) and not _inside(v, meta["interval"]):
                    _bad(f.name, value, "must be " + _interval_words(meta["interval"], isinstance(v, int)))
            choices = meta["choices"]() if callable(meta["choices"]) else meta["choices"]
            if choices:
                parts = value.split("+") if f.name == "augment" and value != "auto" else \
                    value if isinstance(value, list) else [value]
                if f.name == "augment":   # arguments follow a colon: randaugment:2,9
                    parts = [p.partition(":")[0] for p in parts]
                if any(p not in choices or (len(parts) > 1 and p == "auto") for p in parts):
                    _bad(f.name, value, "choose " + _either(choices))
            if meta["applies"] and value != getattr(defaults, f.name) and not meta["applies"][0](self):
                _bad(f.name, value, f"has no effect here: it applies with {meta['applies'][1]} only; drop it")
        self._check_joint()
        return self

    def _check_types(self):
        """YAML and flags give strings and ints where floats are meant: coerce what is safe, reject the rest."""
        import typing
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value, kind = getattr(self, f.name), hints[f.name]
            allowed = typing.get_args(kind) or (kind,)
            if value is None and type(None) in allowed:
                continue
            if f.name == "tracker" and isinstance(value, str):   # a YAML "tensorboard,mlflow"
                value = [v.strip() for v in value.split(",")]
            if f.name == "time_budget" and isinstance(value, str):
                try:
                    value = parse_duration(value)
                except DensekitError:
                    _bad(f.name, value, "not a duration; write e.g. 5m, 90s or 1h30m")
            if float in allowed and isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
                # YAML 1.1 reads "1e-3" (no dot) as a string; it is the float everyone means.
                value = float(value)
            if float in allowed and isinstance(value, int) and not isinstance(value, bool):
                value = value if int in allowed else float(value)
            if list in allowed and isinstance(value, tuple):
                value = list(value)
            if not isinstance(value, tuple(t for t in allowed if isinstance(t, type))) or \
                    (isinstance(value, bool) and bool not in allowed):
                names = " or ".join("none" if t is type(None) else t.__name__ for t in allowed)
                _bad(f.name, value, f"expected {names}")
            if f.name == "milestones":
                value = [float(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
                if not value or not all(isinstance(v, float) for v in value):
                    _bad(f.name, getattr(self, f.name), "expected a list of numbers, e.g. 0.5,0.75")
            if f.name == "model_args" and not all(isinstance(k, str) for k in value):
                _bad(f.name, value, "expected KEY=VALUE pairs with names for keys")
            setattr(self, f.name, value)

    def _check_joint(self):
        """The rules that join two or more fields."""
        if self.val_split >= 1 and self.val_split != int(self.val_split):
            _bad("val_split", self.val_split, "a fraction below 1 or a whole count of items, e.g. 0.1 or 5000")
        for name in ("warmup", "step_size", "milestones"):
            value = getattr(self, name)
            for v in (value if isinstance(value, list) else [value]):
                if v >= 1 and self.time_budget:
                    _bad(name, value, "epochs cannot be placed in a --time-budget run (its number of epochs is "
                                      "not known ahead); give a fraction of training below 1")
                if v >= 1 and v >= self.epochs:
                    _bad(name, value, f"from 1 up this counts epochs and the run has only --epochs "
                                      f"{self.epochs}; give fewer, or a fraction of training below 1")
        if self.class_weights == "auto" and self.sampler == "balanced":
            _bad("class_weights", self.class_weights, "with --sampler balanced the two correct the imbalance twice "
                 "(rare classes then dominate); choose one")
        if self.class_weights not in (None, "auto") and not Path(self.class_weights).expanduser().is_file():
            _bad("class_weights", self.class_weights, "give auto or an existing YAML/JSON file of weights")
        cols = self.label_cols
        if cols is not None and not (cols and all(isinstance(v, str) and v for v in cols)):
            _bad("label_cols", self.label_cols, "give column names, e.g. --label-cols Atelectasis,Edema")
        if self.label_sep is not None and not self.label_sep.strip():
            _bad("label_sep", self.label_sep, "give the text between labels, e.g. '|'")
        if self.label_col is not None and self.label_cols is not None:
            _bad("label_col", self.label_col, "give either --label-col (one column) or --label-cols (one per label)")
        if self.group_col is not None and not self.val_split:
            _bad("group_col", self.group_col, "acts when a validation split is carved: give --val-split too")
        if self.augment != "auto":
            from .data.augment import preset_ops
            try:
                preset_ops(self.augment)
            except ValueError as err:
                _bad("augment", self.augment, str(err))
        if "mlflow" in self.tracker:
            import importlib.util
            if importlib.util.find_spec("mlflow") is None:
                from .extras import install_hint
                _bad("tracker", self.tracker, f"MLflow is not installed: {install_hint('mlflow')}, or drop mlflow")
        if self.pretrained and self.weights:
            _bad("weights", self.weights, "give either --pretrained or --weights, not both")
        if not all(isinstance(v, str) for v in self.freeze):
            _bad("freeze", self.freeze, "give features or module names, e.g. --freeze denseblock1 denseblock2")
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device):
            _bad("device", self.device, "use auto, cpu, cuda or cuda:N")
        if not self.out.strip():
            _bad("out", self.out, "give a folder for the run folders")
        from .models.registry import check_overrides   # unknown model or argument: before any data
        check_overrides(self.model, self.model_args)

    def for_splits(self, has_val: bool) -> "TrainConfig":
        """The config for a run whose data has (or lacks) a validation split: a val_* metric with
        nothing to measure it is refused, except the default best_metric, which becomes train_top1
        (recorded as such in the run folder); for several labels per image (a resolved ``task``,
        ``for_task``) the default becomes val_map, or train_loss without a validation split."""
        multi = self.task == "multilabel"
        if has_val:
            return self.replace(best_metric="val_map") if multi and self.best_metric == TrainConfig.best_metric \
                else self
        if self.early_stop_patience and self.early_stop_metric.startswith("val_"):
            _bad("early_stop_metric", self.early_stop_metric, "this run has no validation split to watch: "
                 "give --val-split (e.g. 0.1) or --early-stop-metric train_loss")
        if self.coverage is not None:
            _bad("coverage", self.coverage, "this run has no validation split to choose the threshold on: "
                 "give --val-split (e.g. 0.1) or drop --coverage")
        if self.best_metric.startswith("val_"):
            if self.best_metric != TrainConfig.best_metric:
                _bad("best_metric", self.best_metric, "this run has no validation split to measure it: "
                     "give --val-split (e.g. 0.1) or --best-metric train_top1 or train_loss")
            return self.replace(best_metric="train_loss" if multi else "train_top1")
        return self

    def trackers(self) -> list:
        """The trackers this run writes to: ``tracker`` less tensorboard under ``--no-tensorboard``."""
        return [t for t in dict.fromkeys(self.tracker) if t != "tensorboard" or self.tensorboard]

    def for_task(self, task: str) -> "TrainConfig":
        """The config for data of ``task`` (the dataset's): --task must agree with it, and the
        settings of the other task are refused (then ``for_splits`` picks the default best metric)."""
        if self.task not in ("auto", task):
            _bad("task", self.task, f"the dataset has {task} labels; drop --task or give {task} data")
        cfg = self.replace(task=task)
        if task == "single-label":
            for name in ("loss", "pos_weight"):
                if getattr(self, name) != getattr(TrainConfig, name):
                    _bad(name, getattr(self, name), "applies to multi-label data only; drop it")
            for name in ("best_metric", "early_stop_metric"):
                if getattr(self, name) in MULTILABEL_METRICS:
                    _bad(name, getattr(self, name), "is a multi-label metric; use val_top1 or val_loss")
            return cfg
        if self.class_weights is not None:
            _bad("class_weights", self.class_weights, "weighs classes of one label per image; for several "
                 "labels use --pos-weight auto")
        if self.sampler != "shuffle":
            _bad("sampler", self.sampler, "balances classes of one label per image; for several labels use "
                 "--pos-weight auto")
        if self.early_stop_patience and self.early_stop_metric in SINGLE_LABEL_METRICS:
            _bad("early_stop_metric", self.early_stop_metric, "needs one label per image; use val_map or val_loss")
        if self.best_metric in SINGLE_LABEL_METRICS and self.best_metric != TrainConfig.best_metric:
            _bad("best_metric", self.best_metric, "needs one label per image; use val_map, val_auroc or val_loss")
        return cfg

    def schedule_points(self) -> tuple[float, list, float]:
        """(warmup, milestones, step_size) as fractions of training, epochs converted."""
        def frac(v):
            return v / self.epochs if v >= 1 else v
        return frac(self.warmup), [frac(m) for m in self.milestones], frac(self.step_size)

    # -- resume ----------------------------------------------------------------------------------
    def resume_overrides(self, given: dict, source: str = "the run", given_as: str | None = None,
                         ) -> tuple["TrainConfig", str]:
        """The settings to resume this run (``self``, its recorded config) with, given fields set
        explicitly (``given``): how long to train (epochs, time_budget) and settings that change nothing
        the result depends on (workers, device, tracking ...) are applied; out and name only locate
        the run; any other field that differs contradicts the run and is refused. Returns the config
        and a line saying what was extended and applied."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        unknown = sorted(str(k) for k in given if k not in fields)
        if unknown:
            raise DensekitError(f"unknown config field(s) {', '.join(unknown)}")
        given = {k: v for k, v in given.items() if fields[k].metadata["resume"] != "locate"}
        if given.get("task") == "auto":   # "the dataset's": what the run resolved from the same data
            given.pop("task")
        wanted = self.replace(**given)
        wanted._check_types()                         # the given values in the run's types (1 -> 1.0, "5m" -> 300.0)
        changed = [k for k in given if _resume_key(wanted, k) != _resume_key(self, k)]
        clash = [k for k in changed if fields[k].metadata["resume"] == "fixed"]
        if clash:
            said = (lambda k: f"{_flag(k)} {_shown(wanted, k)}") if given_as is None else \
                   (lambda k: f"{given_as}'s {k} {_shown(wanted, k)}")
            parts = [f"{said(k)} contradicts {source}'s {k} {_shown(self, k)}" for k in clash]
            fix = "start a new run (another --name) or drop the flag" + ("s" if len(clash) > 1 else "") \
                if given_as is None else f"{source} does not belong to this run; remove it or start a new run"
            raise DensekitError("; ".join(parts) + "; " + fix)
        keep = {k: getattr(wanted, k) for k in changed}
        cfg = self.replace(**keep).validate() if keep else self.validate()
        extended = [f"{k} {_shown(self, k)} -> {_shown(cfg, k)}" for k in changed
                    if fields[k].metadata["resume"] == "extend"]
        applied = [f"{_flag(k)} {_shown(cfg, k)}" for k in changed if fields[k].metadata["resume"] == "free"]
        note = "resuming with the run's own settings"
        if extended:
            note += "; extended: " + ", ".join(extended)
        if applied:
            note += "; applied: " + ", ".join(applied)
        return cfg, note

    # -- conversions -----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise DensekitError(f"unknown config field(s) {', '.join(unknown)}; "
                                f"valid fields: {', '.join(sorted(known))}")
        return cls(**data)

    def replace(self, **changes) -> "TrainConfig":
        return self.from_dict({**self.to_dict(), **changes})


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _either(items) -> str:
    items = [str(i) for i in items]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


class SettingError(DensekitError):
    """A refused setting: ``field``, ``value`` and what is allowed. Its text names the flag; the
    CLI names the YAML file and key instead when the value came from one (``origin``)."""

    def __init__(self, field: str, value, allowed: str):
        super().__init__(f"{_flag(field)} {value!r}: {allowed}")
        self.field, self.value, self.allowed = field, value, allowed

    def origin(self, where: str) -> DensekitError:
        return DensekitError(f"{where}: {self.field}: {self.value!r}: {self.allowed}")


def _bad(name: str, value, allowed: str):
    raise SettingError(name, value, allowed)


def _shown(cfg: TrainConfig, name: str) -> str:
    """A field's value for a message: what an unset one resolves to, never a bare None (the run's
    lr None trained at its optimizer's 0.1)."""
    value = getattr(cfg, name)
    if value is not None:
        return repr(value)
    if name == "lr":
        return f"{DEFAULT_LR[cfg.optimizer]:g} ({cfg.optimizer}'s default)"
    meta = {f.name: f.metadata for f in dataclasses.fields(cfg)}[name]
    return f"none ({meta['none']})" if meta["none"] else "none"


def _resume_key(cfg: TrainConfig, name: str):
    """A field's value for the resume comparison: the default best_metric of a run without a
    carved validation split equals the train_top1 it became (``for_splits``); an unset lr equals
    the optimizer's default it trained with."""
    if name == "lr" and cfg.lr is None:
        return DEFAULT_LR.get(cfg.optimizer)
    value = _plain(getattr(cfg, name))
    if name == "best_metric" and value == TrainConfig.best_metric and cfg.task == "multilabel":
        return "val_map" if cfg.val_split else "train_loss"     # for_splits' multi-label default
    if name == "best_metric" and value == TrainConfig.best_metric and not cfg.val_split:
        return "train_top1"
    return value


def _plain(value):
    """Lists for tuples, recursively: YAML and checkpoints record sequences differently."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def parse_duration(text: str | float | int | None) -> float | None:
    """'5m' -> 300.0, '90s' -> 90.0, '1h30m' -> 5400.0, '300' -> 300.0 (seconds)."""
    if text is None or isinstance(text, (int, float)):
        return None if text is None else float(text)
    parts = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*", text)
    if not text.strip() or not parts or not any(parts.groups()):
        raise DensekitError(f"--time-budget {text!r}: not a duration; write e.g. 5m, 90s or 1h30m")
    h, m, s = (float(g) if g else 0.0 for g in parts.groups())
    return h * 3600 + m * 60 + s


RECIPES_DIR = Path(__file__).parent / "recipes"


def list_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def load_recipe(name: str) -> dict:
    """The fields of a named recipe shipped with densekit (``recipes/NAME.yaml``)."""
    path = RECIPES_DIR / f"{name}.yaml"
    if not path.is_file():
        raise DensekitError(f"unknown recipe {name!r}: choose one of {', '.join(list_recipes()) or 'none'}")
    return load_yaml(path)


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise DensekitError(f"config file {path} not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DensekitError(f"{path}: cannot read ({err}); give a UTF-8 YAML file") from None
    except yaml.YAMLError as err:  # also a tag such as !!python/object, which safe_load refuses
        raise DensekitError(f"{path} is not valid YAML ({str(err).splitlines()[0]})") from None
    except Exception as err:  # noqa: BLE001 - PyYAML's safe constructors raise ValueError (`!!int x`, a 5000-digit
        # int), AttributeError (`!!timestamp 3`), RecursionError, ...: all of them mean the text is not valid YAML
        raise DensekitError(f"{path} is not valid YAML ({(str(err).splitlines() or [type(err).__name__])[0]})") from None
    if not isinstance(data, dict):
        raise DensekitError(f"{path} must hold a mapping of config fields, e.g. `epochs: 10`")
    return data
