"""Engine: training, evaluation, prediction, the checkpoint format and the run folder."""
from .callbacks import Callback, Context, Run
from .checkpoint import load_checkpoint, save_checkpoint, save_weights
from .evaluate import evaluate, predict
from .run import RunFolder
from .trainer import Trainer

__all__ = ["Callback", "Context", "Run", "RunFolder", "Trainer", "evaluate", "load_checkpoint", "predict",
           "save_checkpoint", "save_weights"]
