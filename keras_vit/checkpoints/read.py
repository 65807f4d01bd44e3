"""Reads any supported checkpoint into Keras weight paths plus the config it implies."""

import os
import re
from dataclasses import dataclass, field

import keras

from keras_vit.checkpoints import original, pytorch
from keras_vit.checkpoints.original import POSITION
from keras_vit.layers.resnet import stem_stride
from keras_vit.saving import PRESET_CONFIG, PRESET_WEIGHTS, is_preset_folder, load_model

HF_WEIGHTS = "model.safetensors"


@dataclass
class Checkpoint:
    """Weights by Keras path (`encoderblock_0/attention/query/kernel`, ...),
    the ViT arguments the checkpoint implies, and where it came from."""

    weights: dict
    config: dict = field(default_factory=dict)
    origin: str = ""
    layout: str = ""


def read_checkpoint(path, num_heads=None):
    """Reads `path`: an original or big_vision `.npz`, a timm or HF
    `.safetensors` file (or an HF model folder), a preset folder
    (`config.json` + `model.weights.h5`) or a `.keras` file.

    `num_heads` is needed for the PyTorch layouts, whose fused or flat
    attention weights do not record it.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        if is_preset_folder(path):
            return _from_model(load_model(path), path)
        if os.path.exists(os.path.join(path, HF_WEIGHTS)):
            return read_checkpoint(os.path.join(path, HF_WEIGHTS), num_heads)
        raise ValueError(
            f"Folder {path} holds neither a preset ({PRESET_CONFIG} + {PRESET_WEIGHTS}) nor "
            f"a Hugging Face model ({HF_WEIGHTS})."
        )
    if not os.path.exists(path):
        raise FileNotFoundError(f"Checkpoint {path} does not exist.")
    if path.endswith(".npz"):
        arrays = original.read_npz(path)
        layout = "original" if any(k.startswith("Transformer/") for k in arrays) else "big_vision"
        weights = original.convert(arrays)
        config = dict(gelu_approximate=True, layer_norm_epsilon=1e-6)
    elif path.endswith(".safetensors"):
        tensors = pytorch.read_safetensors(path)
        if pytorch.is_timm(tensors):
            layout, convert, config = "timm", pytorch.convert_timm, pytorch.TIMM_CONFIG
        elif pytorch.is_hf(tensors):
            layout, convert, config = "huggingface", pytorch.convert_hf, pytorch.HF_CONFIG
        else:
            raise ValueError(
                f"{path} is neither a timm ViT (no 'patch_embed.proj.weight') nor a Hugging Face "
                f"ViT (no '...{pytorch.HF_PATCH_KEY}')."
            )
        _check_num_heads(num_heads, tensors, path)
        weights = convert(tensors, num_heads)
    elif path.endswith(".keras"):
        return _from_model(load_model(path), path)
    elif path.endswith((".bin", ".pth", ".pt", ".ckpt")):
        raise ValueError(
            f"{path}: PyTorch pickle files are not loaded (unpickling can run code). "
            f"Use the model's .safetensors file."
        )
    else:
        raise ValueError(
            f"Unknown checkpoint type {path}: expected .npz (original, big_vision), .safetensors "
            f"(timm, Hugging Face), .keras, or a preset folder."
        )
    checkpoint = Checkpoint(weights, origin=path, layout=layout)
    checkpoint.config = {**infer_config(weights, path), **config}
    if layout != "original" and layout != "big_vision":
        checkpoint.config["num_heads"] = num_heads
    return checkpoint


def infer_config(weights, origin):
    """The ViT arguments a checkpoint's shapes imply; distillation, registers
    and where the final LayerNorm sits from the weights it has."""
    kernel = weights.get("embedding/kernel")
    if kernel is None or kernel.ndim != 4:
        raise ValueError(
            f"{origin} has no patch embedding kernel (original 'embedding/kernel', timm "
            f"'patch_embed.proj.weight'): not a ViT checkpoint."
        )
    config = dict(patch_size=int(kernel.shape[0]), hidden_dim=int(kernel.shape[3]))
    config.update(_resnet_config(weights))
    config["num_layers"] = sum(
        1 for key in weights if key.startswith("encoderblock_") and key.endswith("/attention_norm/gamma")
    )
    if "encoderblock_0/mlp/dense_0/kernel" in weights:
        config["mlp_dim"] = int(weights["encoderblock_0/mlp/dense_0/kernel"].shape[1])
    query = weights.get("encoderblock_0/attention/query/kernel")
    if query is not None and query.ndim == 3:
        config["num_heads"] = int(query.shape[1])
    config["pooling"] = "token" if "class_token/token" in weights else "gap"
    config["distilled"] = "distillation_token/token" in weights or "distillation_head/kernel" in weights
    registers = weights.get("registers/tokens")
    config["num_registers"] = 0 if registers is None else int(registers.shape[1])
    config["final_norm"] = "pooled" if "pooled_norm/gamma" in weights else "tokens"
    position = weights.get(POSITION)
    if position is not None:
        # Entries for the class and distillation tokens, then the grid; registers get none.
        grid = position.shape[1] - (config["pooling"] == "token") - config["distilled"]
        side = int(round(grid**0.5))
        if side * side != grid:
            raise ValueError(
                f"{origin}: position embeddings {tuple(position.shape)} do not form a square grid; "
                f"save non-square models with ViT.save_to_preset instead."
            )
        config["image_size"] = side * config["patch_size"] * stem_stride(config["resnet_layers"])
        config["position_embedding"] = "learned"
    config["include_top"] = "head/kernel" in weights
    if config["include_top"]:
        config["num_classes"] = int(weights["head/kernel"].shape[-1])
    config["representation_size"] = (
        int(weights["pre_logits/kernel"].shape[-1]) if "pre_logits/kernel" in weights else None
    )
    return config


def _resnet_config(weights):
    """`resnet_layers` (units per stage; None without a ResNet stem) and `resnet_width`."""
    root = weights.get("resnet/conv_root/kernel")
    if root is None:
        return dict(resnet_layers=None)
    units = {}
    for key in weights:
        match = re.fullmatch(r"resnet/block(\d+)/unit(\d+)/conv1/kernel", key)
        if match:
            stage, unit = int(match.group(1)), int(match.group(2))
            units[stage] = max(units.get(stage, 0), unit)
    width = int(root.shape[-1])
    return dict(
        resnet_layers=tuple(units[i] for i in range(1, len(units) + 1) if i in units),
        resnet_width=width // 64 if width % 64 == 0 else width / 64,
    )


def _from_model(model, origin):
    config = model.get_config()
    for key in ("name", "trainable", "dtype"):
        config.pop(key, None)
    weights = {w.path: keras.ops.convert_to_numpy(w) for w in model.weights}
    return Checkpoint(weights, config, origin=origin, layout="keras")


def _check_num_heads(num_heads, tensors, path):
    width = next(
        v.shape[0]
        for k, v in tensors.items()
        if k.endswith(("patch_embed.proj.weight", pytorch.HF_PATCH_KEY))
    )
    if not isinstance(num_heads, int) or num_heads < 1 or width % num_heads:
        raise ValueError(
            f"{path} (PyTorch layout) does not record the number of attention heads: pass "
            f"num_heads (a divisor of the width {width}) or a preset; got num_heads={num_heads!r}."
        )
