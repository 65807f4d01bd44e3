"""Callbacks of a run: resume, best checkpoint, NaN stop, throughput."""

import json
import math
import os
import time

import keras

import keras_vit
from keras_vit import lora


class RunError(RuntimeError):
    """Stops a run with a one-line message for the user."""


class NaNLossError(RunError):
    pass


class BackupError(RunError):
    pass


class Backup(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore (`latest.weights.h5`, `training_metadata.json`)
    with each file written beside its place, then moved there (os.replace is
    atomic): a crash mid-write leaves the previous backup whole. A backup
    that cannot be read stops the run with a message that names it.

    It writes into `backup_dir` and resumes from `restore_dir` (default: the
    same). Under multi-worker every worker resumes from the chief's backup and
    the others write theirs elsewhere: TensorFlow's rule (tf.keras 2's
    BackupAndRestore, PreemptionCheckpointHandler); Keras 3's has no rule,
    and its workers would write and delete one folder together."""

    def __init__(self, backup_dir, restore_dir=None):
        super().__init__(backup_dir)
        self.restore_dir = restore_dir or backup_dir

    def _load_model(self):
        path = os.path.join(self.restore_dir, "latest.weights.h5")
        try:
            if os.path.exists(path):
                if self.model.optimizer is not None and not self.model.optimizer.built:
                    self.model.optimizer.build(self.model.trainable_variables)
                self.model.load_weights(path)
                if isinstance(self.model, keras_vit.ViT):  # loading leaves LoRA adapters that cannot learn
                    lora.restart_adapters(self.model)
            path = os.path.join(self.restore_dir, "training_metadata.json")
            if os.path.exists(path):
                with open(path) as f:
                    self.model._initial_epoch = int(json.load(f)["epoch"])
        except (OSError, ValueError, KeyError, TypeError) as e:  # h5py, JSON, another model's weights
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise BackupError(
                f"Cannot resume from {path} ({reason}). "
                f"Delete {self.restore_dir} to restart the run from epoch 1."
            ) from None

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        partial = os.path.join(self.backup_dir, "partial.weights.h5")  # save_weights wants .weights.h5
        self.model.save_weights(partial, overwrite=True)
        os.replace(partial, self._weights_path)
        with open(self._training_metadata_path + ".partial", "w") as f:
            json.dump({"epoch": self._current_epoch, "batch": self._last_batch_seen}, f)
        os.replace(self._training_metadata_path + ".partial", self._training_metadata_path)


class StopOnNaN(keras.callbacks.Callback):
    """Stops the run with NaNLossError when the training loss is not finite."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            step = int(self.model.optimizer.iterations.numpy())
            raise NaNLossError(
                f"The training loss became {float(loss)} at step {step}. "
                f"Lower learning_rate, check the data, or use precision=float32."
            )


class UnpadValidationLoss(keras.callbacks.Callback):
    """Multiplies each epoch's `val_loss` by `padded / n`: with validation
    batches padded by examples that weigh 0 (data.pipeline's `pad_to_batch`),
    Keras divides the summed loss by the padded count. First in the callback
    list, so that the others (TensorBoard, the history) get the true mean."""

    def __init__(self, ratio):
        super().__init__()
        self.ratio = ratio

    def on_epoch_end(self, epoch, logs=None):
        if logs and "val_loss" in logs:
            logs["val_loss"] *= self.ratio


class Progress(keras.callbacks.Callback):
    """Says when a run resumes from a backup and that the first step
    compiles; measures training images/s (without the first epoch, which
    compiles)."""

    def __init__(self, global_batch_size, steps_per_epoch):
        super().__init__()
        self.images_per_epoch = global_batch_size * steps_per_epoch
        self.initial_epoch = 0
        self.epoch_seconds = []

    def on_train_begin(self, logs=None):
        # BackupAndRestore, which runs before this callback, sets _initial_epoch.
        self.initial_epoch = getattr(self.model, "_initial_epoch", None) or 0
        if self.initial_epoch:
            print(f"Resuming from epoch {self.initial_epoch + 1} (backup restored)", flush=True)
        print(f"Compiling the first step{' (XLA)' if self.model.jit_compile else ''} ...", flush=True)

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_seconds.append(time.perf_counter() - self.start)

    def images_per_second(self):
        seconds = self.epoch_seconds[1:] or self.epoch_seconds
        return self.images_per_epoch * len(seconds) / sum(seconds) if seconds else float("nan")


def standard(output, global_batch_size, steps_per_epoch, restore_dir=None, monitor="val_accuracy"):
    """BackupAndRestore (every epoch, under `output/backup`; resumes from
    `restore_dir` if given), the best weights by `monitor`
    (`output/best.weights.h5`), NaN stop, progress, TensorBoard logs
    (`output/logs`)."""
    progress = Progress(global_batch_size, steps_per_epoch)
    return progress, [
        Backup(os.path.join(output, "backup"), restore_dir),
        progress,
        StopOnNaN(),
        keras.callbacks.ModelCheckpoint(
            os.path.join(output, "best.weights.h5"),
            monitor=monitor,
            mode="max",
            save_best_only=True,
            save_weights_only=True,
        ),
        keras.callbacks.TensorBoard(os.path.join(output, "logs")),
    ]


def summary_table(rows):
    """`rows`: (name, value) pairs → an aligned two-column table."""
    width = max(len(name) for name, _ in rows)
    line = "-" * (width + 3 + max(len(str(v)) for _, v in rows))
    return "\n".join([line, *(f"{name:<{width}}   {value}" for name, value in rows), line])
