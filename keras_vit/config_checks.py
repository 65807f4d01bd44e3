"""The checks of `ViT`'s arguments: each raises a ValueError that names the
argument, its value and what was expected, before any layer is built."""

from keras_vit.layers.patch_embedding import grid_size
from keras_vit.layers.resnet import GROUPS, feature_size, stem_stride

POOLINGS = ("token", "gap")
FINAL_NORMS = ("tokens", "pooled")
POSITION_EMBEDDINGS = ("learned", "sincos2d", "none")


def check_normalization(image_mean, image_std):
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


def check_call_time_size(image_size, position_grid_size, position_embedding, patch_dropout_rate):
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


def check_tokens(pooling, distilled, num_registers, final_norm, representation_size):
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


def check_resnet(resnet_layers, resnet_width):
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


def check_config(
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
    )
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
    if pooling not in POOLINGS:
        raise ValueError(f"Unknown pooling {pooling!r}; expected one of {POOLINGS}.")
    if position_embedding not in POSITION_EMBEDDINGS:
        raise ValueError(
            f"Unknown position_embedding {position_embedding!r}; expected one of {POSITION_EMBEDDINGS}."
        )
    for key, rate in rates.items():
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"{key} must be in [0, 1), got {rate!r}.")
