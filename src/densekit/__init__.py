"""densekit: DenseNets (Huang et al., arXiv 1608.06993) to define, train, evaluate, predict and benchmark."""
__version__ = "0.1.0"

from .allocator import keep_freed_memory

keep_freed_memory()  # before any tensor is allocated: see allocator.py

from .config import TrainConfig
from .data import list_sources, load_dataset
from .api import train
from .engine import Run, evaluate, predict
from .engine.explain import explain
from .errors import DensekitError
from .lr_find import lr_find
from .models import DenseNet, create_model, list_models

__all__ = ["DensekitError", "DenseNet", "Run", "TrainConfig", "create_model", "evaluate", "explain", "list_models",
           "list_sources", "load_dataset", "lr_find", "predict", "train", "__version__"]
