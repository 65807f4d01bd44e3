"""TensorFlow's start-up, at the log level asked for. `keras_vit` imports
TensorFlow through it, first, so that its programs (`python -m
keras_vit.training`, `python -m keras_vit.export`) print one-line errors."""

import contextlib
import os
import re
import sys
import tempfile


@contextlib.contextmanager
def captured_stderr():
    """Sends what is written to file descriptor 2 (C++ logs included) into a
    list of lines, which the `with` statement binds, until the block ends."""
    lines = []
    sys.stderr.flush()
    stderr = os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            yield lines
        finally:
            sys.stderr.flush()
            os.dup2(stderr, 2)
            os.close(stderr)
            log.seek(0)
            lines += log.read().decode(errors="replace").splitlines(keepends=True)


def import_tensorflow():
    """Imports TensorFlow and finds its devices, with TF_CPP_MIN_LOG_LEVEL
    (default 2: errors only) applied to what it writes meanwhile: TF 2.21
    writes its import lines (oneDNN, CUDA drivers) before that level takes
    effect."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")  # the layers are written for it
    level = os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        with captured_stderr() as lines:
            import tensorflow as tf

            tf.config.list_physical_devices()
    finally:
        sys.stderr.writelines(shown(lines, int(level) if level.isdigit() else 0))
        sys.stderr.flush()


def shown(lines, level):
    """The lines of TensorFlow's start-up that log level `level` shows: all
    but absl's lines (I/W/E/F, then the date) below it. Where no CUDA driver
    is installed, the error "failed call to cuInit" only means "no GPU", as
    the info line before it says: it counts as info."""
    no_driver = any("Could not find cuda drivers" in line for line in lines)
    for line in lines:
        if line.startswith("WARNING: All log messages before absl::InitializeLog()"):
            severity = 1
        elif no_driver and "failed call to cuInit" in line:
            severity = 0
        else:
            severity = "IWEF".index(line[0]) if re.match(r"[IWEF]\d{4} ", line) else 3
        if severity >= level:
            yield line
