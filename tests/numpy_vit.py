"""An independent NumPy (float64) forward pass of the paper's equations.

Weights come as a flat dict in the original checkpoints' layout
(`Transformer/encoderblock_0/MlpBlock_3/Dense_0/kernel`, ...), so the same
reference serves the model tests and the checkpoint tests. Beyond the
original's names, as timm computes them: `dist` `(1, 1, D)` and
`head_dist/{kernel,bias}` (DeiT's distillation token, after the class token
and with a position embedding, and its head: the logits are the mean of both
heads'); `registers` `(1, R, D)` (inserted after the position embedding,
before the patches; left out of pooling); `fc_norm/{scale,bias}` (a LayerNorm
after pooling, in place of `Transformer/encoder_norm`).
"""

import math

import numpy as np
from scipy.special import erf

BLOCK = "Transformer/encoderblock_{}/"


def layer_norm(x, scale, bias, epsilon):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + epsilon) * scale + bias


def gelu(x, approximate):
    if approximate:
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1 + erf(x / math.sqrt(2)))


def softmax(x):
    x = x - x.max(-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(-1, keepdims=True)


def patchify(images, patch_size):
    """`(B, H, W, C)` -> `(B, N, P*P*C)`, patches row-major, each in (P, P, C) order."""
    b, h, w, c = images.shape
    p = patch_size
    x = images.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // p) * (w // p), p * p * c)


def attention(x, params, prefix, num_heads):
    q, k, v = (
        np.einsum("btd,dhk->bthk", x, params[f"{prefix}{n}/kernel"]) + params[f"{prefix}{n}/bias"]
        for n in ("query", "key", "value")
    )
    logits = np.einsum("bqhk,bshk->bhqs", q, k) / math.sqrt(q.shape[-1])
    probs = softmax(logits)
    out = np.einsum("bhqs,bshk->bqhk", probs, v)
    return np.einsum("bqhk,hkd->bqd", out, params[f"{prefix}out/kernel"]) + params[f"{prefix}out/bias"], probs


def forward(
    params,
    images,
    *,
    patch_size,
    num_heads,
    pooling="token",
    gelu_approximate=True,
    layer_norm_epsilon=1e-6,
    include_rescaling=True,
    image_mean=(0.5, 0.5, 0.5),
    image_std=(0.5, 0.5, 0.5),
    position_embeddings=None,
):
    """Returns dict(logits, pooled, tokens, hidden_states, attention) in float64,
    and for a distilled model `class_logits` and `distillation_logits` (its
    `pooled` is the mean of the class and distillation tokens', as timm's).

    Images `(B, H, W, 3)` in [0, 255] with `include_rescaling`, normalised to
    `(x / 255 - image_mean) / image_std`. `position_embeddings` overrides the
    learned ones (e.g. sin-cos); without either, none are added.
    """
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    x = np.asarray(images, np.float64)
    if include_rescaling:
        x = (x / 255.0 - np.asarray(image_mean)) / np.asarray(image_std)
    kernel = p["embedding/kernel"]
    x = patchify(x, patch_size) @ kernel.reshape(-1, kernel.shape[-1]) + p["embedding/bias"]
    prefix = ["cls"] * (pooling == "token") + ["dist"] * ("dist" in p)
    prefix_tokens = [np.broadcast_to(p[name], (x.shape[0], 1, x.shape[-1])) for name in prefix]
    x = np.concatenate([*prefix_tokens, x], axis=1)
    if position_embeddings is None:
        position_embeddings = p.get("Transformer/posembed_input/pos_embedding", 0.0)
    x = x + position_embeddings
    registers = p.get("registers", np.zeros((1, 0, x.shape[-1])))
    registers = np.broadcast_to(registers, (x.shape[0], *registers.shape[1:]))
    x = np.concatenate([x[:, : len(prefix)], registers, x[:, len(prefix) :]], axis=1)
    hidden_states, attentions = [], []
    i = 0
    while f"{BLOCK.format(i)}LayerNorm_0/scale" in p:
        b = BLOCK.format(i)
        y = layer_norm(x, p[f"{b}LayerNorm_0/scale"], p[f"{b}LayerNorm_0/bias"], layer_norm_epsilon)
        y, probs = attention(y, p, f"{b}MultiHeadDotProductAttention_1/", num_heads)
        x = x + y
        y = layer_norm(x, p[f"{b}LayerNorm_2/scale"], p[f"{b}LayerNorm_2/bias"], layer_norm_epsilon)
        y = gelu(y @ p[f"{b}MlpBlock_3/Dense_0/kernel"] + p[f"{b}MlpBlock_3/Dense_0/bias"], gelu_approximate)
        x = x + y @ p[f"{b}MlpBlock_3/Dense_1/kernel"] + p[f"{b}MlpBlock_3/Dense_1/bias"]
        hidden_states.append(x)
        attentions.append(probs)
        i += 1
    tokens = x
    if "Transformer/encoder_norm/scale" in p:
        tokens = layer_norm(
            x, p["Transformer/encoder_norm/scale"], p["Transformer/encoder_norm/bias"], layer_norm_epsilon
        )
    if pooling == "gap":
        pooled = tokens[:, len(prefix) + registers.shape[1] :].mean(axis=1)
    elif "dist" in p:
        pooled = (tokens[:, 0] + tokens[:, 1]) / 2  # timm's pre-logits of a distilled model
    else:
        pooled = tokens[:, 0]
    if "fc_norm/scale" in p:
        pooled = layer_norm(pooled, p["fc_norm/scale"], p["fc_norm/bias"], layer_norm_epsilon)
    if "pre_logits/kernel" in p:
        pooled = np.tanh(pooled @ p["pre_logits/kernel"] + p["pre_logits/bias"])
    out = dict(pooled=pooled, tokens=tokens, hidden_states=hidden_states, attention=attentions)
    if "head_dist/kernel" in p:
        out["class_logits"] = tokens[:, 0] @ p["head/kernel"] + p["head/bias"]
        out["distillation_logits"] = tokens[:, 1] @ p["head_dist/kernel"] + p["head_dist/bias"]
        out["logits"] = (out["class_logits"] + out["distillation_logits"]) / 2
    elif "head/kernel" in p:
        out["logits"] = pooled @ p["head/kernel"] + p["head/bias"]
    return out
