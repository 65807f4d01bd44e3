"""Image files: the one list of extensions the project reads, and the one reader
of them (used by the analysis, the training program and export)."""

import os

import numpy as np
import tensorflow as tf

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def image_files(folder):
    """The image files under `folder` (searched recursively), sorted by path."""
    return sorted(
        os.path.join(root, name)
        for root, _, names in os.walk(folder)
        for name in names
        if name.lower().endswith(IMAGE_EXTENSIONS)
    )


def decode_image(file):
    """`(H, W, 3)` uint8 pixels of one image file (a GIF's first frame); works
    on a string tensor inside `tf.data` too."""
    return tf.io.decode_image(tf.io.read_file(file), channels=3, expand_animations=False)


def read_image(file):
    """`decode_image`, eagerly: a file that does not decode is a ValueError that names it."""
    try:
        return decode_image(file)
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as error:
        raise ValueError(
            f"Cannot read image {file!r}: {error.message.splitlines()[0]}. Remove or replace it."
        ) from None


def load_image_folder(folder, image_size, limit=None):
    """`(N, H, W, 3)` float32 pixels in [0, 255]: the first `limit` image files
    under `folder` (sorted by path), each resized bilinearly to `image_size`
    `(height, width)`. A ValueError names a missing or empty folder, or a file
    that does not decode."""
    if not os.path.isdir(folder):
        raise ValueError(f"{folder!r} is not a folder of images.")
    files = image_files(folder)[:limit]
    if not files:
        raise ValueError(f"{folder!r} holds no images ({', '.join(IMAGE_EXTENSIONS)} files).")
    return np.stack([tf.image.resize(read_image(file), image_size).numpy() for file in files]).astype(
        "float32"
    )
