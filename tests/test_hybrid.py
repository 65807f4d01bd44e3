"""Hybrid ViT (ResNet stem + Transformer): preset sizes; the forward pass and
attention maps against an independent NumPy reference; weight names; original
and timm checkpoints, and the ones refused; the .keras round trip; a training
step; config errors; export to TFLite and ONNX through keras_vit.export."""

import keras
import numpy as np
import numpy_resnet
import pytest
from checkpoint_writers import random_params, random_resnet_params, write_original, write_timm
from helpers import HYBRID, original_params, original_resnet_params, random_images, randomize

import keras_vit
from keras_vit import checkpoints, presets

TOL = dict(atol=2e-5, rtol=2e-5)
STEM_ONLY = dict(HYBRID, resnet_layers=(), patch_size=2)
# The smallest hybrid worth exporting: the root (stride 4) of a 16x16 image, 16 tokens.
EXPORT = dict(STEM_ONLY, image_size=16, patch_size=1)


def reference(model, images, **kwargs):
    params = {**original_params(model), **original_resnet_params(model)}
    return numpy_resnet.forward(
        params, images, patch_size=model.patch_size, num_heads=model.num_heads, **kwargs
    )


@pytest.mark.parametrize(
    ("name", "image_size", "count"),
    [
        pytest.param("r50_vit_b16", 224, 98_659_112, marks=pytest.mark.slow),
        pytest.param("r50_vit_b16", 384, 98_950_952, marks=pytest.mark.slow),
        pytest.param("r26_vit_s32", 224, 36_431_912, marks=pytest.mark.slow),
        ("r_vit_ti16", 224, 6_337_704),
    ],
)
def test_preset_parameter_counts(name, image_size, count):
    assert keras_vit.ViT.from_preset(name, image_size=image_size).count_params() == count


@pytest.mark.parametrize("config", [HYBRID, STEM_ONLY], ids=["stages", "root_only"])
def test_random_weights_match_reference(config):
    model = randomize(keras_vit.ViT(**config))
    images = random_images()
    np.testing.assert_allclose(model(images), reference(model, images)["logits"], **TOL)


def test_weight_paths_follow_the_original_names():
    model = keras_vit.ViT(**HYBRID)
    paths = {w.path for w in model.weights}
    assert {
        "resnet/conv_root/kernel",
        "resnet/gn_root/gamma",
        "resnet/block1/unit1/conv_proj/kernel",
        "resnet/block1/unit2/gn3/beta",
        "resnet/block2/unit1/gn_proj/gamma",
    } <= paths
    assert "resnet/block1/unit2/conv_proj/kernel" not in paths  # same shape: identity shortcut
    assert tuple(model.get_layer("embedding").kernel.shape) == (1, 1, 256, 32)
    assert tuple(model.get_layer("position_embedding").embeddings.shape) == (1, 17, 32)


def test_attention_maps_and_features_match_reference():
    model = randomize(keras_vit.ViT(**HYBRID))
    images = random_images()
    features = model.feature_extractor(("attention", "tokens"))(images)
    expected = reference(model, images)
    assert len(features["attention"]) == 2
    for got, want in zip(features["attention"], expected["attention"]):
        np.testing.assert_allclose(got, want, **TOL)
    np.testing.assert_allclose(features["tokens"], expected["tokens"], **TOL)


def hybrid_checkpoint(stages=(2, 1), patch=1, grid=4, representation=None):
    stem, channels = random_resnet_params(stages=stages)
    params = random_params(patch=patch, grid=grid, channels=channels, representation=representation)
    return {**stem, **params}


@pytest.fixture
def hybrid_preset(monkeypatch):
    arch = {k: v for k, v in HYBRID.items() if k not in ("image_size", "num_classes")}
    monkeypatch.setitem(presets.PRESETS, "hybrid_test", arch)
    return "hybrid_test"


def test_original_checkpoint_matches_reference(tmp_path, hybrid_preset):
    params = hybrid_checkpoint(representation=24)
    path = write_original(params, str(tmp_path / "R50+ViT-test.npz"))
    model = keras_vit.ViT.from_preset(hybrid_preset, weights=path)
    assert model.resnet_layers == (2, 1) and model.resnet_width == 0.5 and model.image_size == (32, 32)
    images = random_images()
    expected = numpy_resnet.forward(params, images, patch_size=1, num_heads=4)["logits"]
    np.testing.assert_allclose(model(images), expected, **TOL)


def test_original_checkpoint_without_preset_infers_the_stem(tmp_path):
    params = hybrid_checkpoint(stages=(), patch=2)
    path = write_original(params, str(tmp_path / "R_Ti-test.npz"))
    checkpoint = checkpoints.read_checkpoint(path)
    assert checkpoint.config["resnet_layers"] == () and checkpoint.config["image_size"] == 32
    model = checkpoints.assign(keras_vit.ViT(**checkpoint.config), checkpoint)
    images = random_images()
    expected = numpy_resnet.forward(params, images, patch_size=2, num_heads=4)["logits"]
    np.testing.assert_allclose(model(images), expected, **TOL)


def test_timm_checkpoint_matches_reference(tmp_path, hybrid_preset):
    params = hybrid_checkpoint()
    path = write_timm(params, str(tmp_path / "model.safetensors"))
    model = keras_vit.ViT.from_preset(hybrid_preset, weights=path)
    images = random_images()
    expected = numpy_resnet.forward(params, images, patch_size=1, num_heads=4, gelu_approximate=False)[
        "logits"
    ]
    np.testing.assert_allclose(model(images), expected, **TOL)


def test_strict_loading_names_a_missing_stem_unit(tmp_path):
    params = hybrid_checkpoint()
    del params["block1/unit2/gn1/scale"]
    path = write_original(params, str(tmp_path / "broken.npz"))
    checkpoint = checkpoints.read_checkpoint(path)
    with pytest.raises(ValueError, match="resnet/block1/unit2/gn1/gamma"):
        checkpoints.assign(keras_vit.ViT(**checkpoint.config), checkpoint)


def test_plain_checkpoint_into_hybrid_preset_is_refused(tmp_path, hybrid_preset):
    path = write_original(random_params(patch=1, grid=4), str(tmp_path / "ViT.npz"))
    with pytest.raises(
        ValueError, match=r"resnet_layers=None, but preset 'hybrid_test' has resnet_layers=\(2, 1\)"
    ):
        keras_vit.ViT.from_preset(hybrid_preset, weights=path)


def test_keras_file_round_trip(tmp_path):
    model = randomize(keras_vit.ViT(**HYBRID))
    path = tmp_path / "hybrid.keras"
    model.save(path)
    loaded = keras.models.load_model(path)  # safe mode, no custom_objects
    assert loaded.get_config() == model.get_config()
    images = random_images()
    np.testing.assert_array_equal(loaded(images), model(images))


@pytest.mark.trains
def test_training_step_changes_the_stem():
    model = keras_vit.ViT(**HYBRID)
    model.compile(
        optimizer=keras.optimizers.SGD(0.1), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    images, labels = random_images(batch=4), np.arange(4) % 7
    before = model.get_layer("resnet").conv_root.kernel.numpy()
    model.fit(images, labels, batch_size=4, epochs=2, verbose=0)  # the head starts at zero: 2 steps
    after = model.get_layer("resnet").conv_root.kernel.numpy()
    assert np.isfinite(after).all() and not np.allclose(after, before)  # `not allclose` alone passes NaN


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(resnet_layers=(3, 0)), "resnet_layers must be None"),
        (dict(resnet_layers="3,4,9"), "resnet_layers must be None"),
        (dict(resnet_width=0.3), "resnet_width must make a root width"),
        (dict(image_size=40, patch_size=4), r"feature map of \(5, 5\).*multiple of 32"),
    ],
)
def test_invalid_hybrid_config(overrides, message):
    with pytest.raises(ValueError, match=message):
        keras_vit.ViT(**{**HYBRID, **overrides})


@pytest.mark.e2e
@pytest.mark.tensorflow
def test_export_to_tflite_builtins_and_onnx(tmp_path):
    """Through the project's export (each file verified in its own runtime):
    the stem's convolution, pool and GroupNorm as TFLite builtins, and ONNX."""
    model = randomize(keras_vit.ViT(**EXPORT))  # the head too: the logits depend on the image
    images = random_images(batch=4, size=model.image_size)
    assert np.ptp(np.asarray(model(images))) > 0.1

    from keras_vit import export

    report = export.export_model(
        model, str(tmp_path), formats=("tflite", "onnx"), quantize=("fp32",), verify_images=images
    )
    assert report["verify_images"] == dict(count=4, source="given")
    files = {row["file"]: row for row in report["files"]}
    assert set(files) == {"model_fp32.tflite", "model.onnx"}
    for row in files.values():
        assert row["failures"] == [], row
        assert np.isfinite(row["max_abs_diff"]) and row["max_abs_diff"] <= row["tolerance"], row
        assert row["max_abs_diff"] <= 2e-5, row  # the bound this test held fp32 files to before
    ops = set(files["model_fp32.tflite"]["ops"])
    assert {"CONV_2D", "MAX_POOL_2D", "RSQRT"} <= ops  # the stem's convolution, pool and GroupNorm
    assert not any(op.startswith("Flex") or op == "CUSTOM" for op in ops), ops
