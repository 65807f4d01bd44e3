"""The layers of the Vision Transformer, each a registered Keras layer."""

from keras_vit.layers.attention import MultiHeadSelfAttention
from keras_vit.layers.class_token import ClassToken
from keras_vit.layers.drop_path import DropPath
from keras_vit.layers.mlp import MlpBlock, gelu
from keras_vit.layers.patch_dropout import PatchDropout
from keras_vit.layers.patch_embedding import PatchEmbedding
from keras_vit.layers.position_embedding import (
    PositionEmbedding,
    resize_position_embeddings,
    sincos_2d_embeddings,
)
from keras_vit.layers.registers import Registers
from keras_vit.layers.resnet import ResNetStage, ResNetStem, ResNetUnit, StdConv2D
from keras_vit.layers.transformer_block import TransformerBlock

__all__ = [
    "ClassToken",
    "DropPath",
    "MlpBlock",
    "MultiHeadSelfAttention",
    "PatchDropout",
    "PatchEmbedding",
    "PositionEmbedding",
    "Registers",
    "ResNetStage",
    "ResNetStem",
    "ResNetUnit",
    "StdConv2D",
    "TransformerBlock",
    "gelu",
    "resize_position_embeddings",
    "sincos_2d_embeddings",
]
