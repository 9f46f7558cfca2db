"""The training configuration: one plain dataclass, saved human-readable in every run folder.

Everything needed to rebuild the model and the data pipeline lives here; the run folder's
``config.yaml`` adds what training resolved (classes, channels, normalisation statistics).
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import DensekitError


_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


@dataclass
class TrainConfig:
    # model
    model: str = "densenet-c-fmnist"     # models/compact.py: the quick-start default (docs/time-to-accuracy.md)
    model_args: dict = field(default_factory=dict)   # constructor overrides, e.g. {"growth_rate": 24}
    pretrained: bool = False           # torchvision's ImageNet weights (densenet121/161/169/201), cached, verified
    weights: str | None = None         # a local weights file to start from (torchvision, densekit, safetensors)
    freeze: list = field(default_factory=list)  # "features" (the backbone) or module names, e.g. denseblock1
    unfreeze_after: int = 0            # epochs after which --freeze ends; 0: frozen throughout
    lr_backbone: float | None = None   # the backbone's LR as a factor of --lr (the head gets --lr), e.g. 0.1
    # data
    dataset: str = "fashion-mnist"
    data_dir: str | None = None
    val_split: float = 0.1             # carved from train for validation: a fraction < 1, or a count; 0: none
    image_size: int | None = None      # resize to this (square); None keeps the source's size
    channels: int | None = None        # convert to this many channels; None keeps the source's
    augment: str = "auto"              # preset name from densekit.data.augment, "auto" picks per dataset
    tta: str = "auto"                  # test-time augmentation of the final test, eval and predict: none | flip;
                                       # "auto": flip when training flips images
    workers: int = 2                   # decoding processes for streamed (folder/tfrecord) sets
    skip_bad: bool = False             # warn about and skip undecodable items instead of stopping
    sampler: str = "shuffle"           # shuffle | balanced (each class equally likely per draw, with replacement)
    # schedule
    epochs: int = 12                   # the quick start: densenet-c-fmnist, ~7 min on 2 quiet CPU cores
    time_budget: float | None = None   # seconds; plans the LR schedule to the wall clock and stops on time
    batch_size: int = 128
    eval_batch_size: int = 512
    optimizer: str = "sgd"             # sgd | adam | adamw | rmsprop
    lr: float | None = None            # None: the optimizer's default (sgd 0.1, others 1e-3), scaled by batch if asked
    scale_lr: bool = False             # linear scaling: lr * batch_size / 128
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    wd_exclude_norm_bias: bool = True  # no weight decay on BatchNorm and bias parameters
    schedule: str = "onecycle"         # constant | step | multistep | cosine | onecycle
    milestones: list = field(default_factory=lambda: [0.5, 0.75])  # multistep: fractions of training
    step_size: float = 0.3             # step: decay every this fraction of training
    gamma: float = 0.1                 # step/multistep decay factor
    warmup: float = 0.0                # linear warmup, fraction of training; for onecycle its ramp (0: 10%)
    label_smoothing: float = 0.1       # +0.2-0.3 points on Fashion-MNIST in short schedules
    class_weights: str | None = None   # loss weight per class: auto (inverse frequency) or a YAML/JSON file
    clip_grad: float | None = None     # max gradient norm
    accumulate: int = 1                # gradient accumulation steps
    ema: float | None = None           # EMA decay of weights (e.g. 0.999); evaluated and saved alongside
    # stopping and keeping
    best_metric: str = "val_top1"      # keep checkpoints/best by this metric
    early_stop_patience: int = 0       # epochs without improvement of early_stop_metric; 0: off
    early_stop_metric: str = "val_loss"
    divergence_factor: float = 10.0    # a loss this many times the initial one counts as diverged
    # machine
    device: str = "auto"               # auto | cpu | cuda | cuda:N
    precision: str = "auto"            # auto | fp32 | bf16 | fp16
    channels_last: bool | None = None  # None: the device's fast default
    compile: bool = False
    seed: int = 0
    # run folder
    out: str = "runs"
    name: str | None = None
    checkpoint_every: float = 300.0    # also checkpoint mid-epoch every this many seconds
    tensorboard: bool = True
    histograms: bool = False           # TensorBoard: weight histograms every epoch (large event files)
    embeddings: int = 256              # TensorBoard projector: penultimate features of this many test images; 0: off
    plots: bool = True

    def validate(self) -> "TrainConfig":
        def bad(field_name, value, what):
            raise DensekitError(f"{field_name.replace('_', '-')} {value!r}: {what}")
        self._check_types(bad)
        if self.optimizer not in ("sgd", "adam", "adamw", "rmsprop"):
            bad("optimizer", self.optimizer, "choose sgd, adam, adamw or rmsprop")
        if self.schedule not in ("constant", "step", "multistep", "cosine", "onecycle"):
            bad("schedule", self.schedule, "choose constant, step, multistep, cosine or onecycle")
        if self.tta not in ("auto", "none", "flip"):
            bad("tta", self.tta, "choose auto, none or flip")
        if self.sampler not in ("shuffle", "balanced"):
            bad("sampler", self.sampler, "choose shuffle or balanced")
        if self.class_weights == "auto" and self.sampler == "balanced":
            bad("class_weights", self.class_weights, "with --sampler balanced the two correct the imbalance twice "
                "(rare classes then dominate); choose one")
        if self.class_weights not in (None, "auto") and not Path(self.class_weights).expanduser().is_file():
            bad("class_weights", self.class_weights, "give auto or an existing YAML/JSON file of weights")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            bad("precision", self.precision, "choose auto, fp32, bf16 or fp16")
        for name in ("epochs", "batch_size", "eval_batch_size", "accumulate"):
            if int(getattr(self, name)) < 1:
                bad(name, getattr(self, name), "must be a positive whole number")
        if self.lr is not None and not self.lr > 0:
            bad("lr", self.lr, "the learning rate must be positive, e.g. --lr 0.1")
        if self.time_budget is not None and not self.time_budget > 0:
            bad("time_budget", self.time_budget, "give a positive duration such as 5m or 300s")
        if not 0 <= self.label_smoothing < 1:
            bad("label_smoothing", self.label_smoothing, "must be in [0, 1)")
        if self.ema is not None and not 0 < self.ema < 1:
            bad("ema", self.ema, "the EMA decay must be in (0, 1), e.g. 0.999")
        if self.pretrained and self.weights is not None:
            bad("weights", self.weights, "give either --pretrained or --weights, not both")
        if not all(isinstance(v, str) for v in self.freeze):
            bad("freeze", self.freeze, "give features or module names, e.g. --freeze denseblock1 denseblock2")
        if self.unfreeze_after < 0 or (self.unfreeze_after and not self.freeze):
            bad("unfreeze_after", self.unfreeze_after, "a number of epochs >= 0, and only with --freeze")
        if self.lr_backbone is not None and not self.lr_backbone > 0:
            bad("lr_backbone", self.lr_backbone, "a positive factor of --lr, e.g. 0.1")
        if self.val_split < 0:
            bad("val_split", self.val_split, "must be 0 (none), a count, or a fraction below 1")
        return self

    def _check_types(self, bad):
        """YAML and flags give strings and ints where floats are meant: coerce what is safe, reject the rest."""
        import typing
        for f in dataclasses.fields(self):
            value, kind = getattr(self, f.name), typing.get_type_hints(type(self))[f.name]
            allowed = typing.get_args(kind) or (kind,)
            if value is None and type(None) in allowed:
                continue
            if float in allowed and isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
                # YAML 1.1 reads "1e-3" (no dot) as a string; it is the float everyone means.
                value = float(value)
                setattr(self, f.name, value)
            if float in allowed and isinstance(value, int) and not isinstance(value, bool):
                setattr(self, f.name, float(value) if int not in allowed else value)
            elif not isinstance(value, tuple(t for t in allowed if isinstance(t, type))) or \
                    (isinstance(value, bool) and bool not in allowed):
                names = " or ".join("none" if t is type(None) else t.__name__ for t in allowed)
                bad(f.name, value, f"expected {names}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DensekitError(f"unknown config field(s) {', '.join(unknown)}; "
                                f"valid fields: {', '.join(sorted(known))}")
        return cls(**data)

    def replace(self, **changes) -> "TrainConfig":
        return self.from_dict({**self.to_dict(), **changes})


def parse_duration(text: str | float | int | None) -> float | None:
    """'5m' -> 300.0, '90s' -> 90.0, '1h30m' -> 5400.0, '300' -> 300.0 (seconds)."""
    if text is None or isinstance(text, (int, float)):
        return None if text is None else float(text)
    parts = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*", text)
    if not text.strip() or not parts or not any(parts.groups()):
        raise DensekitError(f"time budget {text!r} is not a duration: write e.g. 5m, 90s or 1h30m")
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
    except yaml.YAMLError as err:
        raise DensekitError(f"{path} is not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise DensekitError(f"{path} must hold a mapping of config fields, e.g. `epochs: 10`")
    return data
