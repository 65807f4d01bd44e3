"""Attention and MLP written in keras.ops against raw tf.*: ViT-B/16 speed and fused graph, one run.

    python benchmarks/layer_ops.py [--batch 8] [--rounds 10] [--jit]

Builds ViT-B/16 (224x224, fp32, random weights) twice, with the same weights:
once as the library writes its attention and MLP (`keras.ops`), once with
their `call` written in raw `tf.*` (2-D matmuls on the `(B * T, D)` rows,
`tf.nn.bias_add`, `tf.nn.gelu`). Prints the max abs difference of their
logits (run as timed), the oneDNN ops of each one's optimized graph (MatMuls
with what they fuse, and which op counts differ), images/s of each
(interleaved rounds) and the ratio, and the CPU.
"""

import collections
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from common import compiled_forward, interleaved_medians, random_images, speed_args  # noqa: E402
from tensorflow.python.eager import context  # noqa: E402

import keras_vit  # noqa: E402
from keras_vit.layers import MlpBlock, MultiHeadSelfAttention  # noqa: E402
from keras_vit.layers.mlp import gelu  # noqa: E402


class TfAttention(MultiHeadSelfAttention):
    def call(self, x, training=None, return_attention_scores=False):
        batch, tokens, hidden_dim = tf.shape(x)[0], tf.shape(x)[1], x.shape[-1]
        head_dim = hidden_dim // self.num_heads
        rows = tf.reshape(x, (-1, hidden_dim))

        def heads(dense):  # (B * T, D) -> (B, heads, T, D / heads)
            y = tf.nn.bias_add(
                tf.matmul(rows, tf.reshape(dense.kernel, (hidden_dim, hidden_dim))),
                tf.reshape(dense.bias, (hidden_dim,)),
            )
            return tf.transpose(tf.reshape(y, (batch, tokens, self.num_heads, head_dim)), (0, 2, 1, 3))

        query = heads(self.query_dense) * tf.cast(head_dim**-0.5, x.dtype)
        logits = tf.matmul(query, heads(self.key_dense), transpose_b=True)
        probs = tf.cast(tf.nn.softmax(tf.cast(logits, "float32")), x.dtype)
        attended = tf.matmul(self._dropout(probs, training=training), heads(self.value_dense))
        attended = tf.reshape(tf.transpose(attended, (0, 2, 1, 3)), (-1, hidden_dim))
        out = tf.matmul(attended, tf.reshape(self.output_dense.kernel, (hidden_dim, hidden_dim)))
        out = tf.reshape(tf.nn.bias_add(out, self.output_dense.bias), (batch, tokens, hidden_dim))
        return (out, probs) if return_attention_scores else out


class TfMlp(MlpBlock):
    def call(self, x, training=None):
        rows = tf.reshape(x, (-1, x.shape[-1]))
        hidden = tf.nn.bias_add(tf.matmul(rows, self.dense_0.kernel), self.dense_0.bias)
        hidden = self.dropout(gelu(hidden, self.gelu_approximate), training=training)
        out = tf.nn.bias_add(tf.matmul(hidden, self.dense_1.kernel), self.dense_1.bias)
        out = tf.reshape(out, tf.concat([tf.shape(x)[:-1], [x.shape[-1]]], 0))
        return self.dropout(out, training=training)


def with_tf_layers(model):
    """`model` with its attention and MLP blocks switched to the raw-tf `call`."""
    for i in range(model.num_layers):
        block = model.get_layer(f"encoderblock_{i}")
        block.attention.__class__ = TfAttention
        block.mlp.__class__ = TfMlp
    return model


def optimized_ops(model, images):
    """Op counts of the graph TF runs for `model(images)` once grappler and
    the oneDNN rewrite are done; fused ops as `op[fused, ops]`."""
    forward = tf.function(lambda: model(images, training=False))
    context.enable_run_metadata()
    forward()
    metadata = context.export_run_metadata()
    context.disable_run_metadata()
    counts = collections.Counter()
    for function_graph in metadata.function_graphs:
        for graph in function_graph.partition_graphs:
            for node in graph.node:
                fused = [op.decode() for op in node.attr["fused_ops"].list.s]
                counts[f"{node.op}[{', '.join(fused)}]" if fused else node.op] += 1
    return counts


def cpu_name():
    with open("/proc/cpuinfo") as f:
        return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown")


def main():
    args = speed_args(__doc__.splitlines()[0], rounds=10)
    models = {
        "keras.ops": keras_vit.ViT.from_preset("vit_b16"),
        "raw tf": with_tf_layers(keras_vit.ViT.from_preset("vit_b16")),
    }
    rng = np.random.default_rng(0)
    for weight in models["keras.ops"].weights:  # the initialisers' values, zeros (head, biases) made random
        weight.assign(weight.numpy() + rng.normal(0, 0.02, weight.shape).astype("float32"))
    models["raw tf"].set_weights(models["keras.ops"].get_weights())
    images = random_images(args.batch, 224)
    steps = {name: compiled_forward(model, images, args.jit) for name, model in models.items()}

    logits = {name: step() for name, step in steps.items()}
    diff = np.abs(logits["keras.ops"] - logits["raw tf"]).max()
    print(
        f"CPU: {cpu_name()}, {os.cpu_count()} cores; ViT-B/16, 224x224, batch {args.batch}, fp32, "
        f"{'XLA' if args.jit else 'no XLA'}"
    )
    print(f"logits: max abs diff {diff:.2e} (max abs logit {np.abs(logits['raw tf']).max():.2f})")

    counts = {name: optimized_ops(model, tf.constant(images)) for name, model in models.items()}
    all_ops = sorted(set(counts["keras.ops"]) | set(counts["raw tf"]))
    print(f"{'optimized graph (no XLA)':<50} {'keras.ops':>9} {'raw tf':>7}")
    for op in all_ops:
        if "MatMul" in op or "Gelu" in op:
            print(f"  {op:<48} {counts['keras.ops'][op]:>9} {counts['raw tf'][op]:>7}")
    differing = [op for op in all_ops if counts["keras.ops"][op] != counts["raw tf"][op]]
    print(f"ops whose counts differ: {', '.join(differing) or 'none'}")

    seconds = interleaved_medians(steps, args.rounds)
    for name, s in seconds.items():
        print(f"{name:<10} {args.batch / s:>7.2f} images/s")
    print(f"keras.ops / raw tf: {seconds['raw tf'] / seconds['keras.ops']:.3f}x images/s")


if __name__ == "__main__":
    main()
