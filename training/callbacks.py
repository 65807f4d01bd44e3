"""Callbacks of a run: resume, best checkpoint, NaN stop, throughput."""

import math
import os
import time

import keras


class NaNLossError(RuntimeError):
    pass


class StopOnNaN(keras.callbacks.Callback):
    """Stops the run with NaNLossError when the training loss is not finite."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise NaNLossError(
                f"The training loss became {float(loss)} at step {int(self.model.optimizer.iterations.numpy())}. "
                f"Lower learning_rate, check the data, or use precision=float32."
            )


class Progress(keras.callbacks.Callback):
    """Says when a run resumes from a backup; measures training images/s
    (without the first epoch, which compiles)."""

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

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_seconds.append(time.perf_counter() - self.start)

    def images_per_second(self):
        seconds = self.epoch_seconds[1:] or self.epoch_seconds
        return self.images_per_epoch * len(seconds) / sum(seconds) if seconds else float("nan")


def standard(output, global_batch_size, steps_per_epoch, monitor="val_accuracy"):
    """BackupAndRestore (every epoch, under `output/backup`), the best
    weights by `monitor` (`output/best.weights.h5`), NaN stop, progress,
    TensorBoard logs (`output/logs`)."""
    progress = Progress(global_batch_size, steps_per_epoch)
    return progress, [
        keras.callbacks.BackupAndRestore(os.path.join(output, "backup")),
        progress,
        StopOnNaN(),
        keras.callbacks.ModelCheckpoint(
            os.path.join(output, "best.weights.h5"), monitor=monitor, mode="max",
            save_best_only=True, save_weights_only=True,
        ),
        keras.callbacks.TensorBoard(os.path.join(output, "logs")),
    ]


def summary_table(rows):
    """`rows`: (name, value) pairs → an aligned two-column table."""
    width = max(len(name) for name, _ in rows)
    line = "-" * (width + 3 + max(len(str(v)) for _, v in rows))
    return "\n".join([line, *(f"{name:<{width}}   {value}" for name, value in rows), line])
