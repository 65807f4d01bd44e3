"""Data sets as tf.data pipelines: scikit-learn's digits, TFDS by name, or a
folder of images per class.

`load_splits` returns `Splits`: train/validation/test `tf.data.Dataset`s of
`(image uint8 (h, w, 3), label int)` examples, unbatched, the class count and
the class names (label i is `class_names[i]`).
`pipeline` turns one into batches of `(float32 (B, H, W, 3) in [0, 255],
one-hot (B, K))` with static shapes.
"""

import collections
import os

import numpy as np
import tensorflow as tf

from keras_vit.images import IMAGE_EXTENSIONS, image_files
from keras_vit.training import augment

Splits = collections.namedtuple("Splits", "train validation test num_classes class_names")

# TFDS name -> (train, validation, test) split strings.
TFDS_SPLITS = {
    "cifar10": ("train[:90%]", "train[90%:]", "test"),
    "cifar100": ("train[:90%]", "train[90%:]", "test"),
    "oxford_iiit_pet": ("train[:90%]", "train[90%:]", "test"),
    "oxford_flowers102": ("train", "validation", "test"),
    "imagenet2012": ("train[:99%]", "train[99%:]", "validation"),
}


def load_splits(data, data_dir=None, seed=0):
    """`data`: `digits`, a TFDS name of TFDS_SPLITS (read from `data_dir`), or
    a folder with one sub-folder of images per class."""
    if data == "digits":
        return digits(seed)
    if data in TFDS_SPLITS:
        return tfds_splits(data, data_dir)
    if os.path.isdir(data):
        return folder(data, seed)
    raise ValueError(
        f"Unknown data set {data!r}; expected 'digits', one of {', '.join(TFDS_SPLITS)} "
        f"(TensorFlow Datasets, with --data-dir for a local copy) or a folder of class sub-folders."
    )


def digits(seed=0):
    """scikit-learn's 1,797 8x8 digits (shipped in its wheel, no download):
    gray 0..16 → 0..255, 3 channels, classes "0".."9"; 70/15/15 % stratified
    split by `seed`."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.repeat(np.round(bunch.images * (255 / 16)).astype("uint8")[..., None], 3, axis=-1)
    labels = bunch.target.astype("int32")
    x_train, x_rest, y_train, y_rest = train_test_split(
        images, labels, test_size=0.3, random_state=seed, stratify=labels
    )
    x_val, x_test, y_val, y_test = train_test_split(
        x_rest, y_rest, test_size=0.5, random_state=seed, stratify=y_rest
    )
    make = lambda x, y: tf.data.Dataset.from_tensor_slices((x, y))  # noqa: E731
    return Splits(
        make(x_train, y_train), make(x_val, y_val), make(x_test, y_test), 10, [str(i) for i in range(10)]
    )


def tfds_splits(name, data_dir=None):
    import tensorflow_datasets as tfds

    splits, info = tfds.load(
        name, split=list(TFDS_SPLITS[name]), data_dir=data_dir, as_supervised=True, with_info=True
    )
    label = info.features["label"]
    return Splits(*splits, label.num_classes, list(label.names))


def folder(path, seed=0):
    """`path/<class>/<image>`: two or more classes in sorted order, named
    after their folders, none empty; each image is decoded once here so that
    a broken file is named before training. 80/10/10 % split."""
    classes = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)))
    if not classes:
        raise ValueError(
            f"No images ({', '.join(IMAGE_EXTENSIONS)}) in class sub-folders of {path!r}; "
            f"expected {path}/<class name>/<image>."
        )
    if len(classes) == 1:
        raise ValueError(
            f"{path!r} has one class folder ({classes[0]!r}); a classifier needs two or more: "
            f"{path}/<class name>/<image>."
        )
    files, labels = [], []
    for label, name in enumerate(classes):
        class_dir = os.path.join(path, name)
        images = image_files(class_dir)
        if not images:
            raise ValueError(
                f"Class folder {class_dir!r} has no images ({', '.join(IMAGE_EXTENSIONS)}); "
                f"add some or remove the folder."
            )
        files += images
        labels += [label] * len(images)
    for f in files:
        check_decodes(f)
    order = np.random.default_rng(seed).permutation(len(files))
    files, labels = np.array(files)[order], np.array(labels, "int32")[order]
    n_val = n_test = max(1, len(files) // 10)
    cuts = [(n_val + n_test, None), (0, n_val), (n_val, n_val + n_test)]

    def decode(f, y):
        return decode_image(f), y

    def make(a, b):
        return tf.data.Dataset.from_tensor_slices((files[a:b], labels[a:b])).map(decode)

    return Splits(*(make(a, b) for a, b in cuts), len(classes), classes)


def decode_image(file):
    """`(H, W, 3)` uint8 pixels of one image file (a GIF's first frame), in
    tf.data: TensorFlow's decoder (the library's `keras_vit.images` uses Pillow)."""
    return tf.io.decode_image(tf.io.read_file(file), channels=3, expand_animations=False)


def check_decodes(file):
    """Decodes one image file eagerly, as the pipeline will: a ValueError names a file that fails."""
    try:
        decode_image(file)
    except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError) as error:
        raise ValueError(
            f"Cannot read image {file!r}: {error.message.splitlines()[0]}. Remove or replace it."
        ) from None


def pipeline(
    ds,
    image_size,
    num_classes,
    batch_size,
    training,
    augment_options=None,
    resize="bilinear",
    drop_remainder=True,
    pad_to_batch=False,
    seed=0,
    cache=False,
):
    """Batches of `(float32 (B, H, W, 3), one-hot (B, K))`, `B = batch_size`
    with `drop_remainder` (static shapes for TPU; always when training).
    Training: shuffled, repeated (pass `steps_per_epoch` to fit), augmented.
    `pad_to_batch` (evaluation on several devices, which split every batch
    evenly): `(images, labels, weights (B,))` batches, the last one filled up
    with copies of the first example that weigh 0 (`padded_count` examples in all).
    `resize`: the tf.image.resize method to `image_size`."""
    opts = augment.options(augment_options or {})
    size = tuple(image_size)

    def prepare(image, label, *weight):
        image = tf.cast(image, tf.float32)
        if training and opts["inception_crop"]:
            image = augment.inception_crop(image, size, opts["crop_scale"])
        else:
            image = tf.image.resize(image, size, method=resize)
        return image, tf.one_hot(label, num_classes), *weight

    if cache:
        ds = ds.cache()
    if pad_to_batch and not training:
        n = count(ds)
        filler = ds.take(1).map(lambda image, label: (image, label, 0.0))
        ds = ds.map(lambda image, label: (image, label, 1.0))
        ds = ds.concatenate(filler.repeat(padded_count(n, batch_size) - n))
        drop_remainder = True  # the padding made every batch whole
    if training:
        # One endless shuffled stream that every iterator replays from its
        # start (seed 0 would mean "unseeded" to tf.data): a distributed
        # iterator, a rerun and a resumed run see the same batches.
        ds = ds.repeat().shuffle(10_000, seed=seed + 1, reshuffle_each_iteration=False)
    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(batch_size, drop_remainder=training or drop_remainder)
    batch_ops = augment.BatchAugment(opts, seed=seed) if training else None
    if batch_ops:
        # One call at a time: the random layers draw from a seed state, and
        # parallel calls would take their draws in a varying order.
        ds = ds.map(batch_ops)
    return ds.prefetch(tf.data.AUTOTUNE)


def padded_count(n, batch_size):
    """`n` examples padded up to a whole number of batches."""
    return -(-n // batch_size) * batch_size


def padding_ratio(n, batch_size):
    """`padded_count / n`: the factor that turns a loss summed over `n`
    examples and divided by their padded count into their mean."""
    return padded_count(n, batch_size) / n


def count(ds):
    n = ds.cardinality()
    return int(n) if n >= 0 else int(ds.reduce(0, lambda c, _: c + 1))
