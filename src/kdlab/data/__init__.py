"""Datasets as in-memory tensors: sources, seeded stratified splits, augmentations and a fast loader."""

from .base import DATASETS, ArrayDataset, DataSplits, RawDataset
from .dataset_loader import DatasetLoader
from .epochs import batches_per_epoch, set_loader_epoch
from .image_folder import ImageFiles
from .streaming import STREAMING_SOURCES, DecodedImages, StreamedSplits, open_streaming
from .fashion_mnist import fetch_fashion_mnist, locate_fashion_mnist
from .hierarchical_mixture import HierarchicalMixture
from .idx import read_idx, write_idx
from .load import load_dataset
from .loader import Batch, TensorLoader, epoch_order
from .multiview import MultiViewData, MultiViewSample
from .paths import default_data_dir
from .synthetic import GaussianMixture
from .transforms import Compose, HorizontalFlip, RandomCropPad, build_augment, normalize

__all__ = [
    "ArrayDataset",
    "DatasetLoader",
    "DecodedImages",
    "StreamedSplits",
    "ImageFiles",
    "STREAMING_SOURCES",
    "batches_per_epoch",
    "epoch_order",
    "open_streaming",
    "set_loader_epoch",
    "Batch",
    "Compose",
    "DATASETS",
    "DataSplits",
    "GaussianMixture",
    "HierarchicalMixture",
    "HorizontalFlip",
    "MultiViewData",
    "MultiViewSample",
    "RandomCropPad",
    "RawDataset",
    "TensorLoader",
    "build_augment",
    "default_data_dir",
    "fetch_fashion_mnist",
    "load_dataset",
    "locate_fashion_mnist",
    "normalize",
    "read_idx",
    "write_idx",
]
