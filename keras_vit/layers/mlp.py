"""The Transformer's MLP block and the GELU it uses."""

import math

import keras
from keras import ops


def gelu(x, approximate=True):
    """GELU written with plain ops, so it exports to TFLite builtins and ONNX.

    `approximate=True`: the tanh form, Flax's default and so the original
    checkpoints'; on TensorFlow `ops.gelu` is `tf.nn.gelu`'s subgraph, which
    oneDNN fuses into a preceding MatMul + BiasAdd on CPU. `False`: the exact
    erf form (timm, Hugging Face), written out because Keras' and TF's lower
    to `Erfc`, which tf2onnx cannot convert. Written as `0.5 x (1 + erf(x/√2))`,
    the pattern the TFLite converter fuses into its builtin `GELU`
    (approximate=false); `x (0.5 + 0.5 erf(x/√2))` leaves a `tf.Erf` that
    TFLite has no builtin for.
    """
    x = ops.convert_to_tensor(x)
    if approximate:
        return ops.gelu(x, approximate=True)
    return 0.5 * x * (1.0 + ops.erf(x * (1.0 / math.sqrt(2.0))))


@keras.saving.register_keras_serializable(package="keras_vit")
class MlpBlock(keras.layers.Layer):
    """`Dense(mlp_dim) -> GELU -> Dropout -> Dense(D) -> Dropout`, `(B, T, D)` in and out.

    Sub-layers `dense_0` (kernel `(D, mlp_dim)`) and `dense_1` (kernel
    `(mlp_dim, D)`): the original `MlpBlock/Dense_0`, `Dense_1`. Initialised as
    the original: Xavier-uniform kernels, normal(1e-6) biases. `call` reads
    their `kernel` property, which adds LoRA's `a @ b` when enabled.
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
        # On the (B * T, D) rows: MatMul + BiasAdd + GELU is a pattern oneDNN fuses (`ops.add` of a bias
        # is a BiasAdd on TensorFlow); Dense on (B, T, D) puts a Reshape between the MatMul and the BiasAdd.
        rows = ops.reshape(x, (-1, x.shape[-1]))
        hidden = ops.add(ops.matmul(rows, self.dense_0.kernel), self.dense_0.bias)
        hidden = self.dropout(gelu(hidden, self.gelu_approximate), training=training)
        out = ops.add(ops.matmul(hidden, self.dense_1.kernel), self.dense_1.bias)
        out = ops.reshape(out, (*ops.shape(x)[:-1], x.shape[-1]))
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
