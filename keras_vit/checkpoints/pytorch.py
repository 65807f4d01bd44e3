"""timm and Hugging Face (`google/vit-*`, `facebook/deit-*`) ViT checkpoints in safetensors.

Read with `safetensors.numpy` (no torch). PyTorch `Linear` weights are
`(out, in)`: transposed to Keras' `(in, out)`, and the attention projections
reshaped to the `(D, heads, D / heads)` kernels of `MultiHeadAttention`.
Both use the exact (erf) GELU; timm's LayerNorm epsilon is 1e-6, HF's 1e-12.

Beyond the paper's ViT (names from timm's `vision_transformer.py` and
`deit.py`, and HF's `modeling_deit.py` and `convert_deit_timm_to_pytorch.py`):
- DeiT with distillation: timm's `dist_token` (1, 1, D) and `head_dist`; HF's
  `DeiTForImageClassificationWithTeacher` (`deit.` prefix) has
  `embeddings.distillation_token`, `cls_classifier` and
  `distillation_classifier`. The position embeddings cover both tokens.
  HF's DeiT files without distillation are `ViTForImageClassification` files.
- timm's `vit_*_reg*_gap_*`: register tokens `reg_token` (1, R, D) with no
  position embedding (`no_embed_class`; without a class token, `pos_embed`
  covers the patches only), and `fc_norm`, a LayerNorm after the average
  pooling, in place of `norm`.

timm's hybrids (`vit_base_r50_s16_384`, `vit_small_r26_s32_224`,
`vit_tiny_r_s16_p8_224`, ...) hold the ResNet under `patch_embed.backbone.`
(`stem.conv`, `stem.norm`, or `conv`, `norm` for the root alone;
`stages.{i}.blocks.{j}.{conv,norm}{1,2,3}`, `downsample.{conv,norm}`). Their
weights were converted from the original files; keras_vit runs them with the
original's weight standardisation (`std + 1e-5`) and GroupNorm epsilon (1e-6),
where timm's port uses `sqrt(var + 1e-8)` and 1e-5.
"""

import re

import numpy as np

TIMM_CONFIG = dict(gelu_approximate=False, layer_norm_epsilon=1e-6)
HF_CONFIG = dict(gelu_approximate=False, layer_norm_epsilon=1e-12)
HF_PATCH_KEY = "embeddings.patch_embeddings.projection.weight"


def read_safetensors(path):
    """All tensors of a `.safetensors` file as NumPy arrays; a clear error if corrupt."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError, TypeError) as error:
        raise ValueError(
            f"Could not read checkpoint {path}: {error}. The file is truncated, corrupt or "
            f"not a safetensors file; delete it and download it again."
        ) from None


def is_timm(tensors):
    return "patch_embed.proj.weight" in tensors


def is_hf(tensors):
    return any(key.endswith(HF_PATCH_KEY) for key in tensors)


def convert_timm(tensors, num_heads):
    """timm `VisionTransformer` state dict -> `{keras weight path: array}`."""
    weights, rest = {}, {}
    for key, value in tensors.items():
        qkv = re.fullmatch(r"blocks\.(\d+)\.attn\.qkv\.(weight|bias)", key)
        if path := _timm_resnet_path(key):
            weights[path] = _conv_kernel(value) if path.endswith("kernel") else value
        elif qkv:
            block = f"encoderblock_{qkv.group(1)}/attention"
            for name, part in zip(("query", "key", "value"), np.split(value, 3)):
                weights[_dense_path(f"{block}/{name}", key)] = _qkv(part, num_heads)
        else:
            rest[key] = value
    return {**weights, **_convert_named(rest, num_heads, TIMM_NAMES, r"blocks\.(\d+)\.(.+)", TIMM_BLOCK)}


def convert_hf(tensors, num_heads):
    """HF `ViTModel` / `ViTForImageClassification` / `DeiTModel` /
    `DeiTForImageClassificationWithTeacher` -> `{keras weight path: array}`.

    The `vit.` or `deit.` prefix is optional (`ViTModel` files have none); the
    pooler (Dense + tanh on the class token) is the original `pre_logits`.
    """
    prefix = next(k for k in tensors if k.endswith(HF_PATCH_KEY))[: -len(HF_PATCH_KEY)]
    names = {key[len(prefix) :] if key.startswith(prefix) else key: value for key, value in tensors.items()}
    return _convert_named(names, num_heads, HF_NAMES, r"encoder\.layer\.(\d+)\.(.+)", HF_BLOCK)


def _convert_named(tensors, num_heads, names, block_pattern, block_layers):
    """`{source name: array}` -> `{keras weight path: array}` through a
    format's tables: `names` maps whole tensors and layers outside the
    blocks, `block_layers` the layers of block i (`block_pattern` matches
    `(i, layer)` in a layer name). Unknown names pass through unchanged, for
    the strict assignment to report."""
    weights = {}
    for name, value in tensors.items():
        layer, _, leaf = name.rpartition(".")
        block = re.fullmatch(block_pattern, layer)
        if name in names:
            weights[names[name]] = value
            continue
        if layer in names and leaf in ("weight", "bias"):
            path = names[layer]
        elif block and block.group(2) in block_layers and leaf in ("weight", "bias"):
            path = f"encoderblock_{block.group(1)}/{block_layers[block.group(2)]}"
        else:
            weights[name] = value
            continue
        weights[_leaf_path(path, leaf)] = _convert_leaf(path, value, num_heads)
    return weights


def _timm_resnet_path(key):
    """`patch_embed.backbone.stages.0.blocks.1.norm2.weight` -> `resnet/block1/unit2/gn2/gamma`."""
    match = re.fullmatch(r"patch_embed\.backbone\.(?:stem\.)?(conv|norm)\.(weight|bias)", key)
    if match:
        layer = "conv_root" if match.group(1) == "conv" else "gn_root"
        return _resnet_leaf(f"resnet/{layer}", match.group(2))
    match = re.fullmatch(
        r"patch_embed\.backbone\.stages\.(\d+)\.blocks\.(\d+)\.(conv\d|norm\d|downsample\.conv|downsample\.norm)\.(weight|bias)",
        key,
    )
    if not match:
        return None
    stage, block, layer, leaf = match.groups()
    layer = {"downsample.conv": "conv_proj", "downsample.norm": "gn_proj"}.get(
        layer, layer.replace("norm", "gn")
    )
    return _resnet_leaf(f"resnet/block{int(stage) + 1}/unit{int(block) + 1}/{layer}", leaf)


def _resnet_leaf(path, leaf):
    if "/conv" in path:
        return f"{path}/kernel" if leaf == "weight" else None
    return f"{path}/{'gamma' if leaf == 'weight' else 'beta'}"


# Source name -> keras path: whole tensors, and layers (their weight and bias).
TIMM_NAMES = {
    "cls_token": "class_token/token",
    "dist_token": "distillation_token/token",
    "reg_token": "registers/tokens",
    "pos_embed": "position_embedding/embeddings",
    "patch_embed.proj": "embedding",
    "norm": "encoder_norm",
    "fc_norm": "pooled_norm",
    "pre_logits.fc": "pre_logits",
    "head": "head",
    "head_dist": "distillation_head",
}
HF_NAMES = {
    "embeddings.cls_token": "class_token/token",
    "embeddings.distillation_token": "distillation_token/token",
    "embeddings.position_embeddings": "position_embedding/embeddings",
    "embeddings.patch_embeddings.projection": "embedding",
    "layernorm": "encoder_norm",
    "pooler.dense": "pre_logits",
    "classifier": "head",
    "cls_classifier": "head",
    "distillation_classifier": "distillation_head",
}
TIMM_BLOCK = {
    "norm1": "attention_norm",
    "attn.proj": "attention/attention_output",
    "norm2": "mlp_norm",
    "mlp.fc1": "mlp/dense_0",
    "mlp.fc2": "mlp/dense_1",
}
HF_BLOCK = {
    "layernorm_before": "attention_norm",
    "attention.attention.query": "attention/query",
    "attention.attention.key": "attention/key",
    "attention.attention.value": "attention/value",
    "attention.output.dense": "attention/attention_output",
    "layernorm_after": "mlp_norm",
    "intermediate.dense": "mlp/dense_0",
    "output.dense": "mlp/dense_1",
}


def _leaf_path(path, key):
    if path.endswith("norm"):
        return _norm_path(path, key)
    return _dense_path(path, key)


def _norm_path(path, key):
    return f"{path}/{'gamma' if key.endswith('weight') else 'beta'}"


def _dense_path(path, key):
    return f"{path}/{'kernel' if key.endswith('weight') else 'bias'}"


def _convert_leaf(path, value, num_heads):
    if path.endswith("norm"):
        return value
    if path == "embedding":
        return _conv_kernel(value) if value.ndim == 4 else value
    if path.endswith(("query", "key", "value")):
        return _qkv(value, num_heads)
    if path.endswith("attention_output"):
        if value.ndim == 2:  # (D_out, D_in) -> (heads, D / heads, D_out)
            return value.T.reshape(num_heads, -1, value.shape[0])
        return value
    return _dense(value)


def _qkv(value, num_heads):
    """`(D_out, D_in)` weight -> `(D_in, heads, D_out / heads)`;
    `(D_out,)` bias -> `(heads, D_out / heads)`."""
    if value.ndim == 2:
        return value.T.reshape(value.shape[1], num_heads, -1)
    return value.reshape(num_heads, -1)


def _dense(value):
    return value.T if value.ndim == 2 else value


def _conv_kernel(value):
    """PyTorch `(D, C, P, P)` -> Keras HWIO `(P, P, C, D)`."""
    return value.transpose(2, 3, 1, 0)
