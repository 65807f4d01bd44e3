"""Image files: the one list of extensions the project reads, and the library's
reader of them (Pillow, on every backend; the training program decodes inside
tf.data with TensorFlow's decoder instead); and the one rule that takes [0, 255]
pixels to a model's input, and back for display."""

import os

import keras
import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def image_files(folder):
    """The image files under `folder` (searched recursively), sorted by path."""
    return sorted(
        os.path.join(root, name)
        for root, _, names in os.walk(folder)
        for name in names
        if name.lower().endswith(IMAGE_EXTENSIONS)
    )


def read_image(file):
    """`(H, W, 3)` uint8 pixels of one image file (a GIF's first frame); a file
    that does not decode is a ValueError that names it."""
    try:
        with Image.open(file) as image:
            image.seek(0)
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"Cannot read image {file!r}: {reason}. Remove or replace it.") from None


def resize_image(pixels, image_size):
    """`(H, W, 3)` pixels → `(height, width, 3)` float32, bilinear without
    antialiasing (`tf.image.resize`'s default, on every backend)."""
    resized = keras.ops.image.resize(np.asarray(pixels, "float32")[None], image_size, "bilinear")
    return keras.ops.convert_to_numpy(resized)[0]


def load_image_folder(folder, image_size, limit=None):
    """`(N, H, W, 3)` float32 pixels in [0, 255]: the first `limit` image files
    under `folder` (sorted by path), each resized by `resize_image` to
    `image_size` `(height, width)`. A ValueError names a missing or empty
    folder, or a file that does not decode."""
    if not os.path.isdir(folder):
        raise ValueError(f"{folder!r} is not a folder of images.")
    files = image_files(folder)[:limit]
    if not files:
        raise ValueError(f"{folder!r} holds no images ({', '.join(IMAGE_EXTENSIONS)} files).")
    return np.stack([resize_image(read_image(file), image_size) for file in files])


def pixel_mean_std(model):
    """`(mean, std)`, 3 floats each in [0, 255] pixel units: `(pixels - mean) / std`
    is what `model` takes. `(0, 0, 0)`, `(1, 1, 1)` when it normalises inside
    (`include_rescaling`, its `rescaling` layer applies this rule), else its
    `image_mean` and `image_std` times 255."""
    if model.include_rescaling:
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    return tuple(255.0 * m for m in model.image_mean), tuple(255.0 * s for s in model.image_std)


def model_inputs(model, pixels):
    """`(B, H, W, 3)` float32: `pixels` in [0, 255] as `model` takes them."""
    mean, std = pixel_mean_std(model)
    return (np.asarray(pixels, "float32") - np.float32(mean)) / np.float32(std)


def display_pixels(model, inputs):
    """`(B, H, W, 3)` in [0, 1]: images as `model` takes them (`model_inputs`'
    output), mapped back for display and clipped."""
    mean, std = pixel_mean_std(model)
    return np.clip((np.asarray(inputs, "float32") * np.float32(std) + np.float32(mean)) / 255.0, 0.0, 1.0)
