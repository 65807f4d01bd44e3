"""Position embeddings: learned (the paper) or fixed 2-D sin-cos (big_vision)."""

import keras
import numpy as np
from keras import ops

KINDS = ("learned", "sincos2d")
RESIZE_METHODS = ("bilinear", "bicubic")


@keras.saving.register_keras_serializable(package="keras_vit")
class PositionEmbedding(keras.layers.Layer):
    """Adds a position embedding to a token sequence `(B, T, D)`.

    `T = num_prefix_tokens + grid_h * grid_w`: the prefix tokens (class and
    distillation token, if any) come first, then the patches in row-major
    order.

    Called with `patch_input`, the tensor `(B, H, W, C)` the patch embedding
    took, the patch grid is read from its shape at run time (an image size
    chosen at call time): the learned embeddings are resized to that grid in
    the graph by `resize_method`, the rule `resize_position_embeddings`
    applies at load time; sin-cos embeddings are computed for it.

    Args:
        grid_size: `(grid_h, grid_w)`, the patch grid the embeddings are
            for (learned ones: stored for); `(None, None)` for sin-cos ones
            computed at call time.
        num_prefix_tokens: tokens before the grid that get an embedding.
        kind: `"learned"`: a weight `embeddings` `(1, T, D)`, initialised with
            normal(0.02) like the original; `"sincos2d"`: big_vision's fixed
            `posemb_sincos_2d` (temperature 10000), zero for prefix tokens.
        patch_size: the patch side, to read the grid from `patch_input`.
        resize_method: `"bilinear"` or `"bicubic"`, for `patch_input`.
    """

    def __init__(
        self,
        grid_size,
        num_prefix_tokens=1,
        kind="learned",
        patch_size=None,
        resize_method="bilinear",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if kind not in KINDS:
            raise ValueError(f"Unknown position embedding kind {kind!r}; expected one of {KINDS}.")
        if resize_method not in RESIZE_METHODS:
            raise ValueError(f"Unknown resize method {resize_method!r}; expected one of {RESIZE_METHODS}.")
        self.grid_size = tuple(grid_size)
        self.num_prefix_tokens = num_prefix_tokens
        self.kind = kind
        self.patch_size = patch_size
        self.resize_method = resize_method

    @property
    def sequence_length(self):
        return self.num_prefix_tokens + self.grid_size[0] * self.grid_size[1]

    def build(self, tokens_shape, patch_input_shape=None):
        if patch_input_shape is None and tokens_shape[1] not in (None, self.sequence_length):
            raise ValueError(
                f"PositionEmbedding for a {self.grid_size[0]}x{self.grid_size[1]} grid "
                f"with {self.num_prefix_tokens} prefix token(s) expects "
                f"{self.sequence_length} tokens, got {tokens_shape[1]}."
            )
        hidden_dim = tokens_shape[-1]
        if self.kind == "learned":
            self.embeddings = self.add_weight(
                name="embeddings",
                shape=(1, self.sequence_length, hidden_dim),
                initializer=keras.initializers.RandomNormal(stddev=0.02),
            )
        elif self.patch_size is None:  # computed for each input's grid otherwise
            self.embeddings = ops.convert_to_numpy(self._sincos(self.grid_size, hidden_dim, "float64"))

    def call(self, tokens, patch_input=None):
        if patch_input is None:
            embeddings = self.embeddings
        else:
            shape = ops.shape(patch_input)
            grid = (shape[1] // self.patch_size, shape[2] // self.patch_size)
            if self.kind == "learned":
                embeddings = _resize(
                    self.embeddings, self.grid_size, grid, self.num_prefix_tokens, self.resize_method
                )
            else:
                embeddings = self._sincos(grid, tokens.shape[-1], "float32")
        return tokens + ops.cast(embeddings, tokens.dtype)

    def compute_output_shape(self, tokens_shape, patch_input_shape=None):
        """The tokens' shape: JAX and torch trace a grid read at run time with stand-in sizes."""
        return tokens_shape

    def _sincos(self, grid, hidden_dim, dtype):
        """`(1, T, D)` float32: zeros for the prefix tokens, then `sincos_2d_embeddings(grid)`."""
        prefix = ops.zeros((self.num_prefix_tokens, hidden_dim))
        return ops.concatenate([prefix, sincos_2d_embeddings(grid, hidden_dim, dtype=dtype)])[None]

    def get_config(self):
        config = super().get_config()
        config.update(
            grid_size=self.grid_size,
            num_prefix_tokens=self.num_prefix_tokens,
            kind=self.kind,
            patch_size=self.patch_size,
            resize_method=self.resize_method,
        )
        return config


def sincos_2d_embeddings(grid_size, hidden_dim, temperature=10_000.0, dtype="float64"):
    """big_vision's `posemb_sincos_2d`: `(grid_h * grid_w, D)` float32,
    computed in `dtype` (the grid sides may be tensors; float32 then, for
    accelerators without float64).

    The four quarters of D hold sin(x), cos(x), sin(y), cos(y) at geometrically
    spaced frequencies; x is the column and y the row of the patch.
    """
    if hidden_dim % 4:
        raise ValueError(f"sincos2d position embeddings need hidden_dim divisible by 4, got {hidden_dim}.")
    quarter = hidden_dim // 4
    omega = 1.0 / temperature ** (np.arange(quarter) / max(quarter - 1, 1))
    omega = ops.convert_to_tensor(omega.astype(dtype))
    rows = ops.repeat(ops.arange(grid_size[0], dtype=dtype), grid_size[1])
    cols = ops.tile(ops.arange(grid_size[1], dtype=dtype), [grid_size[0]])
    x, y = cols[:, None] * omega, rows[:, None] * omega
    return ops.cast(ops.concatenate([ops.sin(x), ops.cos(x), ops.sin(y), ops.cos(y)], axis=1), "float32")


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
    resized = _resize(embeddings.astype(np.float64), (sh, sw), (th, tw), num_prefix_tokens, method)
    return ops.convert_to_numpy(resized).astype(embeddings.dtype)


def _resize(embeddings, source_grid, target_grid, num_prefix_tokens, method):
    """`resize_position_embeddings` in ops: the target grid may be tensors,
    computed in the embeddings' dtype."""
    (sh, sw), (th, tw) = source_grid, target_grid
    embeddings = ops.convert_to_tensor(embeddings)
    dtype = embeddings.dtype
    prefix, grid = embeddings[:, :num_prefix_tokens], embeddings[0, num_prefix_tokens:]
    grid = ops.reshape(grid, (sh, sw, -1))
    matrix = _linear_matrix if method == "bilinear" else _cubic_matrix
    resized = ops.einsum("ti,ijd,sj->tsd", matrix(sh, th, dtype), grid, matrix(sw, tw, dtype))
    resized = ops.reshape(resized, (1, -1, ops.shape(grid)[-1]))
    return ops.concatenate([prefix, resized], axis=1)


def _linear_matrix(size_in, size_out, dtype):
    """`(size_out, size_in)` linear interpolation, corner-aligned (scipy's zoom)."""
    scale = (size_in - 1) / ops.cast(ops.maximum(size_out - 1, 1), dtype)
    positions = ops.arange(size_out, dtype=dtype) * scale
    low = ops.clip(ops.floor(positions), 0, size_in - 1)
    frac = positions - low
    low = ops.cast(low, "int32")
    high = ops.minimum(low + 1, size_in - 1)
    return (
        ops.one_hot(low, size_in, dtype=dtype) * (1.0 - frac)[:, None]
        + ops.one_hot(high, size_in, dtype=dtype) * frac[:, None]
    )


def _cubic_matrix(size_in, size_out, dtype, a=-0.75):
    """`(size_out, size_in)` cubic convolution, half-pixel centres, clamped edges."""

    def kernel(t):
        t = ops.abs(t)
        near = ((a + 2) * t - (a + 3)) * t * t + 1
        far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
        return ops.where(t <= 1, near, ops.where(t < 2, far, ops.zeros_like(t)))

    positions = (ops.arange(size_out, dtype=dtype) + 0.5) * size_in / ops.cast(size_out, dtype) - 0.5
    base = ops.floor(positions)
    matrix = 0.0
    for offset in (-1, 0, 1, 2):
        taps = base + offset
        column = ops.cast(ops.clip(taps, 0, size_in - 1), "int32")
        matrix = matrix + ops.one_hot(column, size_in, dtype=dtype) * kernel(positions - taps)[:, None]
    return matrix
