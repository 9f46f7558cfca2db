"""Engine: training, evaluation, prediction, the checkpoint format and the run folder."""
from .checkpoint import load_checkpoint, save_checkpoint
from .evaluate import evaluate, predict
from .run import RunFolder
from .trainer import Callback, Run, Trainer

__all__ = ["Callback", "Run", "RunFolder", "Trainer", "evaluate", "load_checkpoint", "predict",
           "save_checkpoint"]
