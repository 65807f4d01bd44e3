"""LoRA (Hu et al., 2021, arXiv 2106.09685) for a keras_vit.ViT, with Keras' own adapters.

`Dense.enable_lora(rank)` and `EinsumDense.enable_lora(rank)` add float32
weights `lora_kernel_a` (random) and `lora_kernel_b` (zeros); the layer's
`kernel` property then reads `_kernel + (alpha / rank) * a @ b` (alpha = rank,
so the scale is 1), which is what `MultiHeadSelfAttention.call` and
`MlpBlock.call` multiply by. For an attention kernel `(D, heads, D / heads)`
Keras factorises per head: `a` is `(D, heads, rank)`, `b` `(rank, D / heads)`.
Keras saves a LoRA layer's merged kernel and no adapters.
"""

import keras
from keras import ops

# The layers that stay trainable under LoRA: the classification heads (DeiT's second one too).
HEADS = ("head", "distillation_head")


def target_layers(model):
    """The layers LoRA adapts, block by block: the attention `query`, `key`,
    `value`, `attention_output` (EinsumDense) and the MLP `dense_0`, `dense_1` (Dense)."""
    layers = []
    for i in range(model.num_layers):
        block = model.get_layer(f"encoderblock_{i}")
        attention, mlp = block.attention, block.mlp
        layers += [
            attention.query_dense,
            attention.key_dense,
            attention.value_dense,
            attention.output_dense,
            mlp.dense_0,
            mlp.dense_1,
        ]
    return layers


def is_enabled(model):
    """Whether `model` has LoRA adapters."""
    return any(layer.lora_enabled for layer in target_layers(model))


def enable(model, rank):
    """Adds adapters of rank `rank` to `target_layers(model)` and freezes every
    other weight but the head's (see `ViT.enable_lora`)."""
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise ValueError(f"LoRA rank must be a positive int, got {rank!r}.")
    if is_enabled(model):
        raise ValueError(
            f"{model.name} already has LoRA adapters; enable LoRA once per model (a loaded model has "
            f"none: its kernels hold the merged adapters)."
        )
    for variable in model.weights:
        variable.trainable = False
    for layer in target_layers(model):
        layer.enable_lora(rank)  # new, trainable lora_kernel_a and lora_kernel_b
    for layer in model.layers:
        if layer.name in HEADS:
            for variable in layer.weights:
                variable.trainable = True
    # Functions traced before the adapters existed read the bare kernels: trace again.
    model.train_function = model.test_function = model.predict_function = None


def merged_kernel(layer):
    """A LoRA layer's kernel with its adapter merged in, in the variable's dtype
    (the `kernel` property casts to the compute dtype)."""
    delta = ops.matmul(layer.lora_kernel_a, layer.lora_kernel_b) * (layer.lora_alpha / layer.lora_rank)
    return ops.add(layer._kernel, ops.cast(delta, layer._kernel.dtype))


def merged_weights(model):
    """`{path: value}`: `model`'s weights with every adapter merged into its
    kernel and left out, the weights of the same ViT without LoRA, in their
    order."""
    lora = [layer for layer in target_layers(model) if layer.lora_enabled]
    merged = {id(layer._kernel): merged_kernel(layer) for layer in lora}
    adapters = {id(w) for layer in lora for w in (layer.lora_kernel_a, layer.lora_kernel_b)}
    return {w.path: merged.get(id(w), w) for w in model.weights if id(w) not in adapters}


def restart_adapters(model):
    """After `model.load_weights` into a LoRA model: Keras loads the merged
    kernels and zeroes `lora_kernel_a` (and `b` is zero from the file), which
    leaves adapters that can never learn (each one's gradient is the other).
    Draws `a` afresh as `enable_lora` does; `b` stays zero, so the logits are
    the loaded ones."""
    for layer in target_layers(model):
        if layer.lora_enabled:
            initializer = keras.initializers.HeUniform()  # Keras' enable_lora default for `a`
            layer.lora_kernel_a.assign(initializer(layer.lora_kernel_a.shape))
