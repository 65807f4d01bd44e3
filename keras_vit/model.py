"""The Vision Transformer as a functional Keras model."""

import inspect
import types

import keras
from keras import ops

from keras_vit import checkpoints, config_checks, distribution, features, lora, saving
from keras_vit.layers import (
    ClassToken,
    PatchDropout,
    PatchEmbedding,
    PositionEmbedding,
    Registers,
    ResNetStem,
    TransformerBlock,
)
from keras_vit.layers.resnet import stem_stride, token_grid

# Pixel mean and std in [0, 1] units of the original's [-1, 1] inputs (timm's IMAGENET_INCEPTION_*).
INCEPTION_MEAN, INCEPTION_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


@keras.saving.register_keras_serializable(package="keras_vit")
class ViT(keras.Model):
    """Vision Transformer (Dosovitskiy et al., 2021), configured by keyword.

    Input: images `(B, H, W, 3)`, values in [0, 255] when `include_rescaling`
    (mapped inside to `(x / 255 - image_mean) / image_std`: [-1, 1] as the
    original preprocessing by default), else already normalised that way.
    Output: logits `(B, num_classes)`, or the pooled representation `(B, D)`
    (`representation_size` wide with a pre-logits layer) without the top.

    Tokens, in order: the class token (with token pooling), DeiT's
    distillation token (`distilled`), `num_registers` registers, the patches.

    Layers, by name (the names are API; checkpoints map onto them):
    `rescaling`, `embedding` (PatchEmbedding), `distillation_token` and
    `class_token` (ClassToken), `position_embedding`, `registers`,
    `encoderblock_{i}` (TransformerBlock), and for hybrids `resnet`
    (ResNetStem) before `embedding`; `encoder_norm` (LayerNorm on every
    token) or `pooled_norm` (LayerNorm after pooling), `pre_logits` (Dense +
    tanh, with `representation_size`), `head` and `distillation_head`
    (zero-initialised Dense).

    Args:
        image_size: int or `(height, width)`; both divisible by `patch_size`
            (for hybrids: the ResNet feature map's sides). None: any size
            divisible by the patch size, chosen at call time (timm's
            `dynamic_img_size`); the position embeddings are then resized in
            the graph from `position_grid_size` by `position_resize_method`.
        patch_size: side of the square patches (for hybrids: on the feature map).
        hidden_dim: token width D.
        num_layers: Transformer blocks.
        num_heads: attention heads; must divide `hidden_dim`.
        mlp_dim: hidden width of each block's MLP.
        num_classes: width of the head.
        include_top: add the head (and return logits).
        pooling: `"token"`: the class token's output; `"gap"`: mean of the
            patch tokens, with no class token (the original `classifier="gap"`).
        distilled: DeiT's distillation token, with a position embedding and
            its own head, `distillation_head`; the logits are the mean of the
            two heads' (DeiT, timm). Needs token pooling.
        num_registers: learned register tokens (Darcet et al., 2024): no
            position embedding, left out of pooling.
        final_norm: `"tokens"`: the encoder's LayerNorm on every token, then
            pooling (the original, also for gap); `"pooled"`: pooling, then a
            LayerNorm (timm's `fc_norm`, its `*_gap` models).
        representation_size: None, or the width of a pre-logits Dense + tanh.
        dropout_rate, attention_dropout_rate: dropout rates.
        drop_path_rate: stochastic depth of the last block; block i gets
            `drop_path_rate * i / (num_layers - 1)`.
        patch_dropout_rate: in training, the fraction of patch tokens dropped
            after the position embedding (PatchDropout, timm's
            `patch_drop_rate`); no effect at inference.
        gelu_approximate: tanh GELU (True, the original) or exact erf.
        layer_norm_epsilon: 1e-6 (original), 1e-12 for HF-converted weights.
        include_rescaling: normalise [0, 255] inputs inside the model.
        image_mean, image_std: per-channel mean and std of the pixels in
            [0, 1] units, as the model's training normalised them: (0.5,)*3
            each for the original models, ImageNet's for DeiT. Kept in the
            config (and in exported metadata) also without `include_rescaling`.
        position_embedding: `"learned"` (the paper), `"sincos2d"` (fixed,
            big_vision) or `"none"`.
        resnet_layers: None for the plain ViT; for a hybrid, the units per
            stage of its ResNet stem (the original `resnet.num_layers`):
            `(3, 4, 9)` for R50+ViT-B/16 (stride 16), `()` for the root alone
            (stride 4). The Transformer then embeds the feature map.
        resnet_width: the stem's width factor (root width `64 * resnet_width`,
            a multiple of 32 for GroupNorm's 32 groups).
        position_grid_size: with `image_size=None`, the patch grid
            `(grid_h, grid_w)` the learned position embeddings are stored for
            (`from_preset` takes the checkpoint's).
        position_resize_method: with `image_size=None`, `"bilinear"` (the
            original rule) or `"bicubic"` (timm's).
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
        distilled=False,
        num_registers=0,
        final_norm="tokens",
        representation_size=None,
        dropout_rate=0.0,
        attention_dropout_rate=0.0,
        drop_path_rate=0.0,
        patch_dropout_rate=0.0,
        gelu_approximate=True,
        layer_norm_epsilon=1e-6,
        include_rescaling=True,
        image_mean=INCEPTION_MEAN,
        image_std=INCEPTION_STD,
        position_embedding="learned",
        resnet_layers=None,
        resnet_width=1,
        position_grid_size=None,
        position_resize_method="bilinear",
        dtype=None,
        name="vit",
        **kwargs,
    ):
        config = config_checks.checked({key: value for key, value in locals().items() if key in CONFIG})
        policy = keras.dtype_policies.get(dtype) if dtype is not None else keras.config.dtype_policy()
        layers = _build_layers(types.SimpleNamespace(**config), policy)
        images = keras.Input((*(config["image_size"] or (None, None)), 3), name="images")
        intermediates = _forward({layer.name: layer for layer in layers}, images)
        super().__init__(
            inputs=images,
            outputs=intermediates["logits" if include_top else "pooled"],
            name=name,
            **kwargs,
        )
        self.dtype_policy = policy
        for key, value in config.items():
            setattr(self, key, value)

    get_layout_map = staticmethod(distribution.layout_map)  # keras-hub's name; keras_vit/distribution.py

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
        `image_size=None` keeps the checkpoint's position embeddings and
        resizes them at call time by `resize_method`;
        another `num_classes` gives a fresh zero-initialised head;
        `include_top=False` drops the head and `representation_size=None`
        drops the pre-logits layer. Loading is strict: unused checkpoint keys
        and unset weights are errors.
        """
        return checkpoints.from_preset(cls, preset, weights, resize_method, overrides)

    @property
    def grid_size(self):
        """`(grid_h, grid_w)`: the patch tokens' grid (for a hybrid, its
        ResNet feature map cut into patches); `(None, None)` with `image_size=None`."""
        return token_grid(self.image_size or (None, None), self.patch_size, self.resnet_layers)

    @property
    def token_stride(self):
        """Input pixels from one patch token's patch to the next: `patch_size`,
        times the ResNet stem's stride for a hybrid."""
        return self.patch_size * stem_stride(self.resnet_layers)

    def save_to_preset(self, directory):
        """Writes a preset folder, keras-hub's layout: `config.json` (the class
        and its `get_config()`) and `model.weights.h5`."""
        saving.save_preset_folder(self, directory)

    @property
    def num_prefix_tokens(self):
        """Tokens before the patches: class and distillation token, registers."""
        return _num_prefix_tokens(self._layers_by_name())

    def __call__(self, images, *args, **kwargs):
        if not hasattr(images, "shape"):  # a nested list of pixels, as Keras layers accept
            images = ops.convert_to_tensor(images, dtype="float32")
        config_checks.check_images_shape(self, tuple(images.shape))
        return super().__call__(images, *args, **kwargs)

    def call(self, images, training=None, mask=None, **kwargs):
        # JAX's fit and predict reach `call` without `__call__`: the same check.
        config_checks.check_images_shape(self, tuple(images.shape))
        return super().call(images, training=training, mask=mask, **kwargs)

    def forward_features(self, images):
        """`(B, T, D)`: the encoder's output tokens (timm's `forward_features`),
        after the final LayerNorm with `final_norm="tokens"`; `T` counts the
        `num_prefix_tokens` before the patches."""
        return _features(self._layers_by_name(), images)["tokens"]

    def forward_head(self, tokens, pre_logits=False):
        """Pools `forward_features`' tokens; returns the pooled representation
        `(B, D)` with `pre_logits` (or without the top), else the logits."""
        layers = self._layers_by_name()
        pooled = _pool(layers, tokens)
        return pooled if pre_logits or "head" not in layers else _heads(layers, tokens, pooled)["logits"]

    def _layers_by_name(self):
        return {layer.name: layer for layer in self.layers}

    def feature_extractor(self, outputs=("tokens", "pooled")):
        """A `keras.Model` on this model's layers (no copy of the weights).

        It maps images to a dict with the requested keys:
        `tokens` `(B, T, D)`: the sequence after the final LayerNorm;
        `pooled` `(B, D)`: the pooled representation (after pre-logits);
        `hidden_states`: a list of `num_layers` outputs `(B, T, D)`, one per block;
        `attention`: a list of `num_layers` attention probabilities
        `(B, heads, T, T)`; `logits` `(B, num_classes)` with the top, and for
        a distilled model with the top, each head's: `class_logits` and
        `distillation_logits` (DeiT's training takes both).
        `T` is the number of patches plus `num_prefix_tokens`.
        """
        return features.FeatureExtractor(self, tuple(outputs))

    def _intermediates(self, images, return_attention=False):
        """Every intermediate of the forward pass by name (`feature_extractor`'s keys)."""
        return _forward(self._layers_by_name(), images, return_attention)

    def enable_lora(self, rank):
        """LoRA fine-tuning (Hu et al., 2021): adds low-rank adapters of `rank`
        (Keras' `enable_lora`) to every block's attention query, key, value and
        output kernels and MLP kernels, and freezes every other weight except
        the head's: a head for a new task must learn, and keras-hub keeps its
        task heads trainable too. The adapters start at zero: the logits do not
        change until training. Call before `compile()`.

        Saving (`save`, `save_to_preset`) and export write the merged kernels:
        the file loads as a plain ViT with the same logits, no adapters and
        every weight trainable; call `enable_lora` again to go on with LoRA.
        """
        lora.enable(self, rank)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
            **{key: _plain(getattr(self, key)) for key in CONFIG},
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
        return cls(**config)


# The config: `ViT`'s keyword arguments but dtype and name, kept as attributes of the same names.
CONFIG = tuple(
    key
    for key in inspect.signature(ViT.__init__).parameters
    if key not in ("self", "dtype", "name", "kwargs")
)


def _plain(value):
    """A config value as JSON holds it: tuples as lists."""
    return list(value) if isinstance(value, tuple) else value


def _build_layers(config, policy):
    """The model's layers in forward order, named as checkpoints name them
    (`ViT`'s docstring), for a checked `config` (a namespace of `CONFIG`)."""
    # Logits in float32 under mixed precision; otherwise the model's dtype.
    head_dtype = "float32" if policy.variable_dtype == "float32" else policy
    num_embedded_prefix = int(config.pooling == "token") + int(config.distilled)  # with a position embedding
    layers = []
    if config.include_rescaling:
        layers.append(_rescaling(config.image_mean, config.image_std, policy))
    if config.resnet_layers is not None:
        layers.append(ResNetStem(config.resnet_layers, config.resnet_width, dtype=policy, name="resnet"))
    layers.append(PatchEmbedding(config.patch_size, config.hidden_dim, dtype=policy, name="embedding"))
    if config.distilled:
        layers.append(ClassToken(dtype=policy, name="distillation_token"))
    if config.pooling == "token":
        layers.append(ClassToken(dtype=policy, name="class_token"))
    if config.position_embedding != "none":
        grid = config.position_grid_size or token_grid(
            config.image_size or (None, None), config.patch_size, config.resnet_layers
        )
        layers.append(
            PositionEmbedding(
                grid,
                num_prefix_tokens=num_embedded_prefix,
                kind=config.position_embedding,
                patch_size=config.patch_size if config.image_size is None else None,
                resize_method=config.position_resize_method,
                dtype=policy,
                name="position_embedding",
            )
        )
    if config.num_registers:
        layers.append(Registers(config.num_registers, num_embedded_prefix, dtype=policy, name="registers"))
    layers.append(keras.layers.Dropout(config.dropout_rate, dtype=policy, name="embedding_dropout"))
    if config.patch_dropout_rate:
        layers.append(
            PatchDropout(
                config.patch_dropout_rate,
                num_prefix_tokens=num_embedded_prefix + config.num_registers,
                dtype=policy,
                name="patch_dropout",
            )
        )
    for i in range(config.num_layers):
        layers.append(
            TransformerBlock(
                config.num_heads,
                config.mlp_dim,
                dropout_rate=config.dropout_rate,
                attention_dropout_rate=config.attention_dropout_rate,
                drop_path_rate=config.drop_path_rate * i / max(config.num_layers - 1, 1),
                gelu_approximate=config.gelu_approximate,
                layer_norm_epsilon=config.layer_norm_epsilon,
                dtype=policy,
                name=f"encoderblock_{i}",
            )
        )
    layers.append(
        keras.layers.LayerNormalization(
            epsilon=config.layer_norm_epsilon,
            dtype=policy,
            name="encoder_norm" if config.final_norm == "tokens" else "pooled_norm",
        )
    )
    if config.representation_size is not None:
        layers.append(
            keras.layers.Dense(config.representation_size, activation="tanh", dtype=policy, name="pre_logits")
        )
    if config.include_top:
        for head_name in ("head", "distillation_head") if config.distilled else ("head",):
            layers.append(
                keras.layers.Dense(
                    config.num_classes, kernel_initializer="zeros", dtype=head_dtype, name=head_name
                )
            )
    return layers


def _forward(layers, images, return_attention=False):
    """Applies the named layers to `images`; returns every intermediate by name."""
    features = _features(layers, images, return_attention)
    features["pooled"] = _pool(layers, features["tokens"])
    if "head" in layers:
        features.update(_heads(layers, features["tokens"], features["pooled"]))
    return features


def _features(layers, images, return_attention=False):
    """Embedding and Transformer: `tokens` `(B, T, D)` (after the final
    LayerNorm with `encoder_norm`), and each block's output (`hidden_states`)
    and, with `return_attention`, attention probabilities (`attention`)."""
    x = images
    for name in ("rescaling", "resnet"):
        if name in layers:
            x = layers[name](x)
    patch_input = x
    for name in ("embedding", "distillation_token", "class_token"):
        if name in layers:
            x = layers[name](x)
    if "position_embedding" in layers:
        position_embedding = layers["position_embedding"]
        # An image size chosen at call time: the embeddings follow the patch grid of the input.
        x = position_embedding(x, patch_input) if position_embedding.patch_size else position_embedding(x)
    for name in ("registers", "embedding_dropout", "patch_dropout"):
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
    if "encoder_norm" in layers:
        x = layers["encoder_norm"](x)
    return dict(tokens=x, hidden_states=hidden_states, attention=attention)


def _pool(layers, tokens):
    """`(B, T, D)` tokens -> `(B, D)` (or `representation_size`): the class
    token's output (with distillation, the mean of the class and distillation
    tokens', timm's pre-logits) or the mean of the patch tokens; then
    `pooled_norm` and pre-logits, where the model has them."""
    if "class_token" not in layers:
        prefix = _num_prefix_tokens(layers)
        pooled = ops.mean(tokens[:, prefix:] if prefix else tokens, axis=1)
    elif "distillation_token" in layers:
        pooled = (_token(tokens, 0) + _token(tokens, 1)) / 2
    else:
        pooled = _token(tokens, 0)
    for name in ("pooled_norm", "pre_logits"):
        if name in layers:
            pooled = layers[name](pooled)
    return pooled


def _token(tokens, index):
    """Token `index` of `(B, T, D)` tokens, `(B, D)`. Sliced and reshaped, not
    `tokens[:, index]`: that is a STRIDED_SLICE with shrink_axis_mask in
    TFLite, which LiteRT's GPU delegate leaves to the CPU (the same numbers).
    Not squeezed: T may be unknown (image_size=None)."""
    return ops.reshape(tokens[:, index : index + 1], (-1, tokens.shape[-1]))


def _heads(layers, tokens, pooled):
    """`logits` from the pooled representation; a distilled model's are the
    mean of `class_logits` (head on the class token) and
    `distillation_logits` (distillation head on the distillation token)."""
    if "distillation_head" not in layers:
        return dict(logits=layers["head"](pooled))
    class_logits = layers["head"](_token(tokens, 0))
    distillation_logits = layers["distillation_head"](_token(tokens, 1))
    return dict(
        logits=(class_logits + distillation_logits) / 2,
        class_logits=class_logits,
        distillation_logits=distillation_logits,
    )


def _num_prefix_tokens(layers):
    count = sum(name in layers for name in ("class_token", "distillation_token"))
    return count + (layers["registers"].num_registers if "registers" in layers else 0)


def _rescaling(image_mean, image_std, dtype):
    """`Rescaling` from [0, 255] pixels to `(x / 255 - mean) / std`; scalars
    where the channels agree (the original's `x / 127.5 - 1`)."""
    scale = [1 / (255 * std) for std in image_std]
    offset = [-mean / std for mean, std in zip(image_mean, image_std)]
    if len(set(scale)) == 1 and len(set(offset)) == 1:
        scale, offset = scale[0], offset[0]
    return keras.layers.Rescaling(scale, offset=offset, dtype=dtype, name="rescaling")
