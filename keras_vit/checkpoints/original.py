"""The original vision_transformer `.npz` files and big_vision's `.npz` files.

Both are Flax parameter trees flattened with `/`. The original code
(`Transformer/encoderblock_{i}/LayerNorm_0, MultiHeadDotProductAttention_1,
LayerNorm_2, MlpBlock_3`, `Transformer/posembed_input/pos_embedding` with an
entry for the class token) and big_vision (the same under `params/`, with
per-type numbering `LayerNorm_0, MultiHeadDotProductAttention_0, LayerNorm_1,
MlpBlock_0`, a top-level `pos_embedding` for the patches only, and, when
trained with `scan=True`, one `Transformer/encoderblock` stacked over depth)
map onto the same Keras weights. Hybrid (R50+ViT-B_16, AugReg R26/R-Ti)
files add the ResNet stem at the top level (`conv_root`, `gn_root`,
`block{i}/unit{j}/{conv,gn}{1,2,3,_proj}`), which maps onto the `resnet/...`
weights; their GroupNorm `scale`/`bias` may be stored as `(1, 1, 1, C)` (old
Flax) and are squeezed to `(C,)`.
"""

import re
import zipfile

import numpy as np

PREFIXES = ("params/", "opt/target/")
BLOCK_PARTS = {
    "LayerNorm_0": "attention_norm",
    "MultiHeadDotProductAttention_1": "attention",  # original numbering
    "MultiHeadDotProductAttention_0": "attention",  # big_vision numbering
    "LayerNorm_2": "mlp_norm",
    "LayerNorm_1": "mlp_norm",
    "MlpBlock_3": "mlp",
    "MlpBlock_0": "mlp",
}
LEAVES = {
    "bias": "bias",
    "kernel": "kernel",
    "out": "attention_output",
    "Dense_0": "dense_0",
    "Dense_1": "dense_1",
}
TOP_LEVEL = {
    "embedding/kernel": "embedding/kernel",
    "embedding/bias": "embedding/bias",
    "cls": "class_token/token",
    "Transformer/encoder_norm/scale": "encoder_norm/gamma",
    "Transformer/encoder_norm/bias": "encoder_norm/beta",
    "pre_logits/kernel": "pre_logits/kernel",
    "pre_logits/bias": "pre_logits/bias",
    "head/kernel": "head/kernel",
    "head/bias": "head/bias",
}
POSITION_EMBEDDINGS = (
    "Transformer/posembed_input/pos_embedding",  # original
    "Transformer/pos_embedding",  # big_vision before 2022
    "pos_embedding",  # big_vision
)
POSITION = "position_embedding/embeddings"
RESNET = re.compile(
    r"conv_root/kernel|gn_root/(scale|bias)|block\d+/unit\d+/(conv(\d|_proj)/kernel|gn(\d|_proj)/(scale|bias))"
)


def read_npz(path):
    """All arrays of an `.npz` file, loaded without pickle; a clear error if corrupt."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as error:
        raise ValueError(
            f"Could not read checkpoint {path}: {error}. The file is truncated, corrupt or not an "
            f".npz file; delete it and download it again."
        ) from None


def convert(arrays):
    """Original or big_vision arrays -> `{keras weight path: array}`.

    Keys the model has no place for are passed through under their own
    names, so that strict loading reports them.
    """
    params = {}
    for key, value in arrays.items():
        for prefix in PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
                break
        params[key] = value
    params = _unstack_scanned_blocks(params)
    weights = {}
    for key, value in params.items():
        path = _keras_path(key) or key
        if path.startswith("resnet/") and "/gn" in path:
            value = value.reshape(-1)
        weights[path] = value
    position = [k for k in POSITION_EMBEDDINGS if k in params]
    if position:
        embeddings = params[position[0]]
        del weights[position[0]]
        if "cls" in params and _is_square(embeddings.shape[1]):
            # big_vision adds the position embeddings before prepending the
            # class token: the token's entry is zero.
            zeros = np.zeros_like(embeddings[:, :1])
            embeddings = np.concatenate([zeros, embeddings], axis=1)
        weights[POSITION] = embeddings
    return weights


def _unstack_scanned_blocks(params):
    scanned = "Transformer/encoderblock/"
    out = {}
    for key, value in params.items():
        if key.startswith(scanned):
            for i, block_value in enumerate(value):
                out[f"Transformer/encoderblock_{i}/{key[len(scanned) :]}"] = block_value
        else:
            out[key] = value
    return out


def _keras_path(key):
    if key in TOP_LEVEL:
        return TOP_LEVEL[key]
    if RESNET.fullmatch(key):
        return "resnet/" + key.replace("/scale", "/gamma").replace("/bias", "/beta")
    match = re.fullmatch(r"Transformer/encoderblock_(\d+)/(\w+)/(.+)", key)
    if not match or match.group(2) not in BLOCK_PARTS:
        return None
    index, part, rest = match.groups()
    part = BLOCK_PARTS[part]
    leaves = rest.split("/")
    if part.endswith("norm"):
        leaves = [{"scale": "gamma", "bias": "beta"}.get(leaf) for leaf in leaves]
    else:
        leaves = [LEAVES.get(leaf, leaf) for leaf in leaves]
    if None in leaves:
        return None
    return "/".join([f"encoderblock_{index}", part, *leaves])


def _is_square(n):
    root = int(round(n**0.5))
    return root * root == n
