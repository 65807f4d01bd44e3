"""The optimizers and learning-rate schedules of the paper and of DeiT.

- `finetune` (paper, App. B.1.1): SGD, momentum 0.9, no weight decay, cosine
  decay after a linear warmup, gradients clipped at global norm 1.
- `pretrain` (paper, App. B.1): Adam β=(0.9, 0.999) with decoupled weight
  decay 0.1, linear warmup then linear decay, global-norm clipping at 1.
- `deit` (Touvron et al., 2021; from scratch on small data): AdamW, weight
  decay 0.05, cosine decay after a linear warmup (pair it with the augment
  options and drop-path of `configs/deit.json`).

Biases, LayerNorm scales, the class token and position embeddings get no
weight decay, as in DeiT and timm. Each recipe takes layer-wise learning-rate
decay (BEiT; timm's `--layer-decay`, big_vision's `lr_mults`):
`layer_decay_multipliers`.
"""

import keras
import tensorflow as tf

NO_DECAY = ["bias", "gamma", "beta", "token", "embeddings"]  # variable names


def warmup_cosine(peak, warmup_steps, total_steps):
    """Linear warmup from 0 to `peak` over `warmup_steps`, then cosine decay
    to 0 at `total_steps`: Keras' own CosineDecay."""
    _check_steps(warmup_steps, total_steps)
    return keras.optimizers.schedules.CosineDecay(
        0.0, total_steps - warmup_steps, warmup_target=peak, warmup_steps=warmup_steps
    )


@keras.saving.register_keras_serializable(package="keras_vit")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to `peak` over `warmup_steps`, then linear decay to
    0 at `total_steps` (the paper's pre-training; Keras has no warmup on its
    PolynomialDecay)."""

    def __init__(self, peak, warmup_steps, total_steps):
        _check_steps(warmup_steps, total_steps)
        self.peak, self.warmup_steps, self.total_steps = peak, warmup_steps, total_steps

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warmup = self.peak * step / max(self.warmup_steps, 1)
        progress = keras.ops.clip(
            (step - self.warmup_steps) / (self.total_steps - self.warmup_steps), 0.0, 1.0
        )
        return keras.ops.where(step < self.warmup_steps, warmup, self.peak * (1.0 - progress))

    def get_config(self):
        return dict(peak=self.peak, warmup_steps=self.warmup_steps, total_steps=self.total_steps)


def _check_steps(warmup_steps, total_steps):
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(
            f"warmup_steps {warmup_steps} must be in [0, total_steps {total_steps}); "
            f"lower warmup_steps or train for more steps."
        )


class _ClipSummedGradient:
    """Global-norm clipping of the gradient summed over the replicas. Keras
    clips each replica's share before its all-reduce, so with N replicas the
    update could be up to N times the clip and differs from one device's."""

    def _clip_gradients(self, grads):
        if keras.config.backend() != "tensorflow":  # keras.distribution on JAX: the gradient is global
            return super()._clip_gradients(grads)
        context = tf.distribute.get_replica_context()
        if not self.global_clipnorm or context is None or context.num_replicas_in_sync == 1:
            return super()._clip_gradients(grads)
        summed = context.all_reduce(tf.distribute.ReduceOp.SUM, [g for g in grads if g is not None])
        norm = tf.linalg.global_norm(summed)
        scale = self.global_clipnorm / tf.maximum(norm, self.global_clipnorm)  # min(1, clip / norm)
        return [None if g is None else g * tf.cast(scale, g.dtype) for g in grads]


class _LearningRateMultipliers:
    """Scales each variable's learning rate by `lr_multipliers[variable.path]`
    (1 for a variable not in it). The decoupled weight decay keeps the base rate."""

    lr_multipliers = {}

    def build(self, variables):
        super().build(variables)
        self._multiplier_by_index = [self.lr_multipliers.get(v.path, 1.0) for v in variables]

    def update_step(self, gradient, variable, learning_rate):
        multiplier = self._multiplier_by_index[self._get_variable_index(variable)]
        return super().update_step(gradient, variable, learning_rate * multiplier)


class ClippedSGD(_LearningRateMultipliers, _ClipSummedGradient, keras.optimizers.SGD):
    pass


class ClippedAdamW(_LearningRateMultipliers, _ClipSummedGradient, keras.optimizers.AdamW):
    pass


class AdamW(_LearningRateMultipliers, keras.optimizers.AdamW):
    pass


def layer_decay_multipliers(model, decay):
    """Layer-wise learning-rate decay: `{variable path: multiplier}` for a
    keras_vit.ViT. Block i gets `decay ** (depth - i)`, the embeddings (patch
    embedding, class token, position embedding, ResNet stem) `decay ** (depth + 1)`,
    the final norm, pre-logits and head 1 (left out), as in timm's
    `param_groups_layer_decay`."""
    depth, multipliers = model.num_layers, {}
    for variable in model.trainable_variables:
        layer = variable.path.split("/")[0]
        if layer.startswith("encoderblock_"):
            multipliers[variable.path] = decay ** (depth - int(layer[len("encoderblock_") :]))
        elif layer in ("resnet", "embedding", "class_token", "position_embedding"):
            multipliers[variable.path] = decay ** (depth + 1)
    return multipliers


def optimizer(recipe, learning_rate, total_steps, warmup_steps, weight_decay=None, lr_multipliers=None):
    """The optimizer of `recipe`, one of RECIPES (`config.validate` checks the
    name). `weight_decay=None` takes the recipe's own (0 / 0.1 / 0.05);
    `lr_multipliers` (`layer_decay_multipliers`) scales variables' rates."""
    if recipe == "finetune":
        if weight_decay:
            raise ValueError(
                f"The finetune recipe uses no weight decay (the paper's); got weight_decay={weight_decay}."
            )
        schedule = warmup_cosine(learning_rate, warmup_steps, total_steps)
        opt = ClippedSGD(schedule, momentum=0.9, global_clipnorm=1.0)
        opt.lr_multipliers = dict(lr_multipliers or {})
        return opt
    if recipe == "pretrain":
        schedule = WarmupLinearDecay(learning_rate, warmup_steps, total_steps)
        opt = ClippedAdamW(
            schedule,
            weight_decay=0.1 if weight_decay is None else weight_decay,
            beta_1=0.9,
            beta_2=0.999,
            global_clipnorm=1.0,
        )
    else:  # deit
        schedule = warmup_cosine(learning_rate, warmup_steps, total_steps)
        opt = AdamW(schedule, weight_decay=0.05 if weight_decay is None else weight_decay)
    opt.exclude_from_weight_decay(var_names=NO_DECAY)
    opt.lr_multipliers = dict(lr_multipliers or {})
    return opt
