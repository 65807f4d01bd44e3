"""Images for calibration and verification, from a folder or a .npy file."""

import os

import numpy as np
import tensorflow as tf

from export.errors import ExportError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def load_images(path, image_size, limit=None):
    """`(N, H, W, 3)` float32 pixels in [0, 255], resized to `image_size`.

    `path`: a folder of image files (searched recursively, sorted), or a
    `.npy` file holding `(N, H, W, 3)` (or `(N, H, W)` gray) pixels in
    [0, 255]. At most `limit` images.
    """
    if os.path.isdir(path):
        files = sorted(
            os.path.join(root, name)
            for root, _, names in os.walk(path)
            for name in names
            if name.lower().endswith(IMAGE_EXTENSIONS)
        )[:limit]
        if not files:
            raise ExportError(f"{path} holds no images ({', '.join(IMAGE_EXTENSIONS)} files).")
        images = [
            tf.image.resize(tf.io.decode_image(tf.io.read_file(f), channels=3, expand_animations=False), image_size)
            for f in files
        ]
        return np.stack([image.numpy() for image in images]).astype("float32")
    if path.endswith(".npy") and os.path.isfile(path):
        images = np.load(path, allow_pickle=False)[:limit].astype("float32")
        if images.ndim == 3:
            images = np.repeat(images[..., None], 3, axis=-1)
        if images.ndim != 4 or images.shape[-1] != 3 or len(images) == 0:
            raise ExportError(f"{path} holds an array of shape {images.shape}; expected (N, H, W, 3) pixels.")
        if images.shape[1:3] != tuple(image_size):
            images = tf.image.resize(images, image_size).numpy()
        return images
    raise ExportError(f"Image data {path!r} is neither a folder of images nor a .npy file.")
