"""Random checkpoints in each published layout, written from original-name arrays.

Each writer is the inverse of a layout's documented naming, written here
independently of keras_vit's readers. Beyond the original's names (as
numpy_vit reads them): `dist` and `head_dist/*` (DeiT's distillation token
and head), `registers`, `fc_norm/*` (timm's LayerNorm after pooling).
"""

import numpy as np
from safetensors.numpy import save_file

POSEMB = "Transformer/posembed_input/pos_embedding"


def random_params(
    seed=0,
    hidden=32,
    heads=4,
    mlp=64,
    layers=2,
    patch=8,
    grid=4,
    classes=7,
    representation=None,
    scale=0.2,
    channels=3,
):
    """Original-layout params (`Transformer/encoderblock_0/...`) with random values."""
    rng = np.random.default_rng(seed)
    k = hidden // heads

    def r(*shape, base=0.0):
        return (base + scale * rng.standard_normal(shape)).astype(np.float32)

    p = {
        "embedding/kernel": r(patch, patch, channels, hidden),
        "embedding/bias": r(hidden),
        "cls": r(1, 1, hidden),
        POSEMB: r(1, 1 + grid * grid, hidden),
    }
    for i in range(layers):
        b = f"Transformer/encoderblock_{i}/"
        for norm in ("LayerNorm_0", "LayerNorm_2"):
            p[f"{b}{norm}/scale"], p[f"{b}{norm}/bias"] = r(hidden, base=1.0), r(hidden)
        a = b + "MultiHeadDotProductAttention_1/"
        for name in ("query", "key", "value"):
            p[f"{a}{name}/kernel"], p[f"{a}{name}/bias"] = r(hidden, heads, k), r(heads, k)
        p[f"{a}out/kernel"], p[f"{a}out/bias"] = r(heads, k, hidden), r(hidden)
        p[f"{b}MlpBlock_3/Dense_0/kernel"], p[f"{b}MlpBlock_3/Dense_0/bias"] = r(hidden, mlp), r(mlp)
        p[f"{b}MlpBlock_3/Dense_1/kernel"], p[f"{b}MlpBlock_3/Dense_1/bias"] = r(mlp, hidden), r(hidden)
    p["Transformer/encoder_norm/scale"], p["Transformer/encoder_norm/bias"] = r(hidden, base=1.0), r(hidden)
    width = hidden
    if representation:
        p["pre_logits/kernel"], p["pre_logits/bias"] = r(hidden, representation), r(representation)
        width = representation
    p["head/kernel"], p["head/bias"] = r(width, classes), r(classes)
    return p


def random_distilled_params(seed=0, scale=0.2, **kwargs):
    """`random_params` plus DeiT's distillation token, its position embedding
    (after the class token's) and its head."""
    p = random_params(seed, scale=scale, **kwargs)
    rng = np.random.default_rng(seed + 1000)
    hidden, classes = p["embedding/bias"].shape[0], p["head/bias"].shape[0]

    def r(*shape):
        return (scale * rng.standard_normal(shape)).astype(np.float32)

    p["dist"] = r(1, 1, hidden)
    p[POSEMB] = np.concatenate([p[POSEMB][:, :1], r(1, 1, hidden), p[POSEMB][:, 1:]], axis=1)
    p["head_dist/kernel"], p["head_dist/bias"] = r(hidden, classes), r(classes)
    return p


def random_register_params(seed=0, registers=4, scale=0.2, **kwargs):
    """timm's `*_reg4_gap_*` as original-name params: no class token, position
    embeddings for the patches only, `registers` register tokens, and the
    final LayerNorm after pooling (`fc_norm/*`) in place of `encoder_norm`."""
    p = random_params(seed, scale=scale, **kwargs)
    rng = np.random.default_rng(seed + 2000)
    hidden = p["embedding/bias"].shape[0]
    del p["cls"]
    p[POSEMB] = p[POSEMB][:, 1:]
    p["registers"] = (scale * rng.standard_normal((1, registers, hidden))).astype(np.float32)
    p["fc_norm/scale"] = p.pop("Transformer/encoder_norm/scale")
    p["fc_norm/bias"] = p.pop("Transformer/encoder_norm/bias")
    return p


def random_resnet_params(seed=1, stages=(2, 1), width=32, scale=0.2):
    """A hybrid stem in the original names, GroupNorm params shaped `(1, 1, 1, C)`
    as old Flax stored them. Returns (params, feature channels)."""
    rng = np.random.default_rng(seed)

    def r(*shape, base=0.0):
        return (base + scale * rng.standard_normal(shape)).astype(np.float32)

    p = {
        "conv_root/kernel": r(7, 7, 3, width),
        "gn_root/scale": r(1, 1, 1, width, base=1.0),
        "gn_root/bias": r(1, 1, 1, width),
    }
    channels = width
    for i, units in enumerate(stages):
        features = width * 2**i
        for j in range(units):
            u = f"block{i + 1}/unit{j + 1}/"
            shapes = {
                "1": (1, channels, features),
                "2": (3, features, features),
                "3": (1, features, 4 * features),
            }
            if j == 0:
                shapes["_proj"] = (1, channels, 4 * features)
            for name, (k, cin, cout) in shapes.items():
                p[f"{u}conv{name}/kernel"] = r(k, k, cin, cout)
                p[f"{u}gn{name}/scale"], p[f"{u}gn{name}/bias"] = r(1, 1, 1, cout, base=1.0), r(1, 1, 1, cout)
            channels = 4 * features
    return p, channels


def write_original(params, path):
    np.savez(path, **params)
    return path


def write_big_vision(params, path, scan=False):
    """big_vision: under `params/`, per-type module numbering, position
    embeddings for the patches only (added before the class token)."""
    renames = {
        "MultiHeadDotProductAttention_1": "MultiHeadDotProductAttention_0",
        "LayerNorm_2": "LayerNorm_1",
        "MlpBlock_3": "MlpBlock_0",
    }
    out = {}
    for key, value in params.items():
        if key in (POSEMB, "cls"):
            continue
        for old, new in renames.items():
            key = key.replace(old, new)
        out[key] = value
    out["cls"] = params["cls"] + params[POSEMB][:, :1]
    out["pos_embedding"] = params[POSEMB][:, 1:]
    if scan:
        blocks = sorted(
            {k.split("/")[1] for k in out if k.startswith("Transformer/encoderblock_")},
            key=lambda name: int(name.split("_")[1]),
        )
        for rest in [
            k[len("Transformer/encoderblock_0/") :]
            for k in out
            if k.startswith("Transformer/encoderblock_0/")
        ]:
            out[f"Transformer/encoderblock/{rest}"] = np.stack(
                [out.pop(f"Transformer/{b}/{rest}") for b in blocks]
            )
    np.savez(path, **{f"params/{k}": v for k, v in out.items()})
    return path


def _linear(kernel):
    """Any `(in..., out...)` kernel with `in` first as a torch `(out, in)` weight."""
    return kernel.reshape(kernel.shape[0], -1).T


def _torch_blocks(params):
    i = 0
    while f"Transformer/encoderblock_{i}/LayerNorm_0/scale" in params:
        yield i, f"Transformer/encoderblock_{i}/"
        i += 1


def write_timm(params, path):
    """timm's `VisionTransformer` state dict; DeiT's `VisionTransformerDistilled`
    (`dist_token`, `head_dist`) with `dist`, and `reg_token` and `fc_norm`
    (timm's `*_reg4_gap_*`) with `registers` and `fc_norm/*`."""
    hidden = params["embedding/bias"].shape[0]
    t = {
        "patch_embed.proj.weight": params["embedding/kernel"].transpose(3, 2, 0, 1),
        "patch_embed.proj.bias": params["embedding/bias"],
        "pos_embed": params[POSEMB],
    }
    for name, timm_name in (("cls", "cls_token"), ("dist", "dist_token"), ("registers", "reg_token")):
        if name in params:
            t[timm_name] = params[name]
    t.update(_timm_resnet(params))
    for i, b in _torch_blocks(params):
        a = b + "MultiHeadDotProductAttention_1/"
        t[f"blocks.{i}.norm1.weight"], t[f"blocks.{i}.norm1.bias"] = (
            params[b + "LayerNorm_0/scale"],
            params[b + "LayerNorm_0/bias"],
        )
        t[f"blocks.{i}.attn.qkv.weight"] = np.concatenate(
            [_linear(params[f"{a}{n}/kernel"]) for n in ("query", "key", "value")]
        )
        t[f"blocks.{i}.attn.qkv.bias"] = np.concatenate(
            [params[f"{a}{n}/bias"].reshape(-1) for n in ("query", "key", "value")]
        )
        t[f"blocks.{i}.attn.proj.weight"] = params[a + "out/kernel"].reshape(-1, hidden).T
        t[f"blocks.{i}.attn.proj.bias"] = params[a + "out/bias"]
        t[f"blocks.{i}.norm2.weight"], t[f"blocks.{i}.norm2.bias"] = (
            params[b + "LayerNorm_2/scale"],
            params[b + "LayerNorm_2/bias"],
        )
        for j in (0, 1):
            t[f"blocks.{i}.mlp.fc{j + 1}.weight"] = params[f"{b}MlpBlock_3/Dense_{j}/kernel"].T
            t[f"blocks.{i}.mlp.fc{j + 1}.bias"] = params[f"{b}MlpBlock_3/Dense_{j}/bias"]
    for name, timm_name in (("Transformer/encoder_norm", "norm"), ("fc_norm", "fc_norm")):
        if f"{name}/scale" in params:
            t[f"{timm_name}.weight"], t[f"{timm_name}.bias"] = params[f"{name}/scale"], params[f"{name}/bias"]
    if "pre_logits/kernel" in params:
        t["pre_logits.fc.weight"], t["pre_logits.fc.bias"] = (
            params["pre_logits/kernel"].T,
            params["pre_logits/bias"],
        )
    for name, timm_name in (("head", "head"), ("head_dist", "head_dist")):
        if f"{name}/kernel" in params:
            t[f"{timm_name}.weight"], t[f"{timm_name}.bias"] = (
                params[f"{name}/kernel"].T,
                params[f"{name}/bias"],
            )
    save_file({k: np.ascontiguousarray(v, np.float32) for k, v in t.items()}, path)
    return path


def _timm_resnet(params):
    """timm's `patch_embed.backbone.` names for a hybrid stem (none for a plain ViT)."""
    if "conv_root/kernel" not in params:
        return {}
    stem_only = "block1/unit1/conv1/kernel" not in params
    root = "patch_embed.backbone." if stem_only else "patch_embed.backbone.stem."
    t = {
        root + "conv.weight": params["conv_root/kernel"].transpose(3, 2, 0, 1),
        root + "norm.weight": params["gn_root/scale"].reshape(-1),
        root + "norm.bias": params["gn_root/bias"].reshape(-1),
    }
    for key, value in params.items():
        parts = key.split("/")
        if not key.startswith("block"):
            continue
        stage, unit, layer, leaf = int(parts[0][5:]) - 1, int(parts[1][4:]) - 1, parts[2], parts[3]
        name = {"conv_proj": "downsample.conv", "gn_proj": "downsample.norm"}.get(
            layer, layer.replace("gn", "norm")
        )
        prefix = f"patch_embed.backbone.stages.{stage}.blocks.{unit}.{name}."
        if leaf == "kernel":
            t[prefix + "weight"] = value.transpose(3, 2, 0, 1)
        else:
            t[prefix + ("weight" if leaf == "scale" else "bias")] = value.reshape(-1)
    return t


def write_hf(params, path, prefix="vit."):
    """`ViTForImageClassification` (prefix `vit.`, `classifier`) or, with
    prefix "", `ViTModel` (the pre-logits as `pooler.dense`, no head). With
    `dist` (prefix `deit.`): `DeiTForImageClassificationWithTeacher`
    (`embeddings.distillation_token`, `cls_classifier`, `distillation_classifier`)."""
    hidden = params["embedding/bias"].shape[0]
    e = prefix + "embeddings."
    t = {
        e + "patch_embeddings.projection.weight": params["embedding/kernel"].transpose(3, 2, 0, 1),
        e + "patch_embeddings.projection.bias": params["embedding/bias"],
        e + "cls_token": params["cls"],
        e + "position_embeddings": params[POSEMB],
    }
    if "dist" in params:
        t[e + "distillation_token"] = params["dist"]
    for i, b in _torch_blocks(params):
        layer = f"{prefix}encoder.layer.{i}."
        a = b + "MultiHeadDotProductAttention_1/"
        t[layer + "layernorm_before.weight"], t[layer + "layernorm_before.bias"] = (
            params[b + "LayerNorm_0/scale"],
            params[b + "LayerNorm_0/bias"],
        )
        for n in ("query", "key", "value"):
            t[f"{layer}attention.attention.{n}.weight"] = _linear(params[f"{a}{n}/kernel"])
            t[f"{layer}attention.attention.{n}.bias"] = params[f"{a}{n}/bias"].reshape(-1)
        t[layer + "attention.output.dense.weight"] = params[a + "out/kernel"].reshape(-1, hidden).T
        t[layer + "attention.output.dense.bias"] = params[a + "out/bias"]
        t[layer + "layernorm_after.weight"], t[layer + "layernorm_after.bias"] = (
            params[b + "LayerNorm_2/scale"],
            params[b + "LayerNorm_2/bias"],
        )
        t[layer + "intermediate.dense.weight"] = params[b + "MlpBlock_3/Dense_0/kernel"].T
        t[layer + "intermediate.dense.bias"] = params[b + "MlpBlock_3/Dense_0/bias"]
        t[layer + "output.dense.weight"] = params[b + "MlpBlock_3/Dense_1/kernel"].T
        t[layer + "output.dense.bias"] = params[b + "MlpBlock_3/Dense_1/bias"]
    t[prefix + "layernorm.weight"], t[prefix + "layernorm.bias"] = (
        params["Transformer/encoder_norm/scale"],
        params["Transformer/encoder_norm/bias"],
    )
    if "pre_logits/kernel" in params:
        t[prefix + "pooler.dense.weight"], t[prefix + "pooler.dense.bias"] = (
            params["pre_logits/kernel"].T,
            params["pre_logits/bias"],
        )
    heads = {"head": "classifier"}
    if "head_dist/kernel" in params:
        heads = {"head": "cls_classifier", "head_dist": "distillation_classifier"}
    for name, hf_name in heads.items():
        if f"{name}/kernel" in params:
            t[f"{hf_name}.weight"], t[f"{hf_name}.bias"] = params[f"{name}/kernel"].T, params[f"{name}/bias"]
    save_file({k: np.ascontiguousarray(v, np.float32) for k, v in t.items()}, path)
    return path
