"""Pretrained checkpoints: readers for each layout, named sources, downloads, strict loading."""

from keras_vit.checkpoints.download import cache_dir, fetch
from keras_vit.checkpoints.loading import assign, copy_with, from_preset, model_config, weights_path
from keras_vit.checkpoints.read import Checkpoint, read_checkpoint
from keras_vit.checkpoints.sources import SOURCES, Source, list_sources

__all__ = [
    "SOURCES",
    "Checkpoint",
    "Source",
    "assign",
    "cache_dir",
    "copy_with",
    "fetch",
    "from_preset",
    "list_sources",
    "model_config",
    "read_checkpoint",
    "weights_path",
]
