"""Images for calibration and verification, from a folder or a .npy file;
labels for verification from a folder of class sub-folders."""

import os

import numpy as np
import tensorflow as tf

from keras_vit.export.errors import ExportError
from keras_vit.images import IMAGE_EXTENSIONS, image_files, load_image_folder


def load_images(path, image_size, limit=None, what=None):
    """`(N, H, W, 3)` float32 pixels in [0, 255], resized to `image_size`.

    `path`: a folder of image files (searched recursively, sorted), or a
    `.npy` file holding `(N, H, W, 3)` (or `(N, H, W)` gray) pixels in
    [0, 255]. At most `limit` images. A NaN or inf pixel is an `ExportError`
    that names `what` (say, `"--verify"`) and `path`.
    """
    label = f"{what} {path}" if what else path
    if os.path.isdir(path):
        try:
            return load_image_folder(path, image_size, limit)
        except ValueError as error:
            raise ExportError(f"{what}: {error}" if what else str(error)) from None
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


def load_verify_images(path, image_size, num_classes, class_names=None):
    """`(images, labels)` of `--verify`. A folder of class sub-folders and no
    image of its own (`path/<class>/<image>`, the training program's layout)
    gives labels `(N,)`: each sub-folder's index in `class_names`, or without
    them the sub-folders in sorted order, one per class (as training numbers
    them). Any other folder, or a `.npy` file: `(load_images(path), None)`."""
    classes = _class_folders(path)
    if classes is None:
        return load_images(path, image_size, what="--verify"), None
    if class_names is not None:
        unknown = [name for name in classes if name not in class_names]
        if unknown:
            raise ExportError(
                f"--verify {path}: sub-folder(s) {', '.join(map(repr, unknown[:5]))} are not class names of "
                "--labels; expected one sub-folder per class, named after it."
            )
        indices = [class_names.index(name) for name in classes]
    elif len(classes) != num_classes:
        raise ExportError(
            f"--verify {path} has {len(classes)} class sub-folders for a model with {num_classes} classes; "
            "name them with --labels FILE, or give a folder of images without sub-folders."
        )
    else:
        indices = range(num_classes)
    images, labels = [], []
    for name, index in zip(classes, indices):
        if image_files(os.path.join(path, name)):  # a class the split may lack
            images.append(load_images(os.path.join(path, name), image_size, what="--verify"))
            labels += [index] * len(images[-1])
    return np.concatenate(images), np.array(labels, "int32")


def _class_folders(path):
    """The sorted sub-folder names of the folder `path` if it has two or more
    and no image file of its own (images in sub-folders only), else None."""
    if not os.path.isdir(path) or any(name.lower().endswith(IMAGE_EXTENSIONS) for name in os.listdir(path)):
        return None
    classes = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))
    return classes if len(classes) >= 2 else None


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
