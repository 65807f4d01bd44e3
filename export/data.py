"""Images for calibration and verification, from a folder or a .npy file."""

import os

import numpy as np
import tensorflow as tf

from keras_vit.export.errors import ExportError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def load_images(path, image_size, limit=None, what=None):
    """`(N, H, W, 3)` float32 pixels in [0, 255], resized to `image_size`.

    `path`: a folder of image files (searched recursively, sorted), or a
    `.npy` file holding `(N, H, W, 3)` (or `(N, H, W)` gray) pixels in
    [0, 255]. At most `limit` images. A NaN or inf pixel is an `ExportError`
    that names `what` (say, `"--verify"`) and `path`.
    """
    label = f"{what} {path}" if what else path
    if os.path.isdir(path):
        files = sorted(
            os.path.join(root, name)
            for root, _, names in os.walk(path)
            for name in names
            if name.lower().endswith(IMAGE_EXTENSIONS)
        )[:limit]
        if not files:
            raise ExportError(f"{path} holds no images ({', '.join(IMAGE_EXTENSIONS)} files).")
        images = [tf.image.resize(_decode(f), image_size) for f in files]
        return np.stack([image.numpy() for image in images]).astype("float32")
    if path.endswith(".npy") and os.path.isfile(path):
        try:
            images = np.load(path, allow_pickle=False)[:limit].astype("float32")
        except (ValueError, IndexError) as error:  # object or text arrays, a 0-d array
            raise ExportError(f"{label} does not hold an array of pixels: {error}") from error
        if images.ndim == 3:
            images = np.repeat(images[..., None], 3, axis=-1)
        if images.ndim != 4 or images.shape[-1] != 3 or len(images) == 0:
            raise ExportError(f"{path} holds an array of shape {images.shape}; expected (N, H, W, 3) pixels.")
        check_pixels(images, label)  # before resizing, which would spread a NaN over its neighbours
        if images.shape[1:3] != tuple(image_size):
            images = tf.image.resize(images, image_size).numpy()
        return images
    raise ExportError(f"Image data {path!r} is neither a folder of images nor a .npy file.")


def _decode(file):
    return tf.io.decode_image(tf.io.read_file(file), channels=3, expand_animations=False)


def check_pixels(images, name):
    """Raises `ExportError` naming `name` and the images if any of `images`
    `(N, ...)` holds a NaN or inf pixel. Refused before any work: an inf
    calibration pixel crashes the TFLite converter (a segfault), a NaN one
    skews the calibration, and NaN verification logits compare as no error."""
    images = np.asarray(images)
    if images.dtype.kind not in "fc" or len(images) == 0:
        return  # integer pixels are finite
    bad = np.flatnonzero(~np.isfinite(images.reshape(len(images), -1)).all(axis=1))
    if len(bad):
        shown = ", ".join(str(i) for i in bad[:5]) + (", ..." if len(bad) > 5 else "")
        raise ExportError(
            f"{name}: {len(bad)} of {len(images)} images hold NaN or inf pixels (index {shown}); "
            "expected finite pixels in [0, 255]."
        )
