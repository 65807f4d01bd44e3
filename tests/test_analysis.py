"""keras_vit.analysis against NumPy references and hand-made attention."""

import math
import os

import keras
import numpy as np
import numpy_resnet
import numpy_vit
import pytest
from helpers import HYBRID, TINY_VIT, original_params, original_resnet_params, random_images, randomize
from sklearn.decomposition import PCA

import keras_vit
from keras_vit import analysis


@pytest.fixture(scope="module")
def tiny_model():
    return randomize(keras_vit.ViT(**TINY_VIT))


def random_attention(shape, seed=0):
    logits = np.random.default_rng(seed).standard_normal(shape)
    return np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)


def reference_rollout(attention):
    """Per image, written with the rows-sum-to-one identity (A + I) / 2 = 0.5 A + 0.5 I."""
    layers, batch, heads, tokens, _ = attention.shape
    out = np.zeros((batch, tokens, tokens))
    for b in range(batch):
        joint = np.eye(tokens)
        for layer in range(layers):
            mean = sum(attention[layer, b, h] for h in range(heads)) / heads
            joint = (0.5 * mean + 0.5 * np.eye(tokens)) @ joint
        out[b] = joint
    return out


def test_rollout_of_identity_attention_is_identity():
    attention = np.broadcast_to(np.eye(5), (3, 2, 4, 5, 5))
    np.testing.assert_allclose(analysis.rollout(attention), np.broadcast_to(np.eye(5), (2, 5, 5)))


def test_rollout_matches_reference():
    attention = random_attention((3, 2, 4, 6, 6))
    joint = analysis.rollout(attention)
    np.testing.assert_allclose(joint, reference_rollout(attention), atol=1e-12)
    np.testing.assert_allclose(joint.sum(-1), 1.0, atol=1e-12)


def test_rollout_rejects_wrong_shape():
    with pytest.raises(ValueError, match=r"\(layers, batch, heads, T, T\), got shape \(2, 5, 5\)"):
        analysis.rollout(np.ones((2, 5, 5)))


@pytest.mark.parametrize("pooling", ["token", "gap"])
def test_attention_maps_and_rollout_on_a_model(pooling):
    model = randomize(keras_vit.ViT(**{**TINY_VIT, "pooling": pooling}))
    images = random_images()
    maps = analysis.attention_maps(model, images)
    expected = numpy_vit.forward(original_params(model), images, patch_size=8, num_heads=4, pooling=pooling)
    tokens = 17 if pooling == "token" else 16
    assert maps.shape == (2, 2, 4, tokens, tokens)
    np.testing.assert_allclose(maps, np.stack(expected["attention"]), atol=1e-5)
    joint = reference_rollout(np.stack(expected["attention"]))
    weights = joint[:, 0, 1:] if pooling == "token" else joint.mean(axis=1)
    weights /= weights.sum(-1, keepdims=True)
    rollout = analysis.attention_rollout(model, images)
    assert rollout.shape == (2, 4, 4)
    np.testing.assert_allclose(rollout, weights.reshape(2, 4, 4), atol=1e-5)
    big = analysis.upsample(rollout, (32, 32))
    assert big.shape == (2, 32, 32)
    np.testing.assert_allclose(big.mean(axis=(1, 2)), rollout.mean(axis=(1, 2)), rtol=0.05)


@pytest.mark.parametrize(
    "overrides, rows",
    [
        (dict(distilled=True, num_registers=2), slice(0, 2)),  # class and distillation tokens
        (dict(pooling="gap", num_registers=3, final_norm="pooled"), slice(3, None)),  # the patches
    ],
)
def test_rollout_and_distance_with_prefix_tokens(overrides, rows):
    model = randomize(keras_vit.ViT(**{**TINY_VIT, **overrides}))
    prefix = model.num_prefix_tokens
    images = random_images()
    expected = numpy_vit.forward(
        original_params(model), images, patch_size=8, num_heads=4, pooling=model.pooling
    )
    np.testing.assert_allclose(model(images), expected["logits"], atol=1e-5)
    attention = np.stack(expected["attention"])
    np.testing.assert_allclose(analysis.attention_maps(model, images), attention, atol=1e-5)
    weights = reference_rollout(attention)[:, rows].mean(axis=1)[:, prefix:]
    weights /= weights.sum(-1, keepdims=True)
    np.testing.assert_allclose(analysis.attention_rollout(model, images), weights.reshape(2, 4, 4), atol=1e-5)
    patches = attention[..., prefix:, prefix:] / attention[..., prefix:, prefix:].sum(-1, keepdims=True)
    centres = [(8 * (n // 4), 8 * (n % 4)) for n in range(16)]
    distance = np.array([[math.dist(a, b) for b in centres] for a in centres])
    expected = np.einsum("lbhqk,qk->lh", patches, distance) / (2 * 16)
    np.testing.assert_allclose(analysis.mean_attention_distance(model, images), expected, rtol=1e-4)


def test_rollout_of_a_model_with_a_call_time_size():
    model = randomize(keras_vit.ViT(**{**TINY_VIT, "image_size": None, "position_grid_size": (4, 4)}))
    images = random_images(size=(40, 24))
    assert analysis.attention_rollout(model, images).shape == (2, 5, 3)
    assert analysis.mean_attention_distance(model, images).shape == (2, 4)


def test_attention_distance_of_identity_is_zero():
    attention = np.broadcast_to(np.eye(1 + 9), (2, 3, 4, 10, 10))
    np.testing.assert_allclose(analysis.attention_distance(attention, (3, 3), 16, 1), 0.0)


@pytest.mark.parametrize("prefix", [0, 1])
def test_attention_distance_of_uniform_attention(prefix):
    # A 2x2 grid of 16-pixel patches: from each patch, distances 0, 16, 16, 16*sqrt(2).
    tokens = prefix + 4
    uniform = np.full((1, 1, 2, tokens, tokens), 1 / tokens)
    expected = 16 * (2 + math.sqrt(2)) / 4
    np.testing.assert_allclose(analysis.attention_distance(uniform, (2, 2), 16, prefix), expected, rtol=1e-6)
    # A 1 x n strip: E|i - j| for i, j uniform on 0..n-1 is (n^2 - 1) / (3 n).
    n = 7
    uniform = np.full((2, 3, 2, prefix + n, prefix + n), 1 / (prefix + n))
    expected = 8 * (n * n - 1) / (3 * n)
    np.testing.assert_allclose(analysis.attention_distance(uniform, (1, n), 8, prefix), expected, rtol=1e-6)


def test_attention_distance_of_one_hot_attention():
    # On a 3x3 grid every patch attends to the centre patch (index 4).
    attention = np.zeros((1, 1, 1, 9, 9))
    attention[..., 4] = 1.0
    corners, edges = 4 * math.sqrt(2) * 10, 4 * 10
    np.testing.assert_allclose(analysis.attention_distance(attention, (3, 3), 10), (corners + edges) / 9)


def test_mean_attention_distance_of_a_model(tiny_model):
    images = random_images()
    expected = numpy_vit.forward(original_params(tiny_model), images, patch_size=8, num_heads=4)
    attention = np.stack(expected["attention"])[..., 1:, 1:]
    attention /= attention.sum(-1, keepdims=True)
    centres = [(8 * (n // 4), 8 * (n % 4)) for n in range(16)]
    distance = np.array([[math.dist(a, b) for b in centres] for a in centres])
    expected = np.einsum("lbhqk,qk->lh", attention, distance) / (2 * 16)
    got = analysis.mean_attention_distance(tiny_model, images)
    assert got.shape == (2, 4)
    np.testing.assert_allclose(got, expected, rtol=1e-4)


def test_analysis_of_a_hybrid():
    # ResNet stride 8 on 32x32 images, patch size 1: a 4x4 grid of tokens 8 pixels apart.
    model = randomize(keras_vit.ViT(**HYBRID))
    assert model.grid_size == (4, 4) and model.token_stride == 8
    images = random_images()
    params = {**original_params(model), **original_resnet_params(model)}
    attention = np.stack(numpy_resnet.forward(params, images, patch_size=1, num_heads=4)["attention"])
    joint = reference_rollout(attention)
    weights = joint[:, 0, 1:] / joint[:, 0, 1:].sum(-1, keepdims=True)
    np.testing.assert_allclose(analysis.attention_rollout(model, images), weights.reshape(2, 4, 4), atol=2e-5)
    patches = attention[..., 1:, 1:] / attention[..., 1:, 1:].sum(-1, keepdims=True)
    centres = [(8 * (n // 4), 8 * (n % 4)) for n in range(16)]
    distance = np.array([[math.dist(a, b) for b in centres] for a in centres])
    expected = np.einsum("lbhqk,qk->lh", patches, distance) / (2 * 16)
    np.testing.assert_allclose(analysis.mean_attention_distance(model, images), expected, rtol=1e-4)
    effect = analysis.position_embedding_effect(model, images)
    assert sorted(effect["permutation"]) == list(range(16))
    np.testing.assert_array_equal(
        effect["shuffled"], analysis.shuffle_patches(images, 8, effect["permutation"])
    )


def test_attention_distance_rejects_wrong_grid():
    with pytest.raises(ValueError, match=r"3x3 grid with 1 prefix token\(s\)"):
        analysis.attention_distance(np.ones((1, 1, 1, 9, 9)), (3, 3), 16, 1)


def test_position_embedding_similarity(tiny_model):
    table = tiny_model.get_layer("position_embedding").embeddings.numpy()[0, 1:]
    got = analysis.position_embedding_similarity(tiny_model)
    assert got.shape == (4, 4, 4, 4)
    for a in range(16):
        for b in range(16):
            cosine = table[a] @ table[b] / np.linalg.norm(table[a]) / np.linalg.norm(table[b])
            np.testing.assert_allclose(got[a // 4, a % 4, b // 4, b % 4], cosine, atol=1e-6)
    with pytest.raises(ValueError, match="position_embedding='none'"):
        analysis.position_embedding_similarity(keras_vit.ViT(**TINY_VIT, position_embedding="none"))


def test_patch_embedding_filters_match_sklearn_pca(tiny_model):
    components, explained = analysis.patch_embedding_filters(tiny_model, num_components=5)
    assert components.shape == (5, 8, 8, 3)
    kernel = tiny_model.get_layer("embedding").kernel.numpy()
    pca = PCA(n_components=5).fit(kernel.reshape(-1, 32).T)
    np.testing.assert_allclose(explained, pca.explained_variance_ratio_, rtol=1e-4)
    for got, want in zip(components.reshape(5, -1), pca.components_):
        np.testing.assert_allclose(got * np.sign(got @ want), want, atol=1e-4)


def test_shuffle_patches_permutes_the_raw_patches():
    images = random_images(size=(32, 48))
    permutation = np.random.default_rng(0).permutation(24)
    shuffled = analysis.shuffle_patches(images, 8, permutation)
    np.testing.assert_array_equal(
        numpy_vit.patchify(shuffled, 8), numpy_vit.patchify(images, 8)[:, permutation]
    )
    with pytest.raises(ValueError, match="a permutation of 0..23"):
        analysis.shuffle_patches(images, 8, [0, 1, 2])


@pytest.mark.parametrize("pooling", ["token", "gap"])
def test_without_position_embeddings_the_model_is_permutation_invariant(pooling):
    model = randomize(keras_vit.ViT(**{**TINY_VIT, "pooling": pooling}))
    images = random_images()
    effect = analysis.position_embedding_effect(model, images, seed=3)
    # The copy is the model's weights less the position embeddings (checked on the reference).
    params = original_params(model)
    params.pop("Transformer/posembed_input/pos_embedding")
    expected = numpy_vit.forward(params, images, patch_size=8, num_heads=4, pooling=pooling)
    np.testing.assert_allclose(effect["without"][0], expected["logits"], atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(effect["without"][1], effect["without"][0], atol=1e-5)
    assert np.abs(effect["with"][1] - effect["with"][0]).max() > 1e-2


@pytest.mark.e2e
@pytest.mark.trains
def test_trained_digits_position_embeddings():
    """The paper's Figure 7 (centre) on a ViT trained on the bundled digits:
    each patch's embedding is most similar to itself, and more similar to its
    own row and column than to the rest."""
    from digits import train_digits_vit

    model, accuracy = train_digits_vit()
    assert accuracy > 0.8
    similarity = analysis.position_embedding_similarity(model)
    g = similarity.shape[0]
    row_col, rest = [], []
    for i in range(g):
        for j in range(g):
            s = similarity[i, j]
            assert np.argmax(s) == i * g + j
            line = np.zeros((g, g), bool)
            line[i, :] = line[:, j] = True
            line[i, j] = False
            other = ~line
            other[i, j] = False
            row_col.append(s[line].mean())
            rest.append(s[other].mean())
    row_col, rest = np.array(row_col), np.array(rest)
    print(
        f"digits accuracy {accuracy:.3f}; mean similarity along own row/column {row_col.mean():.3f}, "
        f"elsewhere {rest.mean():.3f}; row/column higher for {np.mean(row_col > rest):.0%} of patches"
    )
    assert row_col.mean() > rest.mean()


def test_plots_write_pngs(tiny_model, tmp_path):
    images = random_images(batch=2)
    calls = {
        "filters": lambda p: analysis.plot_patch_embedding_filters(tiny_model, p),
        "similarity": lambda p: analysis.plot_position_embedding_similarity(tiny_model, p),
        "distance": lambda p: analysis.plot_mean_attention_distance(tiny_model, images, p),
        "rollout": lambda p: analysis.plot_attention_rollout(tiny_model, images, p),
        "effect": lambda p: analysis.plot_position_embedding_effect(tiny_model, images, p),
    }
    for name, plot in calls.items():
        path = tmp_path / f"{name}.png"
        plot(path)
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_cli_writes_the_pictures(tiny_model, tmp_path, capsys):
    from keras_vit.analysis.__main__ import main

    model_path = str(tmp_path / "tiny.keras")
    tiny_model.save(model_path)
    folder = tmp_path / "images"
    folder.mkdir()
    for k, image in enumerate(random_images(batch=2, size=(40, 40))):
        keras.utils.save_img(str(folder / f"{k}.png"), image)
    out = tmp_path / "out"
    assert main([model_path, str(folder), "--out", str(out)]) == 0
    assert sorted(os.listdir(out)) == [
        "attention_rollout.png",
        "mean_attention_distance.png",
        "patch_embedding_filters.png",
        "position_embedding_effect.png",
        "position_embedding_similarity.png",
    ]
    with pytest.raises(SystemExit):
        main([str(tmp_path / "missing.keras"), str(folder), "--out", str(out)])
    assert "neither a .keras file nor a preset folder" in capsys.readouterr().err
