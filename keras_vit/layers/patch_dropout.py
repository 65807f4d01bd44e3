"""Patch dropout (Liu et al., 2022, "PatchDropout"; timm's `patch_drop_rate`)."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_vit")
class PatchDropout(keras.layers.Layer):
    """In training, keeps a random subset of each sample's patch tokens, in
    their original order: `(B, P + N, D)` -> `(B, P + K, D)`, with the `P`
    prefix tokens (class token) always kept and `K = max(1, int(N * (1 - rate)))`
    as in timm. Identity at inference, so a trained model is unchanged.

    Args:
        rate: fraction of the patch tokens dropped, in [0, 1).
        num_prefix_tokens: tokens before the patches, never dropped.
        seed: seed of the random draws.
    """

    def __init__(self, rate, num_prefix_tokens=1, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"PatchDropout rate must be in [0, 1), got {rate!r}.")
        self.rate = rate
        self.num_prefix_tokens = num_prefix_tokens
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, tokens, training=None):
        if not training or self.rate == 0.0:
            return tokens
        prefix, patches = tokens[:, : self.num_prefix_tokens], tokens[:, self.num_prefix_tokens :]
        num_patches = patches.shape[1]
        num_keep = max(1, int(num_patches * (1.0 - self.rate)))
        noise = keras.random.uniform((ops.shape(tokens)[0], num_patches), seed=self.seed_generator)
        keep = ops.sort(ops.top_k(noise, num_keep, sorted=False)[1], axis=-1)  # (B, K) random, in order
        # A one-hot matmul picks the rows, exactly: take_along_axis's gradient logs a oneDNN int64 error
        # line on every training step on TensorFlow.
        kept = ops.einsum("bkn,bnd->bkd", ops.one_hot(keep, num_patches, dtype=patches.dtype), patches)
        return ops.concatenate([prefix, kept], axis=1)

    def compute_output_shape(self, input_shape):
        return input_shape  # at inference; in training, fewer tokens

    def get_config(self):
        config = super().get_config()
        config.update(rate=self.rate, num_prefix_tokens=self.num_prefix_tokens, seed=self.seed)
        return config
