"""An independent NumPy (float64) forward pass of the hybrid's ResNet stem.

Follows the original `vit_jax/models_resnet.py` and `models_vit.py`: weight
standardisation `(w - mean) / (std + 1e-5)`, GroupNorm with 32 groups and
epsilon 1e-6, SAME padding (extra pixel after), convolutions as explicit
patches times a matrix. Weights come in the original checkpoint names
(`conv_root/kernel`, `block1/unit1/gn1/scale`, ...).
"""

import numpy as np
import numpy_vit


def same_padding(size, kernel, stride):
    """TF/Flax SAME: `(before, after)` pads for one axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def windows(x, kernel, stride, fill):
    """`(B, H, W, C)` -> `(B, H', W', k, k, C)`, the SAME-padded windows."""
    b, h, w, c = x.shape
    (top, bottom), (left, right) = same_padding(h, kernel, stride), same_padding(w, kernel, stride)
    x = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=fill)
    out_h, out_w = -(-h // stride), -(-w // stride)
    out = np.empty((b, out_h, out_w, kernel, kernel, c))
    for i in range(out_h):
        for j in range(out_w):
            out[:, i, j] = x[:, i * stride : i * stride + kernel, j * stride : j * stride + kernel]
    return out


def std_conv(x, kernel, stride=1, epsilon=1e-5):
    k = kernel - kernel.mean(axis=(0, 1, 2))
    k = k / (k.std(axis=(0, 1, 2)) + epsilon)
    return np.einsum("bhwijc,ijcd->bhwd", windows(x, k.shape[0], stride, 0.0), k)


def group_norm(x, scale, bias, groups=32, epsilon=1e-6):
    b, h, w, c = x.shape
    g = x.reshape(b, h, w, groups, c // groups)
    mean = g.mean(axis=(1, 2, 4), keepdims=True)
    var = g.var(axis=(1, 2, 4), keepdims=True)
    g = (g - mean) / np.sqrt(var + epsilon)
    return g.reshape(b, h, w, c) * scale.reshape(-1) + bias.reshape(-1)


def relu(x):
    return np.maximum(x, 0.0)


def unit(x, p, prefix, stride):
    gn = lambda y, name: group_norm(y, p[f"{prefix}{name}/scale"], p[f"{prefix}{name}/bias"])  # noqa: E731
    residual = x
    if f"{prefix}conv_proj/kernel" in p:
        residual = gn(std_conv(x, p[f"{prefix}conv_proj/kernel"], stride), "gn_proj")
    y = relu(gn(std_conv(x, p[f"{prefix}conv1/kernel"]), "gn1"))
    y = relu(gn(std_conv(y, p[f"{prefix}conv2/kernel"], stride), "gn2"))
    y = gn(std_conv(y, p[f"{prefix}conv3/kernel"]), "gn3")
    return relu(residual + y)


def stem(params, x):
    """`(B, H, W, 3)` in [-1, 1] -> the feature map, float64."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    x = std_conv(np.asarray(x, np.float64), p["conv_root/kernel"], 2)
    x = relu(group_norm(x, p["gn_root/scale"], p["gn_root/bias"]))
    x = windows(x, 3, 2, -np.inf).max(axis=(3, 4))
    i = 1
    while f"block{i}/unit1/conv1/kernel" in p:
        j = 1
        while f"block{i}/unit{j}/conv1/kernel" in p:
            x = unit(x, p, f"block{i}/unit{j}/", 2 if i > 1 and j == 1 else 1)
            j += 1
        i += 1
    return x


def forward(params, images, *, patch_size, num_heads, include_rescaling=True, **kwargs):
    """The hybrid: the stem on the (rescaled) images, then `numpy_vit.forward` on its feature map."""
    x = np.asarray(images, np.float64)
    if include_rescaling:
        x = x / 127.5 - 1.0
    features = stem(params, x)
    vit_params = {k: v for k, v in params.items() if not k.startswith(("conv_root", "gn_root", "block"))}
    return numpy_vit.forward(
        vit_params, features, patch_size=patch_size, num_heads=num_heads, include_rescaling=False, **kwargs
    )
