"""A tiny ViT trained on scikit-learn's bundled digits (no download)."""

import keras
import numpy as np
from sklearn.datasets import load_digits


def digits_images(size=32):
    """All 1,797 digits as `(N, size, size, 3)` float32 pixels in [0, 255], and labels."""
    digits = load_digits()
    images = digits.images.astype("float32") * (255.0 / 16.0)  # 8x8, 0..16
    scale = size // 8
    images = np.repeat(np.repeat(images, scale, axis=1), scale, axis=2)
    return np.repeat(images[..., None], 3, axis=-1), digits.target


def train_digits_vit(position_embedding="learned", pooling="token", epochs=20, seed=0):
    """A 24x24, patch-4 ViT (a 6x6 grid of patches) fit on 1,500 digits.

    Returns the model and its accuracy on the other 297.
    """
    import keras_vit

    keras.utils.set_random_seed(seed)
    images, labels = digits_images(24)
    order = np.random.default_rng(seed).permutation(len(images))
    images, labels = images[order], labels[order]
    model = keras_vit.ViT(
        image_size=24,
        patch_size=4,
        hidden_dim=32,
        num_layers=2,
        num_heads=4,
        mlp_dim=64,
        num_classes=10,
        pooling=pooling,
        position_embedding=position_embedding,
    )
    fit(model, images[:1500], labels[:1500], epochs, peak_learning_rate=2e-3)
    accuracy = float(np.mean(model.predict(images[1500:], verbose=0).argmax(-1) == labels[1500:]))
    return model, accuracy


def fit(model, images, labels, epochs, peak_learning_rate):
    """The tests' one way to train on the digits: `model` compiled with AdamW
    (weight decay 0.05) and fit on `images` `(N, H, W, 3)`, `labels`: batch 32,
    cosine decay after a warmup of a tenth of the steps to `peak_learning_rate`.
    Seed the run (and turn on op determinism) before calling."""
    steps = epochs * -(-len(images) // 32)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, steps, warmup_target=peak_learning_rate, warmup_steps=steps // 10
    )
    model.compile(
        keras.optimizers.AdamW(schedule, weight_decay=0.05),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(images, labels, epochs=epochs, batch_size=32, verbose=0)
