"""Position embeddings: learned (the paper) or fixed 2-D sin-cos (big_vision)."""

import keras
import numpy as np
from keras import ops

KINDS = ("learned", "sincos2d")
RESIZE_METHODS = ("bilinear", "bicubic")


@keras.saving.register_keras_serializable(package="keras_vit")
class PositionEmbedding(keras.layers.Layer):
    """Adds a position embedding to a token sequence `(B, T, D)`.

    `T = num_prefix_tokens + grid_h * grid_w`: the class token (if any) comes
    first, then the patches in row-major order.

    Args:
        grid_size: `(grid_h, grid_w)`, the patch grid.
        num_prefix_tokens: tokens before the grid (1 with a class token, else 0).
        kind: `"learned"`: a weight `embeddings` `(1, T, D)`, initialised with
            normal(0.02) like the original; `"sincos2d"`: big_vision's fixed
            `posemb_sincos_2d` (temperature 10000), zero for prefix tokens.
    """

    def __init__(self, grid_size, num_prefix_tokens=1, kind="learned", **kwargs):
        super().__init__(**kwargs)
        if kind not in KINDS:
            raise ValueError(f"Unknown position embedding kind {kind!r}; expected one of {KINDS}.")
        self.grid_size = tuple(grid_size)
        self.num_prefix_tokens = num_prefix_tokens
        self.kind = kind

    @property
    def sequence_length(self):
        return self.num_prefix_tokens + self.grid_size[0] * self.grid_size[1]

    def build(self, input_shape):
        if input_shape[1] is not None and input_shape[1] != self.sequence_length:
            raise ValueError(
                f"PositionEmbedding for a {self.grid_size[0]}x{self.grid_size[1]} grid "
                f"with {self.num_prefix_tokens} prefix token(s) expects "
                f"{self.sequence_length} tokens, got {input_shape[1]}."
            )
        hidden_dim = input_shape[-1]
        if self.kind == "learned":
            self.embeddings = self.add_weight(
                name="embeddings",
                shape=(1, self.sequence_length, hidden_dim),
                initializer=keras.initializers.RandomNormal(stddev=0.02),
            )
        else:
            grid = sincos_2d_embeddings(self.grid_size, hidden_dim)
            prefix = np.zeros((self.num_prefix_tokens, hidden_dim), np.float32)
            self.embeddings = np.concatenate([prefix, grid])[None]

    def call(self, tokens):
        return tokens + ops.cast(self.embeddings, tokens.dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            grid_size=self.grid_size,
            num_prefix_tokens=self.num_prefix_tokens,
            kind=self.kind,
        )
        return config


def sincos_2d_embeddings(grid_size, hidden_dim, temperature=10_000.0):
    """big_vision's `posemb_sincos_2d`: `(grid_h * grid_w, D)` float32.

    The four quarters of D hold sin(x), cos(x), sin(y), cos(y) at geometrically
    spaced frequencies; x is the column and y the row of the patch.
    """
    if hidden_dim % 4:
        raise ValueError(f"sincos2d position embeddings need hidden_dim divisible by 4, got {hidden_dim}.")
    quarter = hidden_dim // 4
    omega = 1.0 / temperature ** (np.arange(quarter) / max(quarter - 1, 1))
    rows, cols = np.mgrid[: grid_size[0], : grid_size[1]]
    x = cols.reshape(-1, 1) * omega
    y = rows.reshape(-1, 1) * omega
    return np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1).astype(np.float32)


def resize_position_embeddings(embeddings, source_grid, target_grid, num_prefix_tokens=1, method="bilinear"):
    """Resizes learned position embeddings to another patch grid.

    The prefix (class token) entries are kept; the grid part is interpolated
    in 2-D, each channel separately.

    Args:
        embeddings: array `(1, num_prefix_tokens + sh * sw, D)`.
        source_grid: `(sh, sw)`; target_grid: `(th, tw)`. Non-square is fine.
        method: `"bilinear"` (default) equals the original code's
            `scipy.ndimage.zoom(grid, (th / sh, tw / sw, 1), order=1)`: corners
            map onto corners. `"bicubic"` equals timm's
            `F.interpolate(mode="bicubic", align_corners=False)`: half-pixel
            centres, cubic convolution with a = -0.75, edges clamped.

    Returns:
        array `(1, num_prefix_tokens + th * tw, D)`, same dtype.
    """
    if method not in RESIZE_METHODS:
        raise ValueError(f"Unknown resize method {method!r}; expected one of {RESIZE_METHODS}.")
    embeddings = np.asarray(embeddings)
    (sh, sw), (th, tw) = tuple(source_grid), tuple(target_grid)
    expected = num_prefix_tokens + sh * sw
    if embeddings.ndim != 3 or embeddings.shape[:2] != (1, expected):
        raise ValueError(
            f"Position embeddings of shape {embeddings.shape} do not fit a {sh}x{sw} grid "
            f"with {num_prefix_tokens} prefix token(s): expected (1, {expected}, D)."
        )
    prefix, grid = embeddings[:, :num_prefix_tokens], embeddings[0, num_prefix_tokens:]
    grid = grid.reshape(sh, sw, -1).astype(np.float64)
    matrix = _linear_matrix if method == "bilinear" else _cubic_matrix
    resized = np.einsum("ti,ijd,sj->tsd", matrix(sh, th), grid, matrix(sw, tw))
    resized = resized.reshape(1, th * tw, -1).astype(embeddings.dtype)
    return np.concatenate([prefix, resized], axis=1)


def _linear_matrix(size_in, size_out):
    """`(size_out, size_in)` linear interpolation, corner-aligned (scipy's zoom)."""
    scale = (size_in - 1) / (size_out - 1) if size_out > 1 else 0.0
    positions = np.arange(size_out) * scale
    low = np.clip(np.floor(positions).astype(int), 0, size_in - 1)
    high = np.minimum(low + 1, size_in - 1)
    frac = positions - low
    matrix = np.zeros((size_out, size_in))
    np.add.at(matrix, (np.arange(size_out), low), 1.0 - frac)
    np.add.at(matrix, (np.arange(size_out), high), frac)
    return matrix


def _cubic_matrix(size_in, size_out, a=-0.75):
    """`(size_out, size_in)` cubic convolution, half-pixel centres, clamped edges."""

    def kernel(t):
        t = np.abs(t)
        return np.where(
            t <= 1,
            ((a + 2) * t - (a + 3)) * t * t + 1,
            np.where(t < 2, ((a * t - 5 * a) * t + 8 * a) * t - 4 * a, 0.0),
        )

    positions = (np.arange(size_out) + 0.5) * size_in / size_out - 0.5
    base = np.floor(positions).astype(int)
    matrix = np.zeros((size_out, size_in))
    for offset in (-1, 0, 1, 2):
        taps = base + offset
        weights = kernel(positions - taps)
        np.add.at(matrix, (np.arange(size_out), np.clip(taps, 0, size_in - 1)), weights)
    return matrix
