import math

import keras
import numpy as np
import pytest
import scipy.ndimage

from keras_vit import layers


def test_patch_embedding_is_a_linear_map_of_patches():
    layer = layers.PatchEmbedding(4, 8)
    images = np.random.default_rng(0).normal(size=(2, 8, 12, 3)).astype("float32")
    tokens = layer(images)
    patches = layer.extract_patches(images)
    assert tokens.shape == (2, 6, 8) and patches.shape == (2, 6, 48)
    # Patch n = row-major grid position (row, col); its pixels in (P, P, C) order.
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(patches)[1, 4].reshape(4, 4, 3), images[1, 4:8, 4:8]
    )
    expected = keras.ops.convert_to_numpy(patches) @ layer.kernel.numpy().reshape(48, 8) + layer.bias.numpy()
    np.testing.assert_allclose(tokens, expected, atol=1e-5)


def test_class_token_is_prepended():
    layer = layers.ClassToken()
    tokens = np.ones((3, 5, 4), "float32")
    out = layer(tokens)
    layer.token.assign(np.full((1, 1, 4), 7.0, "float32"))
    out = keras.ops.convert_to_numpy(layer(tokens))
    assert out.shape == (3, 6, 4)
    np.testing.assert_array_equal(out[:, 0], np.full((3, 4), 7.0))
    np.testing.assert_array_equal(out[:, 1:], tokens)


# resize_position_embeddings computes in float64; JAX without jax_enable_x64 has float32 only,
# and then differs from float64 by up to 1.8e-6 (measured): its bound is 1e-5, a margin of 5x.
RESIZE_ATOL = 1e-5 if keras.backend.backend() == "jax" else None


@pytest.mark.parametrize(
    "source, target", [((4, 4), (6, 6)), ((7, 7), (12, 12)), ((6, 4), (3, 5)), ((2, 3), (2, 3))]
)
def test_bilinear_resize_matches_scipy_zoom(source, target):
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(1, 1 + source[0] * source[1], 5)).astype("float32")
    resized = layers.resize_position_embeddings(embeddings, source, target)
    grid = embeddings[0, 1:].reshape(*source, 5)
    zoom = (target[0] / source[0], target[1] / source[1], 1)
    expected = scipy.ndimage.zoom(grid, zoom, order=1)
    assert expected.shape == (*target, 5)
    np.testing.assert_allclose(resized[0, 1:].reshape(*target, 5), expected, atol=RESIZE_ATOL or 1e-6)
    np.testing.assert_array_equal(resized[:, :1], embeddings[:, :1])  # class entry kept
    assert resized.dtype == embeddings.dtype


def cubic_reference(grid, target, a=-0.75):
    """Per-pixel bicubic (half-pixel centres, clamped edges), the textbook loop."""

    def w(t):
        t = abs(t)
        if t <= 1:
            return (a + 2) * t**3 - (a + 3) * t**2 + 1
        return a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a if t < 2 else 0.0

    h, wd = grid.shape[:2]
    out = np.zeros((*target, grid.shape[2]))
    for i in range(target[0]):
        y = (i + 0.5) * h / target[0] - 0.5
        for j in range(target[1]):
            x = (j + 0.5) * wd / target[1] - 0.5
            for m in range(math.floor(y) - 1, math.floor(y) + 3):
                for n in range(math.floor(x) - 1, math.floor(x) + 3):
                    out[i, j] += w(y - m) * w(x - n) * grid[min(max(m, 0), h - 1), min(max(n, 0), wd - 1)]
    return out


def test_bicubic_resize_matches_loop_reference():
    embeddings = np.random.default_rng(1).normal(size=(1, 1 + 5 * 4, 3))
    resized = layers.resize_position_embeddings(embeddings, (5, 4), (8, 7), method="bicubic")
    expected = cubic_reference(embeddings[0, 1:].reshape(5, 4, 3), (8, 7))
    np.testing.assert_allclose(resized[0, 1:].reshape(8, 7, 3), expected, atol=RESIZE_ATOL or 1e-10)


def test_resize_without_prefix_and_bad_input():
    embeddings = np.random.default_rng(2).normal(size=(1, 9, 2))
    assert layers.resize_position_embeddings(embeddings, (3, 3), (5, 5), num_prefix_tokens=0).shape == (
        1,
        25,
        2,
    )
    with pytest.raises(
        ValueError, match=r"do not fit a 4x4 grid with 1 prefix token\(s\): expected \(1, 17, D\)"
    ):
        layers.resize_position_embeddings(embeddings, (4, 4), (5, 5))
    with pytest.raises(ValueError, match="Unknown resize method 'nearest'"):
        layers.resize_position_embeddings(embeddings, (3, 3), (5, 5), num_prefix_tokens=0, method="nearest")


def test_position_embedding_rejects_wrong_length():
    with pytest.raises(ValueError, match="expects 17 tokens, got 10"):
        layers.PositionEmbedding((4, 4))(np.zeros((1, 10, 8), "float32"))


@pytest.mark.parametrize("approximate", [True, False])
def test_gelu_forms(approximate):
    from scipy.special import erf

    x = np.linspace(-6, 6, 101).astype("float32")
    exact = 0.5 * x * (1 + erf(x / np.sqrt(2)))
    got = keras.ops.convert_to_numpy(layers.gelu(x, approximate=approximate))
    np.testing.assert_allclose(got, exact, atol=1e-3 if approximate else 1e-6)
    if approximate:
        assert np.abs(got - exact).max() > 1e-5  # really the tanh form


def test_drop_path_drops_whole_samples():
    layer = layers.DropPath(0.5, seed=0)
    x = np.ones((2000, 3, 4), "float32")
    np.testing.assert_array_equal(layer(x, training=False), x)
    out = keras.ops.convert_to_numpy(layer(x, training=True))
    per_sample = out.reshape(2000, -1)
    assert set(np.unique(per_sample)) == {0.0, 2.0}
    assert np.all(per_sample.min(1) == per_sample.max(1))  # all-or-nothing per sample
    assert abs(out.mean() - 1.0) < 0.1


def test_self_attention_equals_keras_multi_head_attention():
    keras.utils.set_random_seed(0)  # the reference's initial weights
    x = np.random.default_rng(0).normal(size=(2, 5, 12)).astype("float32")
    ours = layers.MultiHeadSelfAttention(3)
    ours.build(x.shape)
    reference = keras.layers.MultiHeadAttention(3, 4)
    reference.build(x.shape, x.shape)
    weights = [
        w.numpy() + np.random.default_rng(i).normal(size=w.shape) for i, w in enumerate(reference.weights)
    ]
    reference.set_weights(weights)
    ours.set_weights(weights)  # same variables, same order, same shapes
    assert [w.path.split("/", 1)[1] for w in ours.weights] == [
        w.path.split("/", 1)[1] for w in reference.weights
    ]
    x = keras.ops.convert_to_tensor(x)  # Keras' layer on torch fails on a NumPy query and value
    got, got_probs = map(keras.ops.convert_to_numpy, ours(x, return_attention_scores=True))
    want, want_probs = map(keras.ops.convert_to_numpy, reference(x, x, return_attention_scores=True))
    # Outputs reach |50| here; float32 rounding in another matmul order (oneDNN off) gives up to 7.6e-6.
    np.testing.assert_allclose(got, want, atol=2e-6 * float(np.max(np.abs(want))))
    np.testing.assert_allclose(got_probs, want_probs, atol=1e-6)


def test_patch_dropout_keeps_prefix_and_an_ordered_subset():
    tokens = np.arange(2 * 17 * 3, dtype="float32").reshape(2, 17, 3)  # every row distinct
    layer = layers.PatchDropout(0.5, num_prefix_tokens=1, seed=0)
    np.testing.assert_array_equal(layer(tokens), tokens)  # inference: identity
    kept = keras.ops.convert_to_numpy(layer(tokens, training=True))
    assert kept.shape == (2, 1 + 8, 3)  # timm's count: max(1, int(16 * 0.5))
    rows = []
    for sample, out in zip(tokens, kept):
        np.testing.assert_array_equal(out[0], sample[0])  # the class token stays
        index = [int(np.flatnonzero((sample == row).all(axis=1))[0]) for row in out[1:]]
        assert index == sorted(set(index)) and min(index) >= 1, index  # patches, in order, no repeats
        rows.append(index)
    assert rows[0] != rows[1]  # drawn per sample
    assert layers.PatchDropout(0.99, num_prefix_tokens=0)(tokens, training=True).shape == (2, 1, 3)
