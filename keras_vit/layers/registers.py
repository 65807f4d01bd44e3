"""Register tokens (Darcet et al., ICLR 2024, "Vision Transformers Need Registers")."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_vit")
class Registers(keras.layers.Layer):
    """Inserts `num_registers` learned tokens after the first `num_prefix_tokens`
    tokens: `(B, P + N, D)` -> `(B, P + R + N, D)`. They come after the
    position embedding, so they get none, and are left out of pooling.

    Weight: `tokens` `(1, R, D)`, initialised with normal(1e-6) as in timm
    (its `reg_token`).

    Args:
        num_registers: `R`, at least 1.
        num_prefix_tokens: tokens kept before the registers (class and
            distillation token).
    """

    def __init__(self, num_registers, num_prefix_tokens=0, **kwargs):
        super().__init__(**kwargs)
        self.num_registers = num_registers
        self.num_prefix_tokens = num_prefix_tokens

    def build(self, input_shape):
        self.tokens = self.add_weight(
            name="tokens",
            shape=(1, self.num_registers, input_shape[-1]),
            initializer=keras.initializers.RandomNormal(stddev=1e-6),
        )

    def call(self, tokens):
        registers = ops.cast(self.tokens, tokens.dtype)
        registers = ops.broadcast_to(registers, (ops.shape(tokens)[0], self.num_registers, tokens.shape[-1]))
        if not self.num_prefix_tokens:  # an empty slice trips the TFLite converter's shapes
            return ops.concatenate([registers, tokens], axis=1)
        prefix, patches = tokens[:, : self.num_prefix_tokens], tokens[:, self.num_prefix_tokens :]
        return ops.concatenate([prefix, registers, patches], axis=1)

    def compute_output_shape(self, input_shape):
        batch, length, width = input_shape
        return (batch, None if length is None else length + self.num_registers, width)

    def get_config(self):
        config = super().get_config()
        config.update(num_registers=self.num_registers, num_prefix_tokens=self.num_prefix_tokens)
        return config
