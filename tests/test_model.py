import inspect

import keras
import numpy as np
import numpy_vit
import pytest
from helpers import original_params, random_images, randomize

import keras_vit
from keras_vit.presets import preset_config


def build(config, **overrides):
    return keras_vit.ViT(**{**config, **overrides})


@pytest.mark.parametrize("gelu_approximate", [True, False])
@pytest.mark.parametrize("pooling", ["token", "gap"])
@pytest.mark.parametrize("representation_size", [None, 24])
def test_matches_numpy_reference(tiny_config, gelu_approximate, pooling, representation_size):
    model = randomize(
        build(
            tiny_config,
            gelu_approximate=gelu_approximate,
            pooling=pooling,
            representation_size=representation_size,
        )
    )
    images = random_images()
    expected = numpy_vit.forward(
        original_params(model),
        images,
        patch_size=8,
        num_heads=4,
        pooling=pooling,
        gelu_approximate=gelu_approximate,
    )
    np.testing.assert_allclose(model.predict(images, verbose=0), expected["logits"], atol=1e-5, rtol=1e-5)


def test_feature_extractor_matches_reference_and_shares_weights(tiny_config):
    model = randomize(build(tiny_config))
    images = random_images()
    extractor = model.feature_extractor(("tokens", "pooled", "hidden_states", "attention", "logits"))
    got = extractor(images)
    expected = numpy_vit.forward(original_params(model), images, patch_size=8, num_heads=4)
    for key in ("tokens", "pooled", "logits"):
        np.testing.assert_allclose(got[key], expected[key], atol=1e-5, rtol=1e-5)
    assert len(got["hidden_states"]) == len(got["attention"]) == 2
    for g, e in zip(
        got["hidden_states"] + got["attention"], expected["hidden_states"] + expected["attention"]
    ):
        np.testing.assert_allclose(g, e, atol=1e-5, rtol=1e-5)
    assert got["attention"][0].shape == (2, 4, 17, 17)
    # Same variables, not copies: changing the model changes the extractor.
    model.get_layer("head").bias.assign(np.full(7, 3.0, "float32"))
    np.testing.assert_allclose(extractor(images)["logits"], model(images), atol=1e-6)


@pytest.mark.parametrize("pooling, representation_size", [("token", None), ("gap", 24)])
def test_forward_features_then_head_match_reference(tiny_config, pooling, representation_size):
    model = randomize(build(tiny_config, pooling=pooling, representation_size=representation_size))
    images = random_images()
    expected = numpy_vit.forward(original_params(model), images, patch_size=8, num_heads=4, pooling=pooling)
    tokens = model.forward_features(images)
    assert tokens.shape == (2, 16 + (pooling == "token"), 32)
    np.testing.assert_allclose(tokens, expected["tokens"], atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(
        model.forward_head(tokens, pre_logits=True), expected["pooled"], atol=1e-5, rtol=1e-5
    )
    np.testing.assert_allclose(model.forward_head(tokens), expected["logits"], atol=1e-5, rtol=1e-5)
    headless = build(tiny_config, include_top=False)
    assert headless.forward_head(headless.forward_features(images)).shape == (2, 32)


def test_non_square_images(tiny_config):
    model = randomize(build(tiny_config, image_size=(32, 48)))
    images = random_images(size=(32, 48))
    assert model.get_layer("position_embedding").embeddings.shape == (1, 1 + 4 * 6, 32)
    expected = numpy_vit.forward(original_params(model), images, patch_size=8, num_heads=4)
    np.testing.assert_allclose(model(images), expected["logits"], atol=1e-5, rtol=1e-5)


def test_sincos_and_no_position_embedding(tiny_config):
    images = random_images()
    sincos = randomize(build(tiny_config, position_embedding="sincos2d"))
    none = randomize(build(tiny_config, position_embedding="none"))
    assert len(sincos.weights) == len(none.weights)  # the sin-cos table is not a weight
    # Reference table written out per entry: [sin(x w), cos(x w), sin(y w), cos(y w)].
    quarter = 8
    omega = [10000.0 ** (-k / (quarter - 1)) for k in range(quarter)]
    table = np.zeros((1, 17, 32))
    for row in range(4):
        for col in range(4):
            n = 1 + row * 4 + col
            for k, w in enumerate(omega):
                table[0, n, [k, quarter + k, 2 * quarter + k, 3 * quarter + k]] = [
                    np.sin(col * w),
                    np.cos(col * w),
                    np.sin(row * w),
                    np.cos(row * w),
                ]
    expected = numpy_vit.forward(
        original_params(sincos), images, patch_size=8, num_heads=4, position_embeddings=table
    )
    np.testing.assert_allclose(sincos(images), expected["logits"], atol=1e-5, rtol=1e-5)
    expected = numpy_vit.forward(original_params(none), images, patch_size=8, num_heads=4)
    np.testing.assert_allclose(none(images), expected["logits"], atol=1e-5, rtol=1e-5)


def test_inputs_in_minus_one_to_one(tiny_config):
    scaled = build(tiny_config, include_rescaling=False)
    raw = build(tiny_config)
    raw.set_weights(randomize(scaled).get_weights())
    images = random_images()
    np.testing.assert_allclose(scaled(images / 127.5 - 1), raw(images), atol=1e-5)


def test_fresh_head_is_zero(tiny_config):
    model = build(tiny_config)
    assert not np.any(model.get_layer("head").kernel.numpy())
    np.testing.assert_array_equal(model(random_images()), np.zeros((2, 7)))


def test_without_top_returns_pooled(tiny_config):
    model = build(tiny_config, include_top=False, representation_size=24)
    assert model(random_images()).shape == (2, 24)
    assert "head" not in [layer.name for layer in model.layers]


VIT_DEFAULTS = {
    key: parameter.default
    for key, parameter in inspect.signature(keras_vit.ViT).parameters.items()
    if parameter.default is not inspect.Parameter.empty
}


def parameter_count(**config):
    """The number of weights of a plain ViT (square images, learned position
    embeddings) with `ViT(**config)`'s arguments, from the paper's definitions."""
    config = {**VIT_DEFAULTS, **config}
    d, mlp, classes = config["hidden_dim"], config["mlp_dim"], config["num_classes"]
    grid = (config["image_size"] // config["patch_size"]) ** 2
    prefix = (config["pooling"] == "token") + config["distilled"]  # tokens with a position embedding
    block = 2 * 2 * d + 4 * (d * d + d) + (d * mlp + mlp) + (mlp * d + d)  # 2 LayerNorms, attention, MLP
    count = config["patch_size"] ** 2 * 3 * d + d + prefix * d + (grid + prefix) * d
    count += config["num_registers"] * d + config["num_layers"] * block + 2 * d  # the final LayerNorm
    width = config["representation_size"] or d
    if config["representation_size"]:
        count += d * width + width
    return count + (1 + config["distilled"]) * (width * classes + classes)


@pytest.mark.parametrize(
    "preset, count",
    [
        ("vit_ti16", 5_717_416),
        ("vit_s16", 22_050_664),
        ("vit_b16", 86_567_656),
        ("vit_l16", 304_326_632),
        ("vit_h14", 632_045_800),
        # timm's counts for its deit_*_patch16_224 and deit_*_distilled_patch16_224.
        ("deit_ti16", 5_717_416),
        ("deit_s16", 22_050_664),
        ("deit_b16", 86_567_656),
        ("deit_ti16_distilled", 5_910_800),
        ("deit_s16_distilled", 22_436_432),
        ("deit_b16_distilled", 87_338_192),
    ],
)
def test_parameter_counts(preset, count):
    """The presets' reference counts, by the formula (building ViT-H/14 only to count would take
    seconds and gigabytes); the formula itself is checked against built models below."""
    assert parameter_count(**preset_config(preset)) == count


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        dict(pooling="gap"),
        dict(distilled=True, num_registers=3),
        dict(representation_size=24, num_classes=5),
        dict(image_size=48, patch_size=4, num_layers=3),
    ],
)
def test_parameter_count_formula_matches_built_models(tiny_config, overrides):
    assert build(tiny_config, **overrides).count_params() == parameter_count(**{**tiny_config, **overrides})


def test_parameter_count_of_a_built_preset():
    count = keras_vit.ViT.from_preset("vit_ti16").count_params()
    assert count == parameter_count(**preset_config("vit_ti16")) == 5_717_416


def test_presets_and_overrides():
    assert keras_vit.list_presets() == [
        "vit_ti16",
        "vit_s16",
        "vit_s32",
        "vit_b8",
        "vit_b16",
        "vit_b32",
        "vit_l16",
        "vit_l32",
        "vit_h14",
        "r_vit_ti16",
        "r26_vit_s32",
        "r50_vit_b16",
        "deit_ti16",
        "deit_s16",
        "deit_b16",
        "deit_ti16_distilled",
        "deit_s16_distilled",
        "deit_b16_distilled",
    ]
    model = keras_vit.ViT.from_preset("vit_s32", image_size=64, num_layers=2, num_classes=10)
    assert (model.name, model.hidden_dim, model.num_layers, model.patch_size) == ("vit_s32", 384, 2, 32)
    assert model.get_layer("position_embedding").embeddings.shape == (1, 5, 384)
    assert model.output_shape == (None, 10)


def test_drop_path_rates_increase_linearly(tiny_config):
    model = build(tiny_config, num_layers=5, drop_path_rate=0.2)
    rates = [model.get_layer(f"encoderblock_{i}").drop_path_rate for i in range(5)]
    np.testing.assert_allclose(rates, [0.0, 0.05, 0.1, 0.15, 0.2])


def test_mixed_precision_keeps_logits_float32(tiny_config):
    model = build(tiny_config, dtype="mixed_bfloat16")
    assert model.get_layer("encoderblock_0").compute_dtype == "bfloat16"
    assert keras.backend.standardize_dtype(model(random_images()).dtype) == "float32"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(image_size=225, patch_size=16), "image_size 225 (height) is not divisible by patch_size 16"),
        (dict(image_size=(32, 36)), "image_size 36 (width) is not divisible by patch_size 8"),
        (dict(hidden_dim=30), "hidden_dim 30 is not divisible by num_heads 4"),
        (dict(pooling="max"), "Unknown pooling 'max'; expected one of ('token', 'gap')"),
        (dict(position_embedding="rope"), "Unknown position_embedding 'rope'"),
        (dict(image_size="big"), "image_size must be an int or (height, width), got 'big'"),
        (dict(num_layers=0), "num_layers must be a positive int, got 0"),
        (dict(dropout_rate=1.5), "dropout_rate must be in [0, 1), got 1.5"),
        (dict(distilled=True, pooling="gap"), "distilled=True (DeiT) needs pooling='token'"),
        (dict(final_norm="both"), "Unknown final_norm 'both'; expected one of ('tokens', 'pooled')"),
        (dict(num_registers=-1), "num_registers must be an int >= 0, got -1"),
        (dict(image_std=(0.5, 0.0, 0.5)), "image_std must be 3 positive numbers"),
        (dict(image_mean=0.5), "image_mean must be 3 numbers (RGB, pixels in [0, 1] units), got 0.5"),
        (dict(image_size=None), "image_size=None with learned position embeddings needs position_grid_size"),
        (dict(position_grid_size=(4, 4)), "position_grid_size=(4, 4) is for image_size=None"),
        (
            dict(image_size=None, position_grid_size=(4, 4), patch_dropout_rate=0.5),
            "patch_dropout_rate needs a fixed image_size",
        ),
    ],
)
def test_bad_config_errors(tiny_config, overrides, message):
    with pytest.raises(ValueError) as error:
        build(tiny_config, **overrides)
    assert message in str(error.value)


def test_bad_preset_errors():
    with pytest.raises(ValueError, match="Unknown preset 'vit_x16'; expected one of vit_ti16, vit_s16"):
        keras_vit.ViT.from_preset("vit_x16")
    with pytest.raises(ValueError, match="Unknown ViT argument.s. hiden_dim"):
        keras_vit.ViT.from_preset("vit_ti16", hiden_dim=8)


@pytest.mark.parametrize("shape", [(1, 32, 32, 1), (1, 48, 32, 3), (32, 32, 3)])
def test_bad_image_shape_errors(tiny_config, shape):
    model = build(tiny_config)
    with pytest.raises(ValueError, match=r"expects images of shape \(batch, 32, 32, 3\), got"):
        model.predict(np.zeros(shape, "float32"), verbose=0)


def test_accepts_nested_lists(tiny_config):
    model = randomize(build(tiny_config))
    images = random_images()
    np.testing.assert_allclose(model(images.tolist()), model(images), atol=1e-6)
    with pytest.raises(ValueError, match=r"expects images of shape \(batch, 32, 32, 3\), got \(2, 32, 3\)"):
        model(images[:, 0].tolist())


def test_feature_extractor_rejects_unknown_output(tiny_config):
    with pytest.raises(ValueError, match="Unknown feature output"):
        build(tiny_config).feature_extractor(["attn"])
    with pytest.raises(ValueError, match="Unknown feature output"):
        build(tiny_config, include_top=False).feature_extractor(["logits"])


def test_runs_under_xla(tiny_config):
    model = randomize(build(tiny_config))
    images = random_images()
    model.compile(jit_compile=True)
    np.testing.assert_allclose(model.predict(images, verbose=0), model(images), atol=1e-5)


@pytest.mark.trains
def test_trains(tiny_config):
    model = build(tiny_config, dropout_rate=0.1, attention_dropout_rate=0.1, drop_path_rate=0.1)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    images, labels = random_images(batch=16), np.arange(16) % 7
    losses = model.fit(images, labels, epochs=8, batch_size=8, verbose=0).history["loss"]
    assert losses[-1] < losses[0]


@pytest.mark.trains
def test_model_with_patch_dropout_is_unchanged_at_inference_and_trains(tiny_config):
    plain = randomize(keras_vit.ViT(**tiny_config))
    model = keras_vit.ViT(**tiny_config, patch_dropout_rate=0.5)
    model.set_weights(plain.get_weights())  # the layer has no weights
    images = random_images()
    np.testing.assert_allclose(*map(keras.ops.convert_to_numpy, (model(images), plain(images))), atol=1e-6)
    assert model.forward_features(images).shape == (2, 17, 32)
    features = model.feature_extractor(["tokens"])
    assert features(images, training=True)["tokens"].shape == (2, 1 + 8, 32)
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    loss = model.fit(images, np.array([1, 2]), epochs=1, verbose=0).history["loss"][0]
    assert np.isfinite(loss)
    again = keras_vit.ViT.from_config(model.get_config())
    assert again.get_layer("patch_dropout").rate == 0.5


def test_distilled_logits_are_the_mean_of_both_heads(tiny_config):
    model = randomize(build(tiny_config, distilled=True))
    assert model.num_prefix_tokens == 2
    assert model.get_layer("position_embedding").embeddings.shape == (1, 2 + 16, 32)
    images = random_images()
    features = model.feature_extractor(["tokens", "logits", "class_logits", "distillation_logits"])(images)
    tokens = keras.ops.convert_to_numpy(features["tokens"])
    head, distillation_head = model.get_layer("head"), model.get_layer("distillation_head")
    class_logits = tokens[:, 0] @ keras.ops.convert_to_numpy(head.kernel) + keras.ops.convert_to_numpy(
        head.bias
    )
    distillation_logits = tokens[:, 1] @ keras.ops.convert_to_numpy(
        distillation_head.kernel
    ) + keras.ops.convert_to_numpy(distillation_head.bias)
    assert not np.abs(class_logits - distillation_logits).max() <= 0.1  # two different heads
    np.testing.assert_allclose(features["class_logits"], class_logits, atol=1e-5)
    np.testing.assert_allclose(features["distillation_logits"], distillation_logits, atol=1e-5)
    np.testing.assert_allclose(model(images), (class_logits + distillation_logits) / 2, atol=1e-5)
    np.testing.assert_allclose(model.forward_head(features["tokens"]), model(images), atol=1e-5)
    pooled = model.forward_head(features["tokens"], pre_logits=True)
    np.testing.assert_allclose(pooled, (tokens[:, 0] + tokens[:, 1]) / 2, atol=1e-6)
    with pytest.raises(ValueError, match="Unknown feature output"):
        build(tiny_config).feature_extractor(["class_logits"])


def test_registers_get_no_position_embedding_and_are_not_pooled(tiny_config):
    model = randomize(build(tiny_config, pooling="gap", num_registers=3, final_norm="pooled"))
    assert model.num_prefix_tokens == 3
    assert model.get_layer("position_embedding").embeddings.shape == (1, 16, 32)
    assert "encoder_norm" not in [layer.name for layer in model.layers]
    images = random_images()
    tokens = model.forward_features(images)
    assert tokens.shape == (2, 3 + 16, 32)
    pooled_norm = model.get_layer("pooled_norm")
    expected = pooled_norm(keras.ops.mean(tokens[:, 3:], axis=1))
    np.testing.assert_allclose(model.forward_head(tokens, pre_logits=True), expected, atol=1e-6)
    # The registers' values change the output: they take part in attention.
    registers = model.get_layer("registers").tokens
    before = keras.ops.convert_to_numpy(model(images))
    registers.assign(registers * 0 + 1.0)
    assert not np.abs(keras.ops.convert_to_numpy(model(images)) - before).max() <= 1e-3


def test_image_mean_and_std_normalise_inside(tiny_config):
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    model = randomize(build(tiny_config, image_mean=mean, image_std=std))
    outside = build(tiny_config, image_mean=mean, image_std=std, include_rescaling=False)
    outside.set_weights(model.get_weights())
    images = random_images()
    normalised = (images / 255.0 - np.array(mean)) / np.array(std)
    np.testing.assert_allclose(model(images), outside(normalised.astype("float32")), atol=1e-5)
    assert outside.get_config()["image_mean"] == list(mean)
    # The default is the original [-1, 1].
    assert build(tiny_config).get_layer("rescaling").get_config()["scale"] == 1 / 127.5


CALL_TIME_SIZES = [(48, 48), (40, 24), (16, 64)]


@pytest.mark.parametrize("resize_method", ["bilinear", "bicubic"])
def test_call_time_size_matches_load_time_size(tiny_config, tmp_path, resize_method):
    model = randomize(build(tiny_config, distilled=True, num_registers=2))
    model.save_to_preset(tmp_path / "preset")
    any_size = keras_vit.ViT.from_preset(tmp_path / "preset", image_size=None, resize_method=resize_method)
    assert any_size.image_size is None and any_size.position_grid_size == (4, 4)
    for size in CALL_TIME_SIZES:
        fixed = keras_vit.ViT.from_preset(tmp_path / "preset", image_size=size, resize_method=resize_method)
        images = random_images(size=size)
        expected = keras.ops.convert_to_numpy(fixed(images))
        assert np.isfinite(expected).all() and np.ptp(expected) > 0.1
        np.testing.assert_allclose(any_size(images), expected, atol=1e-5)
    np.testing.assert_allclose(any_size(random_images()), model(random_images()), atol=1e-5)
    with pytest.raises(ValueError, match=r"with height and width multiples of 8, got \(2, 36, 32, 3\)"):
        any_size(np.zeros((2, 36, 32, 3), "float32"))


def test_call_time_size_of_a_hybrid_and_of_sincos(tiny_config, tmp_path):
    from helpers import HYBRID

    hybrid = randomize(keras_vit.ViT(**HYBRID))
    hybrid.save_to_preset(tmp_path / "hybrid")
    any_size = keras_vit.ViT.from_preset(tmp_path / "hybrid", image_size=None)
    fixed = keras_vit.ViT.from_preset(tmp_path / "hybrid", image_size=(16, 64))
    images = random_images(size=(16, 64))
    np.testing.assert_allclose(any_size(images), fixed(images), atol=1e-5)
    sincos = randomize(build(tiny_config, image_size=(40, 24), position_embedding="sincos2d"))
    any_size = build(tiny_config, image_size=None, position_embedding="sincos2d")
    any_size.set_weights(sincos.get_weights())
    images = random_images(size=(40, 24))
    np.testing.assert_allclose(any_size(images), sincos(images), atol=1e-5)
