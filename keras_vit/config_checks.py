"""The checks of `ViT`'s arguments: each raises a ValueError that names the
argument, its value and what was expected, before any layer is built."""

import keras

from keras_vit.distribution import axis_size
from keras_vit.layers.patch_embedding import grid_size, image_size_pair
from keras_vit.layers.resnet import GROUPS, feature_size, stem_stride

POOLINGS = ("token", "gap")
FINAL_NORMS = ("tokens", "pooled")
POSITION_EMBEDDINGS = ("learned", "sincos2d", "none")
RATES = ("dropout_rate", "attention_dropout_rate", "drop_path_rate", "patch_dropout_rate")


def checked(config):
    """`ViT`'s arguments by name, checked; returns them with `image_size`,
    `image_mean`, `image_std`, `resnet_layers` and `position_grid_size` as tuples."""
    config = dict(config)
    if config["image_size"] is not None:
        config["image_size"] = image_size_pair(config["image_size"])
    config["resnet_layers"] = _resnet(config["resnet_layers"], config["resnet_width"])
    config["image_mean"], config["image_std"] = _normalization(config["image_mean"], config["image_std"])
    config["position_grid_size"] = _call_time_size(
        config["image_size"],
        config["position_grid_size"],
        config["position_embedding"],
        config["patch_dropout_rate"],
    )
    _sizes(config)
    _tokens(config)
    distribution = keras.distribution.distribution()
    if isinstance(distribution, keras.distribution.ModelParallel):
        check_divisible(config, distribution.get_tensor_layout, distribution.device_mesh)
    return config


# The axes of a block's weights that config values size (None: head_dim), by path in the block.
BLOCK_WEIGHT_AXES = {
    "attention/query/kernel": ("hidden_dim", "num_heads", None),
    "attention/key/kernel": ("hidden_dim", "num_heads", None),
    "attention/value/kernel": ("hidden_dim", "num_heads", None),
    "attention/query/bias": ("num_heads", None),
    "attention/key/bias": ("num_heads", None),
    "attention/value/bias": ("num_heads", None),
    "attention/attention_output/kernel": ("num_heads", None, "hidden_dim"),
    "attention/attention_output/bias": ("hidden_dim",),
    "mlp/dense_0/kernel": ("hidden_dim", "mlp_dim"),
    "mlp/dense_0/bias": ("mlp_dim",),
    "mlp/dense_1/kernel": ("mlp_dim", "hidden_dim"),
    "mlp/dense_1/bias": ("hidden_dim",),
}


def check_divisible(config, layout_of, mesh):
    """A ValueError in one line unless `config`'s `num_heads`, `mlp_dim` and
    `hidden_dim` divide the axes of `mesh` (a `keras.distribution.DeviceMesh`)
    that split a block's weights: `layout_of(path)` is a weight's
    `TensorLayout`, or None where it is replicated (a LayoutMap's lookup)."""
    for path, names in BLOCK_WEIGHT_AXES.items():
        layout = layout_of(f"encoderblock_0/{path}")
        for name, axis in zip(names, layout.axes if layout is not None else ()):
            size = axis_size(mesh, axis)
            if name is not None and config[name] % size:
                raise ValueError(
                    f"{name} {config[name]} is not divisible by {size}, the size of the mesh axis {axis!r} "
                    f"that the layout map splits it over; use a model axis whose size divides {name}."
                )


def check_images_shape(model, shape):
    """A ValueError that names `shape` unless it is a batch of images `model` takes."""
    if model.image_size is None:
        stride = model.token_stride
        if (
            len(shape) != 4
            or shape[3] not in (None, 3)
            or any(s is not None and s % stride for s in shape[1:3])
        ):
            raise ValueError(
                f"{model.name} (image_size=None) expects images of shape (batch, height, width, 3) "
                f"with height and width multiples of {stride}, got {shape}."
            )
        return
    expected = (*model.image_size, 3)
    if len(shape) != 4 or any(got is not None and got != want for got, want in zip(shape[1:], expected)):
        raise ValueError(
            f"{model.name} expects images of shape (batch, {expected[0]}, {expected[1]}, 3), "
            f"got {shape}. Resize the images, or build the model with "
            f"image_size=(height, width) to match them."
        )


def _normalization(image_mean, image_std):
    """`image_mean`, `image_std` as tuples of 3 floats, std positive."""
    pairs = []
    for key, value in (("image_mean", image_mean), ("image_std", image_std)):
        if (
            not isinstance(value, (tuple, list))
            or len(value) != 3
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            or (key == "image_std" and not all(v > 0 for v in value))
        ):
            expected = "positive numbers" if key == "image_std" else "numbers"
            raise ValueError(f"{key} must be 3 {expected} (RGB, pixels in [0, 1] units), got {value!r}.")
        pairs.append(tuple(float(v) for v in value))
    return tuple(pairs)


def _call_time_size(image_size, position_grid_size, position_embedding, patch_dropout_rate):
    """`position_grid_size` as a tuple: given with `image_size=None` and
    learned position embeddings, and only then."""
    if image_size is not None:
        if position_grid_size is not None:
            raise ValueError(
                f"position_grid_size={position_grid_size!r} is for image_size=None; with image_size "
                f"{image_size} the position embeddings' grid is the image's."
            )
        return None
    if patch_dropout_rate:
        raise ValueError("patch_dropout_rate needs a fixed image_size; got image_size=None.")
    if position_embedding != "learned":
        return None
    if (
        not isinstance(position_grid_size, (tuple, list))
        or len(position_grid_size) != 2
        or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in position_grid_size)
    ):
        raise ValueError(
            f"image_size=None with learned position embeddings needs position_grid_size=(grid_h, grid_w), "
            f"the grid they are stored for (from_preset sets it); got {position_grid_size!r}."
        )
    return tuple(position_grid_size)


def _tokens(config):
    pooling, distilled, final_norm = config["pooling"], config["distilled"], config["final_norm"]
    num_registers, representation_size = config["num_registers"], config["representation_size"]
    if final_norm not in FINAL_NORMS:
        raise ValueError(f"Unknown final_norm {final_norm!r}; expected one of {FINAL_NORMS}.")
    if not isinstance(num_registers, int) or isinstance(num_registers, bool) or num_registers < 0:
        raise ValueError(f"num_registers must be an int >= 0, got {num_registers!r}.")
    if distilled and (pooling != "token" or final_norm != "tokens" or representation_size is not None):
        raise ValueError(
            "distilled=True (DeiT) needs pooling='token', final_norm='tokens' and no representation_size; "
            f"got pooling={pooling!r}, final_norm={final_norm!r}, "
            f"representation_size={representation_size!r}."
        )


def _resnet(resnet_layers, resnet_width):
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


def _sizes(config):
    image_size, patch_size, resnet_layers = (
        config["image_size"],
        config["patch_size"],
        config["resnet_layers"],
    )
    hidden_dim, num_heads = config["hidden_dim"], config["num_heads"]
    representation_size = config["representation_size"]
    sizes = {
        key: config[key]
        for key in ("patch_size", "hidden_dim", "num_layers", "num_heads", "mlp_dim", "num_classes")
    }
    if image_size is not None:
        sizes.update(image_height=image_size[0], image_width=image_size[1])
    else:
        image_size = (None, None)
    if representation_size is not None:
        sizes["representation_size"] = representation_size
    for key, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{key} must be a positive int, got {value!r}.")
    features = feature_size(image_size, resnet_layers)
    if resnet_layers is not None and any(size is not None and size % patch_size for size in features):
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
    if config["pooling"] not in POOLINGS:
        raise ValueError(f"Unknown pooling {config['pooling']!r}; expected one of {POOLINGS}.")
    if config["position_embedding"] not in POSITION_EMBEDDINGS:
        raise ValueError(
            f"Unknown position_embedding {config['position_embedding']!r}; "
            f"expected one of {POSITION_EMBEDDINGS}."
        )
    for key in RATES:
        rate = config[key]
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"{key} must be in [0, 1), got {rate!r}.")
