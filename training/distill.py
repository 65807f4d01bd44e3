"""DeiT's hard-label distillation (Touvron et al., ICML 2021, section 5.2).

A distilled keras_vit.ViT has two heads: the class head on the class token and
the distillation head on the distillation token. Training minimises
`½ CE(class head, y) + ½ CE(distillation head, argmax teacher(x))`, the
teacher seeing the same (augmented) images; at inference the logits are the
mean of both heads', as the ViT computes them.
"""

import os

import keras
import numpy as np
import tensorflow as tf
from keras import ops

import keras_vit
from keras_vit.saving import is_preset_folder


def check_teacher_path(path):
    """A ValueError unless `path` is a `.keras` file or a keras_vit preset folder."""
    if not (is_preset_folder(path) or (path.endswith(".keras") and os.path.isfile(path))):
        raise ValueError(f"distill.teacher must be a .keras file or a keras_vit preset folder, got {path!r}.")


def load_teacher(path, num_classes):
    """The teacher: any Keras model from a `.keras` file (safe mode), or a
    keras_vit preset folder; frozen. It takes the student's input images and
    returns `(B, num_classes)` scores (logits or probabilities: only their
    argmax is used). Call in the strategy's scope."""
    try:
        teacher = (
            keras_vit.load_model(path)
            if is_preset_folder(path)
            else keras.saving.load_model(path, safe_mode=True, compile=False)
        )
    except Exception as error:  # Keras raises many kinds for a damaged or foreign file
        raise ValueError(f"distill.teacher {path} does not load as a Keras model: {error}") from None
    width = teacher.output_shape[-1] if isinstance(teacher.output_shape, tuple) else None
    if width != num_classes:
        raise ValueError(
            f"distill.teacher {path} outputs {teacher.output_shape}, expected (batch, {num_classes}): "
            f"one score per class of the data set."
        )
    teacher.trainable = False
    return teacher


def use_hard_distillation(model, teacher):
    """Makes `model.fit` train the distilled ViT `model` with DeiT's hard-label
    loss against `teacher`; `model` must be compiled with the class head's loss
    (its label smoothing applies to the true labels only, as in DeiT). The
    reported `loss` is the total; metrics are on the mean of both heads, the
    model's output. Evaluation and prediction are unchanged."""
    heads = model.feature_extractor(("class_logits", "distillation_logits"))
    teacher_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def train_step(data):
        images, labels = data[0], data[1]
        teacher_labels = ops.argmax(teacher(images, training=False), axis=-1)
        with tf.GradientTape() as tape:
            logits = heads(images, training=True)
            class_loss = model.compute_loss(x=images, y=labels, y_pred=logits["class_logits"])
            distillation_loss = teacher_loss(teacher_labels, logits["distillation_logits"])
            loss = 0.5 * class_loss + 0.5 * distillation_loss
            scaled = model.optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled, model.trainable_weights)
        model.optimizer.apply(gradients, model.trainable_weights)
        # Keras' losses are divided by the replicas (their sum is the global mean); the tracker takes each's.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        for metric in model.metrics:
            if metric.name == "loss":
                metric.update_state(loss * replicas, sample_weight=ops.shape(images)[0])
        mean = (logits["class_logits"] + logits["distillation_logits"]) / 2
        return model.compute_metrics(images, labels, mean)

    model.train_step = train_step
    model.train_function = None  # traced again with this step


def evaluate(model, teacher, dataset):
    """Test-split numbers of a distilled run: the teacher's accuracy, each
    head's, and how often the distillation head picks the teacher's class.
    `dataset` yields `(images, one-hot labels)` batches."""
    labels = np.concatenate([np.argmax(y, axis=-1) for _, y in dataset.as_numpy_iterator()])
    teacher_top1 = np.argmax(teacher.predict(dataset, verbose=0), axis=-1)
    heads = model.feature_extractor(("class_logits", "distillation_logits")).predict(dataset, verbose=0)
    class_top1 = np.argmax(heads["class_logits"], axis=-1)
    distillation_top1 = np.argmax(heads["distillation_logits"], axis=-1)
    return dict(
        teacher_test_accuracy=float(np.mean(teacher_top1 == labels)),
        class_head_test_accuracy=float(np.mean(class_top1 == labels)),
        distillation_head_test_accuracy=float(np.mean(distillation_top1 == labels)),
        distillation_head_teacher_agreement=float(np.mean(distillation_top1 == teacher_top1)),
    )
