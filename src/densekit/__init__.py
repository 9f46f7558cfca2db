"""densekit: DenseNets (Huang et al., arXiv 1608.06993) to define, train, evaluate, predict and benchmark."""
__version__ = "0.1.0"

from .errors import DensekitError
from .models import DenseNet, create_model, list_models

__all__ = ["DensekitError", "DenseNet", "create_model", "list_models", "__version__"]
