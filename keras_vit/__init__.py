"""keras_vit: the Vision Transformer (Dosovitskiy et al., 2021) for Keras 3,
on the TensorFlow, JAX and PyTorch backends."""

from keras_vit import startup

if startup.program():  # `python -m keras_vit.<program>`: its quiet start-up, before Keras loads
    startup.quiet_start(startup.program())

from keras_vit import layers
from keras_vit.model import ViT
from keras_vit.presets import list_presets
from keras_vit.saving import load_model

__version__ = "0.1.0"

__all__ = ["ViT", "layers", "list_presets", "load_model"]
