"""Multi-head self-attention in the original kernel layout."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_vit")
class MultiHeadSelfAttention(keras.layers.Layer):
    """`softmax(q kᵀ / √(D/heads)) v` per head, then the output projection;
    `(B, T, D)` in and out.

    Sub-layers and weights are those of `keras.layers.MultiHeadAttention` and
    of the original `MultiHeadDotProductAttention`: `query`, `key`, `value`
    (kernels `(D, heads, D / heads)`, biases `(heads, D / heads)`) and
    `attention_output` (kernel `(heads, D / heads, D)`, bias `(D,)`), held as
    `query_dense`, `key_dense`, `value_dense`, `output_dense`: the names in
    saved files. The projections run as 2-D matmuls on the `(B * T, D)` rows,
    kernels viewed as `(D, D)`: on CPU that is faster than the einsums of
    Keras' layer, and oneDNN fuses each MatMul with its BiasAdd. They read
    each layer's `kernel` property, which adds LoRA's `a @ b` when enabled.

    Args:
        num_heads: attention heads; must divide D.
        dropout_rate: dropout on the attention probabilities.
    """

    def __init__(self, num_heads, dropout_rate=0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.dropout_rate = dropout_rate

    def build(self, input_shape):
        hidden_dim = input_shape[-1]
        if hidden_dim % self.num_heads:
            raise ValueError(f"hidden_dim {hidden_dim} is not divisible by num_heads {self.num_heads}.")
        head_dim = hidden_dim // self.num_heads

        def projection(name, equation, output_shape, bias_axes, input_shape):
            layer = keras.layers.EinsumDense(
                equation,
                output_shape,
                bias_axes=bias_axes,
                kernel_initializer="glorot_uniform",
                dtype=self.dtype_policy,
                name=name,
            )
            layer.build(input_shape)
            return layer

        heads_shape = (None, self.num_heads, head_dim)
        self.query_dense = projection("query", "abc,cde->abde", heads_shape, "de", input_shape)
        self.key_dense = projection("key", "abc,cde->abde", heads_shape, "de", input_shape)
        self.value_dense = projection("value", "abc,cde->abde", heads_shape, "de", input_shape)
        self.output_dense = projection(
            "attention_output",
            "abcd,cde->abe",
            (None, hidden_dim),
            "e",
            (None, None, self.num_heads, head_dim),
        )
        self._dropout = keras.layers.Dropout(self.dropout_rate, dtype=self.dtype_policy)

    def call(self, x, training=None, return_attention_scores=False):
        """Returns the attended sequence, and the attention probabilities
        `(B, heads, T, T)` too when `return_attention_scores` is set."""
        batch, tokens, hidden_dim = ops.shape(x)[0], ops.shape(x)[1], x.shape[-1]
        head_dim = hidden_dim // self.num_heads
        rows = ops.reshape(x, (-1, hidden_dim))

        def heads(dense):  # (B * T, D) -> (B, heads, T, D / heads)
            y = ops.add(
                ops.matmul(rows, ops.reshape(dense.kernel, (hidden_dim, hidden_dim))),
                ops.reshape(dense.bias, (hidden_dim,)),
            )
            return ops.transpose(ops.reshape(y, (batch, tokens, self.num_heads, head_dim)), (0, 2, 1, 3))

        query = heads(self.query_dense) * head_dim**-0.5
        logits = ops.matmul(query, ops.swapaxes(heads(self.key_dense), 2, 3))  # (B, heads, T, T)
        probs = ops.cast(ops.softmax(ops.cast(logits, "float32")), x.dtype)  # float32 under mixed precision
        attended = ops.matmul(self._dropout(probs, training=training), heads(self.value_dense))
        attended = ops.reshape(ops.transpose(attended, (0, 2, 1, 3)), (-1, hidden_dim))
        kernel = ops.reshape(self.output_dense.kernel, (hidden_dim, hidden_dim))
        out = ops.add(ops.matmul(attended, kernel), self.output_dense.bias)
        out = ops.reshape(out, (batch, tokens, hidden_dim))
        return (out, probs) if return_attention_scores else out

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(num_heads=self.num_heads, dropout_rate=self.dropout_rate)
        return config
