"""keras_vit: the Vision Transformer (Dosovitskiy et al., 2021) for Keras 3."""

from keras_vit.startup import import_tensorflow

import_tensorflow()  # first: TensorFlow's start-up lines at TF_CPP_MIN_LOG_LEVEL

from keras_vit import layers
from keras_vit.model import ViT
from keras_vit.presets import list_presets
from keras_vit.saving import load_model

__version__ = "0.1.0"

__all__ = ["ViT", "layers", "list_presets", "load_model"]
