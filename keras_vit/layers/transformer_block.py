"""The pre-norm Transformer encoder block."""

import keras

from keras_vit.layers.attention import MultiHeadSelfAttention
from keras_vit.layers.drop_path import DropPath
from keras_vit.layers.mlp import MlpBlock


@keras.saving.register_keras_serializable(package="keras_vit")
class TransformerBlock(keras.layers.Layer):
    """`x + MHA(LN(x))`, then `x + MLP(LN(x))`; `(B, T, D)` in and out.

    Sub-layers, in the order of the original `encoderblock_{i}`:
    `attention_norm` (`LayerNorm_0`), `attention` (a `MultiHeadSelfAttention`
    whose `query`/`key`/`value` kernels are `(D, heads, D / heads)` and
    `attention_output` kernel `(heads, D / heads, D)`, as in
    `keras.layers.MultiHeadAttention`: `MultiHeadDotProductAttention_1`),
    `mlp_norm` (`LayerNorm_2`), `mlp` (`MlpBlock_3`).

    Args:
        num_heads: attention heads; must divide D.
        mlp_dim: hidden width of the MLP.
        dropout_rate: dropout after the attention and in the MLP.
        attention_dropout_rate: dropout on the attention probabilities.
        drop_path_rate: stochastic depth of both residual branches.
        gelu_approximate: tanh GELU (original) or exact erf GELU.
        layer_norm_epsilon: 1e-6 for the original checkpoints.
    """

    def __init__(
        self,
        num_heads,
        mlp_dim,
        dropout_rate=0.0,
        attention_dropout_rate=0.0,
        drop_path_rate=0.0,
        gelu_approximate=True,
        layer_norm_epsilon=1e-6,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.dropout_rate = dropout_rate
        self.attention_dropout_rate = attention_dropout_rate
        self.drop_path_rate = drop_path_rate
        self.gelu_approximate = gelu_approximate
        self.layer_norm_epsilon = layer_norm_epsilon

    def build(self, input_shape):
        norm_args = dict(epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy)
        self.attention_norm = keras.layers.LayerNormalization(name="attention_norm", **norm_args)
        self.attention_norm.build(input_shape)
        self.attention = MultiHeadSelfAttention(
            self.num_heads, self.attention_dropout_rate, dtype=self.dtype_policy, name="attention"
        )
        self.attention.build(input_shape)
        self.mlp_norm = keras.layers.LayerNormalization(name="mlp_norm", **norm_args)
        self.mlp_norm.build(input_shape)
        self.mlp = MlpBlock(
            self.mlp_dim,
            dropout_rate=self.dropout_rate,
            gelu_approximate=self.gelu_approximate,
            dtype=self.dtype_policy,
            name="mlp",
        )
        self.mlp.build(input_shape)
        self.dropout = keras.layers.Dropout(self.dropout_rate, dtype=self.dtype_policy)
        self.drop_path = DropPath(self.drop_path_rate, dtype=self.dtype_policy)

    def call(self, x, training=None, return_attention_scores=False):
        """Returns the new sequence, and the attention probabilities
        `(B, heads, T, T)` too when `return_attention_scores` is set."""
        y = self.attention_norm(x)
        attended = self.attention(y, training=training, return_attention_scores=return_attention_scores)
        if return_attention_scores:
            attended, scores = attended
        attended = self.dropout(attended, training=training)
        x = x + self.drop_path(attended, training=training)
        x = x + self.drop_path(self.mlp(self.mlp_norm(x), training=training), training=training)
        return (x, scores) if return_attention_scores else x

    def get_config(self):
        config = super().get_config()
        config.update(
            num_heads=self.num_heads,
            mlp_dim=self.mlp_dim,
            dropout_rate=self.dropout_rate,
            attention_dropout_rate=self.attention_dropout_rate,
            drop_path_rate=self.drop_path_rate,
            gelu_approximate=self.gelu_approximate,
            layer_norm_epsilon=self.layer_norm_epsilon,
        )
        return config
