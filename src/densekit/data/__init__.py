"""Data: sources in their real formats, the dataset contract, loaders, normalisation, augmentation."""
from .augment import PRESETS, Augment, default_augment
from .dataset import ImageDataset, MissingSplit, TensorImageDataset
from .images import decode_image
from .loader import Loader
from .sources import list_sources, load_dataset, load_splits, register_source
from .splits import carve_val
from .transforms import Normalize, channel_stats

__all__ = ["ImageDataset", "TensorImageDataset", "MissingSplit", "Loader", "Normalize", "channel_stats",
           "list_sources", "load_dataset", "load_splits", "register_source", "carve_val", "decode_image",
           "Augment", "PRESETS", "default_augment"]
