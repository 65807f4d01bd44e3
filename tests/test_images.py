"""keras_vit.images on every backend: Pillow decodes PNG losslessly and JPEG as
TensorFlow's decoder does; the bilinear resize is tf.image.resize's (half-pixel
centres, no antialiasing), checked against a NumPy reference; bad files and
folders are one ValueError that names them."""

import os

import keras
import numpy as np
import pytest
from PIL import Image

from keras_vit import images as image_io


def linear_matrix(size_in, size_out):
    """`(size_out, size_in)`: tf.image.resize's bilinear weights along one axis
    (half-pixel centres, edges clamped), the textbook rule."""
    matrix = np.zeros((size_out, size_in))
    for i in range(size_out):
        x = (i + 0.5) * size_in / size_out - 0.5
        low = int(np.floor(x))
        frac = x - low
        matrix[i, min(max(low, 0), size_in - 1)] += 1 - frac
        matrix[i, min(max(low + 1, 0), size_in - 1)] += frac
    return matrix


def pixels(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("size", [(7, 5), (32, 48), (11, 11), (224, 224)])
def test_resize_is_tf_bilinear(size):
    source = pixels(16, 24)
    expected = np.einsum(
        "ti,ijc,sj->tsc", linear_matrix(16, size[0]), source.astype("float64"), linear_matrix(24, size[1])
    )
    resized = image_io.resize_image(source, size)
    assert resized.shape == (*size, 3) and resized.dtype == np.float32
    # float32 weights on values up to 255: measured max |Δ| 4.2e-4 against float64, the same on TF,
    # JAX and torch (16x24 to 5 sizes, 3 seeds); the bound 2e-3, a margin of 4.7x.
    assert np.abs(resized - expected).max() <= 2e-3
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        np.testing.assert_array_equal(resized, tf.image.resize(source, size).numpy())


def test_folder_reads_png_exactly_and_gif_first_frame(tmp_path):
    first, second = pixels(8, 8, seed=1), pixels(8, 8, seed=2)
    Image.fromarray(first).save(tmp_path / "a.png")
    frames = [Image.fromarray(first), Image.fromarray(second)]
    frames[0].save(tmp_path / "b.gif", save_all=True, append_images=frames[1:])
    Image.fromarray(first).convert("L").save(tmp_path / "c.bmp")  # gray: 3 equal channels
    loaded = image_io.load_image_folder(str(tmp_path), (8, 8))
    assert loaded.shape == (3, 8, 8, 3) and loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded[0], first)
    gif = np.asarray(Image.open(tmp_path / "b.gif").convert("RGB"))  # GIF's palette quantises
    np.testing.assert_array_equal(loaded[1], gif)
    gray = np.asarray(Image.fromarray(first).convert("L"))
    np.testing.assert_array_equal(loaded[2], np.repeat(gray[..., None], 3, axis=-1))
    assert image_io.load_image_folder(str(tmp_path), (8, 8), limit=1).shape == (1, 8, 8, 3)


@pytest.mark.tensorflow
def test_jpeg_decodes_as_tensorflows_accurate_idct(tmp_path):
    import tensorflow as tf

    smooth = np.clip(np.add.outer(np.arange(48), np.arange(64))[..., None] * [2, 3, 1], 0, 255)
    for name, array in (("noise", pixels(48, 64, seed=3)), ("smooth", smooth.astype(np.uint8))):
        path = str(tmp_path / f"{name}.jpg")
        Image.fromarray(array).save(path, quality=90)
        ours = image_io.read_image(path)
        data = tf.io.read_file(path)
        accurate = tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE").numpy()
        np.testing.assert_array_equal(ours, accurate)  # Pillow's libjpeg-turbo IDCT is the accurate one
        # TF's default IDCT (tf.io.decode_image, the training program's) is the fast one: measured up to
        # 7 levels of 255 apart at quality 75-95, mean 1.0-1.5; the bound 12.
        fast = tf.io.decode_image(data, channels=3).numpy()
        difference = np.abs(ours.astype(int) - fast)
        assert 0 < difference.max() <= 12 and difference.mean() <= 2, name


def test_bad_files_and_folders_are_one_line_errors(tmp_path):
    with pytest.raises(ValueError, match="is not a folder of images"):
        image_io.load_image_folder(str(tmp_path / "missing"), (8, 8))
    with pytest.raises(ValueError, match="holds no images"):
        image_io.load_image_folder(str(tmp_path), (8, 8))
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"Cannot read image .*broken.jpg.*Remove or replace it"):
        image_io.load_image_folder(str(tmp_path), (8, 8))
    assert image_io.image_files(str(tmp_path)) == [os.path.join(str(tmp_path), "broken.jpg")]


def test_model_inputs_follow_the_models_own_normalisation():
    """One rule takes [0, 255] pixels to what a model takes and back for display (the analysis and its
    plots use it): with ImageNet mean and std outside the model (a DeiT with include_rescaling=False),
    the model given `model_inputs` equals the same weights normalising inside. The rule the analysis
    had before, `x / 127.5 - 1` and its inverse, fails here: logits off by 0.64 (of |3.3|), displayed
    pixels off by 0.37 of their range."""
    from helpers import TINY_VIT, randomize

    import keras_vit

    imagenet = dict(image_mean=(0.485, 0.456, 0.406), image_std=(0.229, 0.224, 0.225))
    inside = randomize(keras_vit.ViT(**TINY_VIT, **imagenet))
    outside = keras_vit.ViT(**TINY_VIT, **imagenet, include_rescaling=False)
    outside.set_weights(inside.get_weights())
    batch = np.stack([pixels(32, 32, seed) for seed in range(2)]).astype("float32")
    expected = keras.ops.convert_to_numpy(inside(batch))
    assert np.ptp(expected) > 0.1
    inputs = image_io.model_inputs(outside, batch)
    # measured 1.3e-6 on TensorFlow (float32 rounding of the two orders): a margin of 75x
    np.testing.assert_allclose(keras.ops.convert_to_numpy(outside(inputs)), expected, atol=1e-4)
    np.testing.assert_allclose(image_io.display_pixels(outside, inputs), batch / 255.0, atol=1e-6)
    np.testing.assert_array_equal(image_io.model_inputs(inside, batch), batch)
    np.testing.assert_allclose(image_io.display_pixels(inside, batch), batch / 255.0, atol=1e-7)
