"""Checkpoints in every layout load to the logits of an independent NumPy forward pass."""

import functools
import http.server
import os
import threading

import numpy as np
import numpy_vit
import pytest
import scipy.ndimage
from checkpoint_writers import (
    POSEMB,
    random_distilled_params,
    random_params,
    random_register_params,
    write_big_vision,
    write_hf,
    write_original,
    write_timm,
)
from helpers import random_images

import keras_vit
from keras_vit import checkpoints, convert, presets

ARCH = dict(patch_size=8, hidden_dim=32, mlp_dim=64, num_heads=4, num_layers=2)
TOL = dict(atol=1e-5, rtol=1e-5)
# DeiT's preprocessing and GELU, as the deit_* presets have them.
DEIT = dict(gelu_approximate=False, image_mean=(0.485, 0.456, 0.406), image_std=(0.229, 0.224, 0.225))
LIMIT = 5e-5  # max |Δ| of the float32 model against the float64 reference


@pytest.fixture(autouse=True)
def tiny_preset(monkeypatch, tmp_path):
    monkeypatch.setitem(presets.PRESETS, "vit_test", ARCH)
    monkeypatch.setitem(presets.PRESETS, "deit_test", dict(ARCH, distilled=True, **DEIT))  # deit_*_distilled
    monkeypatch.setenv("KERAS_VIT_HOME", str(tmp_path / "home"))


def reference(params, images, **kwargs):
    return numpy_vit.forward(params, images, patch_size=8, num_heads=4, **kwargs)


def assert_max_diff(got, expected, limit=LIMIT):
    """Asserts max |got - expected| <= limit; prints it (`pytest -s` shows the margin)."""
    diff = float(np.max(np.abs(np.asarray(got, np.float64) - expected)))
    print(f"max |Δ| {diff:.2e} (limit {limit:.0e})")
    assert diff <= limit, f"max |Δ| {diff:.2e} > {limit:.0e}"


def zoomed(posemb, num_prefix_tokens, grid, target):
    """The original resize rule: scipy.ndimage.zoom(order=1) of the `grid`
    part of `posemb` `(1, P + h * w, D)` to `target`, the P prefix entries kept."""
    hidden = posemb.shape[-1]
    patches = posemb[0, num_prefix_tokens:].reshape(*grid, hidden).astype(np.float64)
    patches = scipy.ndimage.zoom(patches, (target[0] / grid[0], target[1] / grid[1], 1), order=1)
    return np.concatenate([posemb[:, :num_prefix_tokens], patches.reshape(1, -1, hidden)], axis=1)


def without_head(params):
    return {k: v for k, v in params.items() if not k.startswith("head/")}


# layout: (writer, representation size, reference kwargs)
LAYOUTS = {
    "original": (write_original, None, {}),
    "original_pre_logits": (write_original, 24, {}),
    "big_vision": (write_big_vision, None, {}),
    "big_vision_scan": (functools.partial(write_big_vision, scan=True), 24, {}),
    "timm": (write_timm, None, dict(gelu_approximate=False)),
    "timm_pre_logits": (write_timm, 24, dict(gelu_approximate=False)),
    "hf": (write_hf, None, dict(gelu_approximate=False, layer_norm_epsilon=1e-12)),
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layouts_match_reference(layout, tmp_path):
    writer, representation, kwargs = LAYOUTS[layout]
    params = random_params(representation=representation)
    suffix = ".safetensors" if layout.startswith(("timm", "hf")) else ".npz"
    path = writer(params, str(tmp_path / f"ckpt{suffix}"))
    model = keras_vit.ViT.from_preset("vit_test", weights=path)
    assert model.image_size == (32, 32) and model.num_classes == 7
    assert model.representation_size == representation
    images = random_images()
    np.testing.assert_allclose(model(images), reference(params, images, **kwargs)["logits"], **TOL)


def test_hf_model_without_head_with_pooler(tmp_path):
    params = random_params(representation=32)
    path = write_hf(without_head(params), str(tmp_path / "model.safetensors"), prefix="")
    model = keras_vit.ViT.from_preset("vit_test", weights=str(tmp_path))  # an HF model folder
    assert not model.include_top
    images = random_images()
    expected = reference(params, images, gelu_approximate=False, layer_norm_epsilon=1e-12)["pooled"]
    np.testing.assert_allclose(model(images), expected, **TOL)
    assert os.path.exists(path)


@pytest.mark.parametrize("image_size", [48, (48, 64)])
def test_other_image_size_resizes_like_the_original(image_size, tmp_path):
    params = random_params()
    path = write_original(params, str(tmp_path / "ckpt.npz"))
    model = keras_vit.ViT.from_preset("vit_test", weights=path, image_size=image_size)
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    resized = {**params, POSEMB: zoomed(params[POSEMB], 1, (4, 4), (h // 8, w // 8))}
    images = random_images(size=(h, w))
    np.testing.assert_allclose(model(images), reference(resized, images)["logits"], **TOL)


def test_other_num_classes_gives_fresh_zero_head(tmp_path):
    params = random_params(representation=24)
    path = write_original(params, str(tmp_path / "ckpt.npz"))
    model = keras_vit.ViT.from_preset("vit_test", weights=path, num_classes=5)
    head = model.get_layer("head")
    assert head.kernel.shape == (24, 5) and not np.any(head.kernel.numpy()) and not np.any(head.bias.numpy())
    images = random_images()
    got = model.feature_extractor(["pooled", "logits"])(images)
    np.testing.assert_allclose(got["pooled"], reference(params, images)["pooled"], **TOL)
    np.testing.assert_array_equal(got["logits"], np.zeros((2, 5)))


def test_without_top_and_without_pre_logits(tmp_path):
    params = random_params(representation=24)
    path = write_original(params, str(tmp_path / "ckpt.npz"))
    images = random_images()
    kept = keras_vit.ViT.from_preset("vit_test", weights=path, include_top=False)
    np.testing.assert_allclose(kept(images), reference(params, images)["pooled"], **TOL)
    dropped = keras_vit.ViT.from_preset("vit_test", weights=path, include_top=False, representation_size=None)
    no_pre_logits = {k: v for k, v in without_head(params).items() if not k.startswith("pre_logits/")}
    np.testing.assert_allclose(dropped(images), reference(no_pre_logits, images)["pooled"], **TOL)
    with pytest.raises(ValueError, match="head was trained on pre_logits"):
        keras_vit.ViT.from_preset("vit_test", weights=path, representation_size=None)


def test_preset_folder_and_keras_file(tmp_path):
    params = random_params()
    path = write_original(params, str(tmp_path / "ckpt.npz"))
    model = keras_vit.ViT.from_preset("vit_test", weights=path)
    images = random_images()
    expected = reference(params, images)["logits"]
    model.save_to_preset(str(tmp_path / "preset"))
    model.save(str(tmp_path / "model.keras"))
    for loaded in (
        keras_vit.ViT.from_preset(str(tmp_path / "preset")),
        keras_vit.ViT.from_preset("vit_test", weights=str(tmp_path / "preset")),
        keras_vit.ViT.from_preset("vit_test", weights=str(tmp_path / "model.keras")),
    ):
        np.testing.assert_allclose(loaded(images), expected, **TOL)
    bigger = keras_vit.ViT.from_preset(str(tmp_path / "preset"), image_size=48, num_classes=3)
    assert bigger.get_layer("position_embedding").embeddings.shape == (1, 37, 32)


@pytest.mark.parametrize("layout", ["original", "timm", "keras", "preset"])
def test_overrides_that_match_the_checkpoint_are_taken(tmp_path, layout):
    """Another preset's architecture, overridden to the checkpoint's, loads."""
    params = random_params()
    if layout in ("keras", "preset"):
        model = keras_vit.ViT.from_preset("vit_test", weights=write_original(params, str(tmp_path / "c.npz")))
        path = str(tmp_path / ("model.keras" if layout == "keras" else "preset"))
        model.save(path) if layout == "keras" else model.save_to_preset(path)
    else:
        writer = write_original if layout == "original" else write_timm
        path = writer(params, str(tmp_path / ("c.npz" if layout == "original" else "c.safetensors")))
    model = keras_vit.ViT.from_preset("vit_ti16", weights=path, **ARCH)
    images = random_images(size=(32, 32))
    expected = reference(params, images, gelu_approximate=layout != "timm")["logits"]
    np.testing.assert_allclose(model(images), expected, **TOL)


def test_strict_errors_name_the_keys(tmp_path):
    params = random_params()
    extra = write_original(
        {**params, "MAPHead_0/probe": np.zeros((1, 1, 32), np.float32)}, str(tmp_path / "extra.npz")
    )
    with pytest.raises(ValueError, match="does not use: MAPHead_0/probe"):
        keras_vit.ViT.from_preset("vit_test", weights=extra)
    missing = dict(params)
    del missing["Transformer/encoderblock_1/LayerNorm_2/bias"]
    missing = write_original(missing, str(tmp_path / "missing.npz"))
    with pytest.raises(ValueError, match="does not set: encoderblock_1/mlp_norm/beta"):
        keras_vit.ViT.from_preset("vit_test", weights=missing)
    path = write_original(params, str(tmp_path / "ckpt.npz"))
    with pytest.raises(
        ValueError, match="has patch_size=8, but preset 'vit_b16' has patch_size=16.*vit_test"
    ):
        keras_vit.ViT.from_preset("vit_b16", weights=path)
    with pytest.raises(ValueError, match="has patch_size=8, but patch_size=16 was passed"):
        keras_vit.ViT.from_preset("vit_test", weights=path, patch_size=16)
    with pytest.raises(ValueError, match="has mlp_dim=64, but mlp_dim=48 was passed"):
        keras_vit.ViT.from_preset("vit_test", weights=path, mlp_dim=48)
    no_posemb = write_original({k: v for k, v in params.items() if k != POSEMB}, str(tmp_path / "sincos.npz"))
    with pytest.raises(ValueError, match="position_embedding='sincos2d'"):
        keras_vit.ViT.from_preset("vit_test", weights=no_posemb)
    with pytest.raises(ValueError, match="neither an existing path nor a named source"):
        keras_vit.ViT.from_preset("vit_test", weights="imagenet21k")


# DeiT distilled in timm's names, and in HF's DeiTForImageClassificationWithTeacher (LayerNorm epsilon 1e-12).
DISTILLED = {
    "timm": (write_timm, 1e-6),
    "hf": (functools.partial(write_hf, prefix="deit."), 1e-12),
}


@pytest.mark.parametrize("layout", DISTILLED)
def test_distilled_deit_matches_reference(layout, tmp_path):
    writer, epsilon = DISTILLED[layout]
    params = random_distilled_params()
    path = writer(params, str(tmp_path / "ckpt.safetensors"))
    model = keras_vit.ViT.from_preset("deit_test", weights=path)
    assert model.distilled and model.num_classes == 7 and model.image_mean == DEIT["image_mean"]
    images = random_images()
    expected = reference(params, images, layer_norm_epsilon=epsilon, **DEIT)
    assert_max_diff(model(images), expected["logits"])
    features = model.feature_extractor(("pooled", "class_logits", "distillation_logits"))(images)
    for name, got in features.items():
        assert_max_diff(got, expected[name])


def test_distilled_deit_other_size_and_classes(tmp_path):
    """Both prefix tokens keep their position embeddings; both heads are fresh."""
    params = random_distilled_params()
    path = write_timm(params, str(tmp_path / "ckpt.safetensors"))
    model = keras_vit.ViT.from_preset("deit_test", weights=path, image_size=48, num_classes=5)
    for name in ("head", "distillation_head"):
        kernel = model.get_layer(name).kernel
        assert kernel.shape == (32, 5) and not np.any(kernel.numpy())
    resized = {**params, POSEMB: zoomed(params[POSEMB], 2, (4, 4), (6, 6))}
    images = random_images(size=(48, 48))
    got = model.feature_extractor(("tokens", "logits"))(images)
    assert_max_diff(got["tokens"], reference(resized, images, **DEIT)["tokens"])
    np.testing.assert_array_equal(got["logits"], np.zeros((2, 5)))


@pytest.mark.parametrize("image_size", [32, 48])
def test_timm_registers_gap_matches_reference(image_size, tmp_path):
    """timm's `*_reg4_gap_*`: registers, pooling and final norm come from the checkpoint."""
    params = random_register_params(registers=4)
    path = write_timm(params, str(tmp_path / "ckpt.safetensors"))
    model = keras_vit.ViT.from_preset("vit_test", weights=path, image_size=image_size)
    assert (model.num_registers, model.pooling, model.final_norm) == (4, "gap", "pooled")
    grid = image_size // 8
    resized = {**params, POSEMB: zoomed(params[POSEMB], 0, (4, 4), (grid, grid))}
    images = random_images(size=(image_size, image_size))
    expected = reference(resized, images, pooling="gap", gelu_approximate=False)
    got = model.feature_extractor(("pooled", "logits"))(images)
    assert_max_diff(got["pooled"], expected["pooled"])
    assert_max_diff(got["logits"], expected["logits"])


def test_distillation_and_registers_strict_errors(tmp_path):
    params = random_distilled_params()
    no_token = write_timm(
        {k: v for k, v in params.items() if k != "dist"}, str(tmp_path / "no_token.safetensors")
    )
    with pytest.raises(
        ValueError, match=r"does not set: distillation_token/token\n\(the checkpoint has no distillation"
    ):
        keras_vit.ViT.from_preset("deit_test", weights=no_token)
    no_head = write_timm(
        {k: v for k, v in params.items() if not k.startswith("head_dist/")},
        str(tmp_path / "no_head.safetensors"),
    )
    with pytest.raises(ValueError, match="does not set: distillation_head/bias, distillation_head/kernel"):
        keras_vit.ViT.from_preset("deit_test", weights=no_head)
    distilled = write_timm(params, str(tmp_path / "distilled.safetensors"))
    with pytest.raises(ValueError, match="has distilled=True, but distilled=False was passed.*deit_test"):
        keras_vit.ViT.from_preset("vit_test", weights=distilled, distilled=False)
    plain = write_timm(random_params(), str(tmp_path / "plain.safetensors"))
    with pytest.raises(
        ValueError, match="has distilled=False, but preset 'deit_test' has distilled=True.*vit_test"
    ):
        keras_vit.ViT.from_preset("deit_test", weights=plain)
    registers = write_timm(random_register_params(registers=4), str(tmp_path / "registers.safetensors"))
    with pytest.raises(ValueError, match="has num_registers=4, but num_registers=2 was passed"):
        keras_vit.ViT.from_preset("vit_test", weights=registers, num_registers=2)


def test_corrupt_files_are_clear_errors(tmp_path):
    params = random_params()
    for name, writer in (("ckpt.npz", write_original), ("ckpt.safetensors", write_timm)):
        path = writer(params, str(tmp_path / name))
        data = open(path, "rb").read()
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2])
        with pytest.raises(ValueError, match="truncated, corrupt"):
            keras_vit.ViT.from_preset("vit_test", weights=path)


def test_convert_cli(tmp_path, capsys):
    params = random_params()
    images = random_images()
    path = write_timm(params, str(tmp_path / "ckpt.safetensors"))
    assert convert.main([path, str(tmp_path / "out"), "--preset", "vit_test"]) == 0
    model = keras_vit.ViT.from_preset(str(tmp_path / "out"))
    expected = reference(params, images, gelu_approximate=False)["logits"]
    np.testing.assert_allclose(model(images), expected, **TOL)
    assert convert.main([path, str(tmp_path / "bad")]) == 1
    assert "num_heads" in capsys.readouterr().err


class _Server:
    """A bounded HTTP server on 127.0.0.1 serving one folder."""

    def __init__(self, directory):
        handler = functools.partial(_QuietHandler, directory=str(directory))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.timeout = 5
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def served(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    params = random_params(representation=24)
    write_original(params, str(served / "ViT-T_8.npz"))
    server = _Server(served)
    yield server, params, served / "ViT-T_8.npz"
    server.close()


def _register(monkeypatch, url, sha256):
    monkeypatch.setitem(checkpoints.SOURCES, "vit_test", {"test": checkpoints.Source(url, sha256)})


def test_download_checksum_right_then_cached(served, monkeypatch, tmp_path):
    import hashlib

    server, params, file = served
    _register(monkeypatch, server.url + "ViT-T_8.npz", hashlib.sha256(file.read_bytes()).hexdigest())
    model = keras_vit.ViT.from_preset("vit_test", weights="test")
    images = random_images()
    np.testing.assert_allclose(model(images), reference(params, images)["logits"], **TOL)
    home = tmp_path / "home"
    assert (home / "downloads" / "ViT-T_8.npz").exists()
    assert sorted(p.name for p in home.iterdir()) == ["downloads"]  # the file, converted on load
    server.close()  # the cached file serves the next load
    again = keras_vit.ViT.from_preset("vit_test", weights="test", num_classes=3)
    assert again.num_classes == 3 and again.representation_size == 24


def test_download_checksum_wrong(served, monkeypatch, tmp_path):
    server, _, _ = served
    _register(monkeypatch, server.url + "ViT-T_8.npz", "0" * 64)
    with pytest.raises(ValueError, match="sha256 does not match"):
        keras_vit.ViT.from_preset("vit_test", weights="test")
    assert not (tmp_path / "home" / "downloads" / "ViT-T_8.npz").exists()


def test_download_server_down(served, monkeypatch, tmp_path):
    server, _, _ = served
    url = server.url + "ViT-T_8.npz"
    server.close()
    _register(monkeypatch, url, None)
    target = tmp_path / "home" / "downloads" / "ViT-T_8.npz"
    with pytest.raises(ConnectionError, match=f"Could not download {url}.*put it at {target}"):
        keras_vit.ViT.from_preset("vit_test", weights="test")


def test_timm_hub_sources_share_a_file_name_not_a_cache_file(served, monkeypatch, tmp_path):
    """timm's hub files are all `model.safetensors`: each named source caches under its own name."""
    server, _, npz = served
    sources = {}
    for seed, name in ((0, "fb_in1k"), (1, "other")):
        params = random_distilled_params(seed=seed)
        (npz.parent / name).mkdir()
        write_timm(params, str(npz.parent / name / "model.safetensors"))
        sources[name] = (
            params,
            checkpoints.Source(f"{server.url}{name}/model.safetensors", cache_name=f"{name}.safetensors"),
        )
    monkeypatch.setitem(
        checkpoints.SOURCES, "deit_test", {name: source for name, (_, source) in sources.items()}
    )
    images = random_images()
    for name, (params, _) in sources.items():
        model = keras_vit.ViT.from_preset("deit_test", weights=name)
        assert_max_diff(model(images), reference(params, images, **DEIT)["logits"])
    assert sorted(os.listdir(tmp_path / "home" / "downloads")) == ["fb_in1k.safetensors", "other.safetensors"]
    assert checkpoints.list_sources("deit_ti16_distilled") == ["fb_in1k"]
    assert checkpoints.SOURCES["deit_ti16_distilled"]["fb_in1k"].filename == (
        "deit_tiny_distilled_patch16_224.fb_in1k.safetensors"
    )
