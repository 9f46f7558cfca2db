"""Models: DenseNet and its building blocks, baselines, and the registry that names them."""
from . import densenet  # noqa: F401  (registers the named configurations)
from . import baselines, googlenet, inception_resnet, nin, resnet, vgg  # noqa: F401  (register the baselines)
from . import compact  # noqa: F401  (compact DenseNets for 28x28 images: the quick-start default)
from .densenet import DenseNet
from .layers import DenseBlock, DenseLayer, Transition
from .registry import create_model, get_entry, list_models, register_model
from .resnet import ResNet
from .summary import summarize
from .vgg import VGG
from .weights import load_weights

__all__ = ["DenseNet", "DenseBlock", "DenseLayer", "ResNet", "Transition", "VGG", "create_model", "get_entry",
           "list_models", "load_weights", "register_model", "summarize"]
