"""Augmentation in the tf.data pipeline, with Keras' own layers.

Keras 3 ships RandAugment, MixUp, CutMix and RandomErasing (keras-cv is
archived; keras-cv 0.9 pulls the stale keras-core 0.1.7, and its MixUp fails
under Keras 3.15). Per-image ops run
before batching (`inception_crop`), batch ops after
(`BatchAugment`). Images are float32 in [0, 255]; labels one-hot.
"""

import keras
import tensorflow as tf

from keras_vit.training import config as configs

DEFAULTS = configs.AUGMENT  # the options, with what each one does


def options(augment):
    """`augment` (checked against the config schema) over the defaults."""
    configs.check_group(augment, "augment")
    return {**DEFAULTS, **augment}


def inception_crop(image, size, scale=(0.08, 1.0), seed=None):
    """Crops a random box of `scale` of the area and aspect 3/4..4/3, resized
    to `size` `(H, W)`: `(h, w, 3)` → `(H, W, 3)`."""
    begin, extent, _ = tf.image.sample_distorted_bounding_box(
        tf.shape(image),
        tf.zeros([0, 0, 4]),
        seed=seed,
        area_range=scale,
        aspect_ratio_range=(3 / 4, 4 / 3),
        min_object_covered=0,
        use_image_if_no_bounding_boxes=True,
    )
    crop = tf.slice(image, begin, extent)  # the slice loses the static channel count
    return tf.ensure_shape(tf.image.resize(crop, size), (*size, 3))


class BatchAugment:
    """Batch ops on `(images (B, H, W, 3), one-hot labels (B, K))`: shift, flip,
    RandAugment, random erasing, then MixUp or CutMix."""

    def __init__(self, opts, seed=0):
        self.layers = []
        if opts["translate"]:
            shift = opts["translate"]
            self.layers.append(
                keras.layers.RandomTranslation(
                    shift, shift, fill_mode="constant", interpolation="nearest", seed=seed
                )
            )
        if opts["flip"]:
            self.layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
        if opts["randaugment"]:
            self.layers.append(
                keras.layers.RandAugment(
                    (0, 255), num_ops=opts["randaugment"], factor=opts["randaugment_magnitude"], seed=seed
                )
            )
        self.erasing = opts["erasing"]
        self.eraser = None
        if self.erasing:
            self.eraser = keras.layers.RandomErasing(factor=1.0, value_range=(0, 255), seed=seed)
        self.mixers = [keras.layers.MixUp(alpha=opts["mixup"], seed=seed)] if opts["mixup"] else []
        if opts["cutmix"]:
            self.mixers.append(keras.layers.CutMix(factor=opts["cutmix"], seed=seed))

    def __bool__(self):
        return bool(self.layers or self.eraser or self.mixers)

    def __call__(self, images, labels):
        for layer in self.layers:
            images = layer(images, training=True)
        if self.eraser:
            erased = self.eraser(images, training=True)
            keep = tf.random.uniform([tf.shape(images)[0], 1, 1, 1]) >= self.erasing
            images = tf.where(keep, images, erased)
        if self.mixers:
            which = tf.random.uniform([], maxval=len(self.mixers), dtype=tf.int32)

            def mix(layer):
                out = layer({"images": images, "labels": labels}, training=True)
                return out["images"], out["labels"]

            images, labels = tf.switch_case(which, [lambda m=m: mix(m) for m in self.mixers])
        return images, labels
