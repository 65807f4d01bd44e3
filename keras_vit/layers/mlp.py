"""The Transformer's MLP block and the GELU it uses."""

import math

import keras
import tensorflow as tf
from keras import ops


def gelu(x, approximate=True):
    """GELU written with plain ops, so it exports to TFLite builtins and ONNX.

    `approximate=True`: the tanh form, Flax's default and so the original
    checkpoints'; TF's own subgraph for it (`tf.nn.gelu`), which oneDNN fuses
    into a preceding MatMul + BiasAdd on CPU. `False`: the exact erf form
    (timm, Hugging Face), written here because Keras' and TF's lower to
    `Erfc`, which tf2onnx cannot convert.
    """
    if approximate:
        return tf.nn.gelu(x, approximate=True)
    return x * (0.5 + 0.5 * ops.erf(x * (1.0 / math.sqrt(2.0))))


@keras.saving.register_keras_serializable(package="keras_vit")
class MlpBlock(keras.layers.Layer):
    """`Dense(mlp_dim) -> GELU -> Dropout -> Dense(D) -> Dropout`, `(B, T, D)` in and out.

    Sub-layers `dense_0` (kernel `(D, mlp_dim)`) and `dense_1` (kernel
    `(mlp_dim, D)`): the original `MlpBlock/Dense_0`, `Dense_1`. Initialised as
    the original: Xavier-uniform kernels, normal(1e-6) biases.
    """

    def __init__(self, mlp_dim, dropout_rate=0.0, gelu_approximate=True, **kwargs):
        super().__init__(**kwargs)
        self.mlp_dim = mlp_dim
        self.dropout_rate = dropout_rate
        self.gelu_approximate = gelu_approximate

    def build(self, input_shape):
        dense_args = dict(
            kernel_initializer="glorot_uniform",
            bias_initializer=keras.initializers.RandomNormal(stddev=1e-6),
            dtype=self.dtype_policy,
        )
        self.dense_0 = keras.layers.Dense(self.mlp_dim, name="dense_0", **dense_args)
        self.dense_0.build(input_shape)
        self.dense_1 = keras.layers.Dense(input_shape[-1], name="dense_1", **dense_args)
        self.dense_1.build((*input_shape[:-1], self.mlp_dim))
        self.dropout = keras.layers.Dropout(self.dropout_rate, dtype=self.dtype_policy)

    def call(self, x, training=None):
        # On the (B * T, D) rows: MatMul + BiasAdd + GELU is a pattern oneDNN
        # fuses; Dense on (B, T, D) would be a batched matmul and an Add.
        rows = tf.reshape(x, (-1, x.shape[-1]))
        hidden = gelu(tf.nn.bias_add(tf.matmul(rows, self.dense_0.kernel), self.dense_0.bias), self.gelu_approximate)
        hidden = self.dropout(hidden, training=training)
        out = tf.nn.bias_add(tf.matmul(hidden, self.dense_1.kernel), self.dense_1.bias)
        out = tf.reshape(out, tf.concat([tf.shape(x)[:-1], [x.shape[-1]]], 0))
        return self.dropout(out, training=training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            mlp_dim=self.mlp_dim,
            dropout_rate=self.dropout_rate,
            gelu_approximate=self.gelu_approximate,
        )
        return config
