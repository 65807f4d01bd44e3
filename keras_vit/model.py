"""The Vision Transformer as a functional Keras model."""

import inspect
import json
import os

import keras
from keras import ops

from keras_vit import checkpoints, presets, saving
from keras_vit.layers import (
    ClassToken,
    PatchDropout,
    PatchEmbedding,
    PositionEmbedding,
    ResNetStem,
    TransformerBlock,
)
from keras_vit.layers.patch_embedding import grid_size, image_size_pair
from keras_vit.layers.resnet import GROUPS, feature_size, stem_stride

POOLINGS = ("token", "gap")
POSITION_EMBEDDINGS = ("learned", "sincos2d", "none")
FEATURES = ("tokens", "pooled", "hidden_states", "attention", "logits")


@keras.saving.register_keras_serializable(package="keras_vit")
class ViT(keras.Model):
    """Vision Transformer (Dosovitskiy et al., 2021), configured by keyword.

    Input: images `(B, H, W, 3)`, values in [0, 255] when `include_rescaling`
    (mapped to [-1, 1] inside, as the original preprocessing), else in [-1, 1].
    Output: logits `(B, num_classes)`, or the pooled representation `(B, D)`
    (`representation_size` wide with a pre-logits layer) without the top.

    Layers, by name (the names are API; checkpoints map onto them):
    `rescaling`, `embedding` (PatchEmbedding), `class_token` (with token
    pooling), `position_embedding`, `encoderblock_{i}` (TransformerBlock),
    and for hybrids `resnet` (ResNetStem) before `embedding`,
    `encoder_norm`, `pre_logits` (Dense + tanh, with `representation_size`),
    `head` (zero-initialised Dense).

    Args:
        image_size: int or `(height, width)`; both divisible by `patch_size`
            (for hybrids: the ResNet feature map's sides).
        patch_size: side of the square patches (for hybrids: on the feature map).
        hidden_dim: token width D.
        num_layers: Transformer blocks.
        num_heads: attention heads; must divide `hidden_dim`.
        mlp_dim: hidden width of each block's MLP.
        num_classes: width of the head.
        include_top: add the head (and return logits).
        pooling: `"token"`: the class token's output; `"gap"`: mean of the
            patch tokens, with no class token (the original `classifier="gap"`).
        representation_size: None, or the width of a pre-logits Dense + tanh.
        dropout_rate, attention_dropout_rate: dropout rates.
        drop_path_rate: stochastic depth of the last block; block i gets
            `drop_path_rate * i / (num_layers - 1)`.
        patch_dropout_rate: in training, the fraction of patch tokens dropped
            after the position embedding (PatchDropout, timm's
            `patch_drop_rate`); no effect at inference.
        gelu_approximate: tanh GELU (True, the original) or exact erf.
        layer_norm_epsilon: 1e-6 (original), 1e-12 for HF-converted weights.
        include_rescaling: map [0, 255] inputs to [-1, 1] inside the model.
        position_embedding: `"learned"` (the paper), `"sincos2d"` (fixed,
            big_vision) or `"none"`.
        resnet_layers: None for the plain ViT; for a hybrid, the units per
            stage of its ResNet stem (the original `resnet.num_layers`):
            `(3, 4, 9)` for R50+ViT-B/16 (stride 16), `()` for the root alone
            (stride 4). The Transformer then embeds the feature map.
        resnet_width: the stem's width factor (root width `64 * resnet_width`,
            a multiple of 32 for GroupNorm's 32 groups).
    """

    def __init__(
        self,
        image_size=224,
        patch_size=16,
        hidden_dim=768,
        num_layers=12,
        num_heads=12,
        mlp_dim=3072,
        num_classes=1000,
        include_top=True,
        pooling="token",
        representation_size=None,
        dropout_rate=0.0,
        attention_dropout_rate=0.0,
        drop_path_rate=0.0,
        patch_dropout_rate=0.0,
        gelu_approximate=True,
        layer_norm_epsilon=1e-6,
        include_rescaling=True,
        position_embedding="learned",
        resnet_layers=None,
        resnet_width=1,
        dtype=None,
        name="vit",
        **kwargs,
    ):
        image_size = image_size_pair(image_size)
        resnet_layers = _check_resnet(resnet_layers, resnet_width)
        _check_config(
            image_size=image_size,
            patch_size=patch_size,
            hidden_dim=hidden_dim,
            num_layers=num_layers,
            num_heads=num_heads,
            mlp_dim=mlp_dim,
            num_classes=num_classes,
            pooling=pooling,
            representation_size=representation_size,
            rates=dict(
                dropout_rate=dropout_rate,
                attention_dropout_rate=attention_dropout_rate,
                drop_path_rate=drop_path_rate,
                patch_dropout_rate=patch_dropout_rate,
            ),
            position_embedding=position_embedding,
            resnet_layers=resnet_layers,
        )
        policy = keras.dtype_policies.get(dtype) if dtype is not None else keras.config.dtype_policy()
        # Logits in float32 under mixed precision; otherwise the model's dtype.
        head_dtype = "float32" if policy.variable_dtype == "float32" else policy
        layers = []
        if include_rescaling:
            layers.append(keras.layers.Rescaling(1 / 127.5, offset=-1.0, dtype=policy, name="rescaling"))
        if resnet_layers is not None:
            layers.append(ResNetStem(resnet_layers, resnet_width, dtype=policy, name="resnet"))
        layers.append(PatchEmbedding(patch_size, hidden_dim, dtype=policy, name="embedding"))
        if pooling == "token":
            layers.append(ClassToken(dtype=policy, name="class_token"))
        if position_embedding != "none":
            layers.append(
                PositionEmbedding(
                    grid_size(feature_size(image_size, resnet_layers), patch_size),
                    num_prefix_tokens=int(pooling == "token"),
                    kind=position_embedding,
                    dtype=policy,
                    name="position_embedding",
                )
            )
        layers.append(keras.layers.Dropout(dropout_rate, dtype=policy, name="embedding_dropout"))
        if patch_dropout_rate:
            layers.append(
                PatchDropout(
                    patch_dropout_rate,
                    num_prefix_tokens=int(pooling == "token"),
                    dtype=policy,
                    name="patch_dropout",
                )
            )
        for i in range(num_layers):
            layers.append(
                TransformerBlock(
                    num_heads,
                    mlp_dim,
                    dropout_rate=dropout_rate,
                    attention_dropout_rate=attention_dropout_rate,
                    drop_path_rate=drop_path_rate * i / max(num_layers - 1, 1),
                    gelu_approximate=gelu_approximate,
                    layer_norm_epsilon=layer_norm_epsilon,
                    dtype=policy,
                    name=f"encoderblock_{i}",
                )
            )
        layers.append(
            keras.layers.LayerNormalization(epsilon=layer_norm_epsilon, dtype=policy, name="encoder_norm")
        )
        if representation_size is not None:
            layers.append(
                keras.layers.Dense(representation_size, activation="tanh", dtype=policy, name="pre_logits")
            )
        if include_top:
            layers.append(
                keras.layers.Dense(num_classes, kernel_initializer="zeros", dtype=head_dtype, name="head")
            )

        images = keras.Input((*image_size, 3), name="images")
        features = _forward({layer.name: layer for layer in layers}, images, pooling)
        super().__init__(
            inputs=images,
            outputs=features["logits" if include_top else "pooled"],
            name=name,
            **kwargs,
        )
        self.dtype_policy = policy
        self.image_size = image_size
        self.patch_size = patch_size
        self.hidden_dim = hidden_dim
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.num_classes = num_classes
        self.include_top = include_top
        self.pooling = pooling
        self.representation_size = representation_size
        self.dropout_rate = dropout_rate
        self.attention_dropout_rate = attention_dropout_rate
        self.drop_path_rate = drop_path_rate
        self.patch_dropout_rate = patch_dropout_rate
        self.gelu_approximate = gelu_approximate
        self.layer_norm_epsilon = layer_norm_epsilon
        self.include_rescaling = include_rescaling
        self.position_embedding = position_embedding
        self.resnet_layers = resnet_layers
        self.resnet_width = resnet_width

    @classmethod
    def from_preset(cls, preset, weights=None, resize_method="bilinear", **overrides):
        """Builds preset `preset` (see `keras_vit.list_presets()`), or the model
        of a preset folder written by `save_to_preset`.

        Every constructor argument can be overridden, e.g.
        `ViT.from_preset("vit_b16", image_size=384, num_classes=10)`.

        `weights`: None (fresh weights), a named source of the preset
        (`keras_vit.checkpoints.list_sources(preset)`, e.g. `"imagenet21k"`;
        downloaded into `$KERAS_VIT_HOME` once), or a path: an original or
        big_vision `.npz`, a timm or Hugging Face `.safetensors`, a `.keras`
        file or a preset folder. With weights, image size, classes,
        pre-logits, pooling, GELU form and LayerNorm epsilon default to the
        checkpoint's. Another `image_size` resizes the position embeddings
        (`resize_method` `"bilinear"`, the original rule, or `"bicubic"`, timm's);
        another `num_classes` gives a fresh zero-initialised head;
        `include_top=False` drops the head and `representation_size=None`
        drops the pre-logits layer. Loading is strict: unused checkpoint keys
        and unset weights are errors.
        """
        known = set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs"}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(
                f"Unknown ViT argument(s) {', '.join(unknown)}; expected some of {', '.join(sorted(known))}."
            )
        if preset not in presets.PRESETS and isinstance(preset, (str, os.PathLike)) and os.path.isdir(preset):
            if weights is not None:
                raise ValueError(
                    f"preset {os.fspath(preset)!r} is a preset folder and brings its own weights; "
                    f"got weights={weights!r} too. Pass one or the other."
                )
            if not overrides:
                return saving.load_model(preset)
            weights, config = preset, {}
        else:
            config = presets.preset_config(preset)
            config["name"] = preset
        if weights is None:
            return cls(**{**config, **overrides})
        if isinstance(weights, str) and weights in checkpoints.list_sources(preset):
            weights = checkpoints.fetch(preset, weights)
        elif not os.path.exists(weights):
            raise ValueError(
                f"weights={weights!r} is neither an existing path nor a named source of "
                f"preset {preset!r} (named: {', '.join(checkpoints.list_sources(preset)) or 'none'})."
            )
        num_heads = overrides.get("num_heads", config.get("num_heads"))
        checkpoint = checkpoints.read_checkpoint(weights, num_heads=num_heads)
        model = cls(**checkpoints.model_config(checkpoint, config, overrides, preset))
        return checkpoints.assign(model, checkpoint, resize_method)

    @property
    def grid_size(self):
        """`(grid_h, grid_w)`: the patch tokens' grid (for a hybrid, its
        ResNet feature map cut into patches)."""
        return grid_size(feature_size(self.image_size, self.resnet_layers), self.patch_size)

    @property
    def token_stride(self):
        """Input pixels from one patch token's patch to the next: `patch_size`,
        times the ResNet stem's stride for a hybrid."""
        return self.patch_size * stem_stride(self.resnet_layers)

    def save_to_preset(self, directory):
        """Writes a preset folder, keras-hub's layout: `config.json` (the class
        and its `get_config()`) and `model.weights.h5`."""
        os.makedirs(directory, exist_ok=True)
        config = keras.saving.serialize_keras_object(self)
        config.pop("compile_config", None)  # the optimizer is the trainer's, not the preset's
        with open(os.path.join(directory, saving.PRESET_CONFIG), "w") as f:
            json.dump(config, f, indent=2)
        self.save_weights(os.path.join(directory, saving.PRESET_WEIGHTS))

    def __call__(self, images, *args, **kwargs):
        expected = (*self.image_size, 3)
        if not hasattr(images, "shape"):  # a nested list of pixels, as Keras layers accept
            images = ops.convert_to_tensor(images, dtype="float32")
        shape = tuple(images.shape)
        if len(shape) != 4 or any(got is not None and got != want for got, want in zip(shape[1:], expected)):
            raise ValueError(
                f"{self.name} expects images of shape (batch, {expected[0]}, {expected[1]}, 3), "
                f"got {shape}. Resize the images, or build the model with "
                f"image_size=(height, width) to match them."
            )
        return super().__call__(images, *args, **kwargs)

    def forward_features(self, images):
        """`(B, T, D)`: the tokens after the final LayerNorm (timm's
        `forward_features`); `T` counts the class token with token pooling."""
        return _features(self._layers_by_name(), images)["tokens"]

    def forward_head(self, tokens, pre_logits=False):
        """Pools `forward_features`' tokens; returns the pooled representation
        `(B, D)` with `pre_logits` (or without the top), else the logits."""
        layers = self._layers_by_name()
        pooled = _pool(layers, tokens, self.pooling)
        return pooled if pre_logits or "head" not in layers else layers["head"](pooled)

    def _layers_by_name(self):
        return {layer.name: layer for layer in self.layers}

    def feature_extractor(self, outputs=("tokens", "pooled")):
        """A `keras.Model` on this model's layers (no copy of the weights).

        It maps images to a dict with the requested keys:
        `tokens` `(B, T, D)`: the sequence after the final LayerNorm;
        `pooled` `(B, D)`: the pooled representation (after pre-logits);
        `hidden_states`: a list of `num_layers` outputs `(B, T, D)`, one per block;
        `attention`: a list of `num_layers` attention probabilities
        `(B, heads, T, T)`; `logits` `(B, num_classes)` with the top.
        `T` is the number of patches, plus one with token pooling.
        """
        outputs = tuple(outputs)
        allowed = FEATURES if self.include_top else FEATURES[:-1]
        unknown = [name for name in outputs if name not in allowed]
        if unknown or not outputs:
            raise ValueError(f"Unknown feature output(s) {unknown}; expected some of {allowed}.")
        return _FeatureExtractor(self, outputs)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
            "image_size": self.image_size,
            "patch_size": self.patch_size,
            "hidden_dim": self.hidden_dim,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "mlp_dim": self.mlp_dim,
            "num_classes": self.num_classes,
            "include_top": self.include_top,
            "pooling": self.pooling,
            "representation_size": self.representation_size,
            "dropout_rate": self.dropout_rate,
            "attention_dropout_rate": self.attention_dropout_rate,
            "drop_path_rate": self.drop_path_rate,
            "patch_dropout_rate": self.patch_dropout_rate,
            "gelu_approximate": self.gelu_approximate,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "include_rescaling": self.include_rescaling,
            "position_embedding": self.position_embedding,
            "resnet_layers": None if self.resnet_layers is None else list(self.resnet_layers),
            "resnet_width": self.resnet_width,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
        return cls(**config)


class _FeatureExtractor(keras.Model):
    """Runs a ViT's own layers and returns the named intermediates.

    A subclassed model rather than a second functional graph: Keras' graph
    check takes a layer's output structure from its first call, and the blocks
    return attention probabilities only here.
    """

    def __init__(self, vit, feature_names):
        super().__init__(dtype=vit.dtype_policy, name=f"{vit.name}_features")
        self.vit = vit
        self.feature_names = feature_names

    def call(self, images):
        features = _forward(
            self.vit._layers_by_name(),
            images,
            self.vit.pooling,
            return_attention="attention" in self.feature_names,
        )
        return {name: features[name] for name in self.feature_names}


def _forward(layers, images, pooling, return_attention=False):
    """Applies the named layers to `images`; returns every intermediate by name."""
    features = _features(layers, images, return_attention)
    features["pooled"] = _pool(layers, features["tokens"], pooling)
    if "head" in layers:
        features["logits"] = layers["head"](features["pooled"])
    return features


def _features(layers, images, return_attention=False):
    """Embedding and Transformer: `tokens` `(B, T, D)` after the final
    LayerNorm, and each block's output (`hidden_states`) and, with
    `return_attention`, attention probabilities (`attention`)."""
    x = images
    for name in (
        "rescaling",
        "resnet",
        "embedding",
        "class_token",
        "position_embedding",
        "embedding_dropout",
        "patch_dropout",
    ):
        if name in layers:
            x = layers[name](x)
    hidden_states, attention = [], []
    for i in range(sum(name.startswith("encoderblock_") for name in layers)):
        block = layers[f"encoderblock_{i}"]
        if return_attention:
            x, probs = block(x, return_attention_scores=True)
            attention.append(probs)
        else:
            x = block(x)
        hidden_states.append(x)
    return dict(tokens=layers["encoder_norm"](x), hidden_states=hidden_states, attention=attention)


def _pool(layers, tokens, pooling):
    """`(B, T, D)` tokens -> `(B, D)` (or `representation_size`): the class
    token's output or the mean of the patch tokens, then pre-logits if any."""
    pooled = tokens[:, 0] if pooling == "token" else ops.mean(tokens, axis=1)
    return layers["pre_logits"](pooled) if "pre_logits" in layers else pooled


def _check_resnet(resnet_layers, resnet_width):
    """`resnet_layers` as a tuple (or None), with clear errors."""
    if resnet_layers is None:
        return None
    if not isinstance(resnet_layers, (tuple, list)) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in resnet_layers
    ):
        raise ValueError(
            f"resnet_layers must be None (plain ViT) or a tuple of positive ints (units per "
            f"ResNet stage, e.g. (3, 4, 9); () for the root alone), got {resnet_layers!r}."
        )
    width = (
        64 * resnet_width
        if isinstance(resnet_width, (int, float)) and not isinstance(resnet_width, bool)
        else None
    )
    if width is None or width <= 0 or width != int(width) or int(width) % GROUPS:
        raise ValueError(
            f"resnet_width must make a root width 64 * resnet_width that is a positive multiple "
            f"of {GROUPS} (GroupNorm's groups), e.g. 0.5, 1 or 2; got {resnet_width!r}."
        )
    return tuple(resnet_layers)


def _check_config(
    image_size,
    patch_size,
    hidden_dim,
    num_layers,
    num_heads,
    mlp_dim,
    num_classes,
    pooling,
    representation_size,
    rates,
    position_embedding,
    resnet_layers=None,
):
    sizes = dict(
        patch_size=patch_size,
        hidden_dim=hidden_dim,
        num_layers=num_layers,
        num_heads=num_heads,
        mlp_dim=mlp_dim,
        num_classes=num_classes,
        image_height=image_size[0],
        image_width=image_size[1],
    )
    if representation_size is not None:
        sizes["representation_size"] = representation_size
    for key, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{key} must be a positive int, got {value!r}.")
    features = feature_size(image_size, resnet_layers)
    if resnet_layers is not None and any(size % patch_size for size in features):
        raise ValueError(
            f"image_size {image_size} gives a ResNet feature map of {features} (stride "
            f"{stem_stride(resnet_layers)}), not divisible by patch_size {patch_size}; use an image "
            f"size that is a multiple of {stem_stride(resnet_layers) * patch_size}."
        )
    grid_size(features, patch_size)
    if hidden_dim % num_heads:
        raise ValueError(
            f"hidden_dim {hidden_dim} is not divisible by num_heads {num_heads}; "
            f"each head gets hidden_dim / num_heads channels."
        )
    if pooling not in POOLINGS:
        raise ValueError(f"Unknown pooling {pooling!r}; expected one of {POOLINGS}.")
    if position_embedding not in POSITION_EMBEDDINGS:
        raise ValueError(
            f"Unknown position_embedding {position_embedding!r}; expected one of {POSITION_EMBEDDINGS}."
        )
    for key, rate in rates.items():
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"{key} must be in [0, 1), got {rate!r}.")
