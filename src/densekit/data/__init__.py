"""Data: sources in their real formats, the dataset contract, loaders, normalisation, augmentation."""
from .dataset import ImageDataset, TensorImageDataset
from .loader import Loader
from .sources import list_sources, load_dataset, register_source
from .transforms import Normalize, channel_stats

__all__ = ["ImageDataset", "TensorImageDataset", "Loader", "Normalize", "channel_stats",
           "list_sources", "load_dataset", "register_source"]
