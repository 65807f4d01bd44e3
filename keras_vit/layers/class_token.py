"""The learned class token prepended to the patch sequence."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_vit")
class ClassToken(keras.layers.Layer):
    """Prepends a learned token: `(B, N, D)` -> `(B, 1 + N, D)`.

    Weight: `token` `(1, 1, D)`, zero-initialised as in the original code
    (the checkpoints' `cls`). The ViT's `class_token`, and with distillation
    `distillation_token` (DeiT's `dist_token`), applied first so that the
    class token leads.
    """

    def build(self, input_shape):
        self.token = self.add_weight(name="token", shape=(1, 1, input_shape[-1]), initializer="zeros")

    def call(self, tokens):
        batch_size = ops.shape(tokens)[0]
        token = ops.cast(self.token, tokens.dtype)
        token = ops.broadcast_to(token, (batch_size, 1, tokens.shape[-1]))
        return ops.concatenate([token, tokens], axis=1)

    def compute_output_shape(self, input_shape):
        batch, length, width = input_shape
        return (batch, None if length is None else length + 1, width)
