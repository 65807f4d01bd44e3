"""Builds a ViT from a checkpoint: config, position-embedding resize, head, strict assignment."""

import inspect
import os

import keras
import numpy as np

from keras_vit import lora, saving
from keras_vit.checkpoints.download import fetch
from keras_vit.checkpoints.original import POSITION
from keras_vit.checkpoints.read import Checkpoint, read_checkpoint
from keras_vit.checkpoints.sources import list_sources
from keras_vit.layers import resize_position_embeddings
from keras_vit.layers.patch_embedding import image_size_pair
from keras_vit.layers.resnet import token_grid
from keras_vit.presets import PRESETS, preset_config

ARCHITECTURE = (
    "patch_size",
    "hidden_dim",
    "num_layers",
    "num_heads",
    "mlp_dim",
    "resnet_layers",
    "resnet_width",
    "distilled",
    "num_registers",
    "final_norm",
)
# A plain ViT's value of the architecture keys a preset may leave out.
PLAIN = dict(distilled=False, num_registers=0, final_norm="tokens")
HEAD = ("head/kernel", "head/bias")
DISTILLATION_HEAD = ("distillation_head/kernel", "distillation_head/bias")
PRE_LOGITS = ("pre_logits/kernel", "pre_logits/bias")
HINTS = {
    POSITION: "the checkpoint has no learned position embeddings (e.g. a big_vision sincos2d "
    "model): pass position_embedding='sincos2d' or 'none'",
    "class_token/token": "the checkpoint has no class token (global average pooling): pass pooling='gap'",
    "distillation_token/token": "the checkpoint has no distillation token (DeiT's dist_token, HF's "
    "distillation_token); a DeiT without distillation loads with distilled=False",
    "distillation_head/kernel": "the checkpoint has a head but no distillation head to go with it: "
    "pass num_classes=... for two fresh heads, or include_top=False",
    "registers/tokens": "the checkpoint has no register tokens: pass num_registers=0",
    "encoder_norm/gamma": "the checkpoint has no LayerNorm before pooling: pass final_norm='pooled' "
    "if it has one after pooling (timm's fc_norm)",
    "pooled_norm/gamma": "the checkpoint has no LayerNorm after pooling: pass final_norm='tokens'",
}


def model_config(checkpoint, preset_config, overrides, preset_name=None):
    """ViT arguments: the preset's, then what the checkpoint implies (image
    size, classes, pre-logits, pooling, distillation, registers, final norm,
    GELU, epsilon), then the user's. The architecture asked for (the preset
    with the user's overrides) must match the checkpoint's."""
    asked = {**preset_config, **overrides}
    for key in ARCHITECTURE:
        want, got = asked.get(key), checkpoint.config.get(key)
        if _differs(key, want, got, checkpoint.config):
            if key in overrides:
                source = f"{key}={want!r} was passed"
            else:
                source = f"preset {preset_name!r} has {key}={want}"
            raise ValueError(
                f"{checkpoint.origin} has {key}={got}, but {source}: wrong preset or override for this "
                f"checkpoint. {_suggest(checkpoint.config)}"
            )
    config = {**preset_config, **checkpoint.config, **overrides}
    dropped_pre_logits = checkpoint.config.get("representation_size") and not config.get(
        "representation_size"
    )
    same_head = config.get("include_top", True) and config.get("num_classes") == checkpoint.config.get(
        "num_classes"
    )
    if dropped_pre_logits and same_head and "head/kernel" in checkpoint.weights:
        raise ValueError(
            "representation_size=None drops the checkpoint's pre_logits layer, but its head "
            "was trained on pre_logits' output: also pass num_classes=... for a fresh head, "
            "or include_top=False."
        )
    return config


def assign(model, checkpoint, resize_method="bilinear"):
    """Sets every weight of `model` from `checkpoint`, strictly.

    The head is taken from the checkpoint only when its shape fits: a model
    built with another `num_classes` (or one whose checkpoint has no head)
    keeps its fresh, zero-initialised head, and so does a distilled model's
    distillation head along with it; a model without the top, or without
    `pre_logits`, leaves those keys out. Everything else must match: keys
    left unused and weights left unset are errors that name them.
    """
    targets = {w.path: w for w in model.weights}
    weights = dict(checkpoint.weights)
    top = "head/kernel" in targets
    fresh = set()
    if top and (
        "head/kernel" not in weights or weights["head/kernel"].shape != tuple(targets["head/kernel"].shape)
    ):
        fresh = {key for key in HEAD + DISTILLATION_HEAD if key in targets}
    left_out = set(fresh)
    if not top:
        left_out.update(HEAD + DISTILLATION_HEAD)
    if PRE_LOGITS[0] not in targets:
        left_out.update(PRE_LOGITS)
    for key in left_out:
        weights.pop(key, None)
    if POSITION in weights and POSITION in targets:
        weights[POSITION] = _resize(weights[POSITION], model, resize_method, checkpoint.config)

    unused = sorted(set(weights) - set(targets))
    unset = sorted(set(targets) - set(weights) - fresh)
    if unused or unset:
        lines = [f"Checkpoint {checkpoint.origin} does not fit {model.name}:"]
        if unused:
            lines.append(f"keys in the checkpoint that the model does not use: {_names(unused)}")
        if unset:
            lines.append(f"weights of the model the checkpoint does not set: {_names(unset)}")
            lines += [f"({HINTS[key]})" for key in unset if key in HINTS]
        lines.append(_suggest(checkpoint.config))
        raise ValueError("\n".join(lines))
    for path, variable in targets.items():
        if path in fresh:
            continue
        value = np.asarray(weights[path])
        if value.shape != tuple(variable.shape):
            raise ValueError(
                f"Checkpoint {checkpoint.origin}: {path} has shape {value.shape}, the model's has "
                f"{tuple(variable.shape)}. Likely a wrong preset or override (patch size, width, "
                f"heads or MLP width differ). {_suggest(checkpoint.config)}"
            )
    for path, variable in targets.items():
        if path not in fresh:
            variable.assign(np.asarray(weights[path]).astype(variable.dtype))
    return model


def from_preset(cls, preset, weights, resize_method, overrides):
    """The body of `ViT.from_preset` (see its docstring): `cls` built from a
    preset name or folder with `overrides`, its weights fresh or from
    `weights` (a named source or a path), loaded strictly."""
    known = set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(
            f"Unknown ViT argument(s) {', '.join(unknown)}; expected some of {', '.join(sorted(known))}."
        )
    if preset not in PRESETS and isinstance(preset, (str, os.PathLike)) and os.path.isdir(preset):
        if weights is not None:
            raise ValueError(
                f"preset {os.fspath(preset)!r} is a preset folder and brings its own weights; "
                f"got weights={weights!r} too. Pass one or the other."
            )
        if not overrides:
            return saving.load_model(preset)
        weights, config = preset, {}
    else:
        config = preset_config(preset)
        config["name"] = preset
    if weights is None:
        return cls(**_call_time_size({**config, **overrides}, config, resize_method))
    weights = weights_path(preset, weights)
    num_heads = overrides.get("num_heads", config.get("num_heads"))
    checkpoint = read_checkpoint(weights, num_heads=num_heads)
    # A preset folder's own architecture is the one asked for.
    arguments = model_config(checkpoint, config or checkpoint.config, overrides, preset)
    model = cls(**_call_time_size(arguments, {**config, **checkpoint.config}, resize_method))
    return assign(model, checkpoint, resize_method)


def weights_path(preset, weights):
    """The local file or folder of `weights` for `preset`: a named source
    (`list_sources(preset)`), downloaded on first use (a ConnectionError that
    names the file to place by hand where that fails), or an existing path; a
    ValueError otherwise."""
    if isinstance(weights, str) and weights in list_sources(preset):
        return fetch(preset, weights)
    if not os.path.exists(weights):
        raise ValueError(
            f"weights={weights!r} is neither an existing path nor a named source of "
            f"preset {preset!r} (named: {', '.join(list_sources(preset)) or 'none'})."
        )
    return weights


def _call_time_size(arguments, stored, resize_method):
    """`arguments` for `image_size=None`: the position embeddings stay on the
    grid of `stored`'s image size (a checkpoint's, or the default 224) and are
    resized at call time by `resize_method`. Other arguments pass unchanged."""
    if arguments.get("image_size", 224) is not None or arguments.get("position_grid_size") is not None:
        return arguments
    if stored.get("image_size", 224) is None:  # a call-time model's own config
        return arguments
    stored_size = image_size_pair(stored.get("image_size", 224))
    return {
        **arguments,
        "position_grid_size": token_grid(
            stored_size, arguments.get("patch_size", 16), arguments.get("resnet_layers")
        ),
        "position_resize_method": resize_method,
    }


def copy_with(model, **changes):
    """`model`'s class built from its config with `changes` (e.g.
    `dtype="float32"`, `image_size=(h, w)`, `position_embedding="none"`),
    holding `model`'s weights by `assign`'s strict rules: LoRA adapters merged
    into their kernels, each weight cast to its new variable's dtype, position
    embeddings resized to a new grid by the model's `position_resize_method`,
    and left out when the copy has none."""
    config = model.get_config()
    copy = type(model).from_config({**config, **changes})
    weights = {path: keras.ops.convert_to_numpy(w) for path, w in lora.merged_weights(model).items()}
    if POSITION not in {w.path for w in copy.weights}:
        weights.pop(POSITION, None)
    checkpoint = Checkpoint(weights, config, origin=model.name, layout="keras")
    return assign(copy, checkpoint, model.position_resize_method)


def _resize(embeddings, model, method, config):
    """The checkpoint's position embeddings on the model's grid; the
    checkpoint's grid is its config's (a saved model's, which may be
    non-square), else the square its embeddings hold."""
    layer = model.get_layer("position_embedding")
    target = tuple(layer.embeddings.shape)
    if embeddings.ndim != 3 or embeddings.shape[2] != target[2]:
        return embeddings  # a mismatch reported with both shapes
    prefix = layer.num_prefix_tokens
    if config.get("position_grid_size"):
        source = tuple(config["position_grid_size"])
    elif config.get("image_size") and config.get("patch_size"):
        source = token_grid(
            image_size_pair(config["image_size"]), config["patch_size"], config.get("resnet_layers")
        )
    else:
        side = int(round((embeddings.shape[1] - prefix) ** 0.5))
        source = (side, side)
    if source == tuple(layer.grid_size):
        return embeddings
    if prefix + source[0] * source[1] != embeddings.shape[1]:
        raise ValueError(
            f"Cannot resize position embeddings of shape {embeddings.shape}: not {prefix} prefix "
            f"token(s) plus a {source[0]}x{source[1]} grid."
        )
    return resize_position_embeddings(embeddings, source, layer.grid_size, prefix, method)


def _differs(key, want, got, config):
    """Whether a preset's `want` contradicts a checkpoint's `got` (None: not
    known, except that `resnet_layers=None` means a plain ViT)."""
    if key == "resnet_layers":
        if key not in config:
            return False
        return (None if want is None else tuple(want)) != (None if got is None else tuple(got))
    return want is not None and got is not None and want != got


def _names(keys, limit=12):
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def _suggest(config):
    matches = [
        name
        for name, preset in PRESETS.items()
        if not any(
            _differs(key, preset.get(key, PLAIN.get(key)), config.get(key), config) for key in ARCHITECTURE
        )
    ]
    keys = [key for key in ARCHITECTURE if config.get(key) is not None and config[key] != PLAIN.get(key)]
    if config.get("resnet_layers") is None and "resnet_width" in keys:
        keys.remove("resnet_width")  # meaningless without a stem
    architecture = ", ".join(f"{key}={config[key]}" for key in keys)
    if matches:
        return f"The checkpoint's architecture ({architecture}) is preset {' or '.join(matches)}."
    return f"The checkpoint's architecture: {architecture}."
