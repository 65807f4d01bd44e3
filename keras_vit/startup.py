"""The start-up of keras_vit's programs (`python -m keras_vit.training`,
`.training.fewshot`, `.export`, `.analysis`, `.convert` and the `keras-vit-*`
scripts): Keras, and TensorFlow on its backend, imported at the log level
asked for, so that the programs print one-line errors and nothing else.

`python -m keras_vit.<program>` imports `keras_vit` (and so Keras) before the
program's own code runs: `keras_vit/__init__.py` calls `quiet_start` first,
in such a process only. Imported by anything else, keras_vit leaves the
environment, file descriptor 2 and the choice of backend alone."""

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


PROGRAMS = ("keras_vit.training", "keras_vit.export", "keras_vit.analysis", "keras_vit.convert")
# The programs built on TensorFlow (tf.data, TF's converters) and the Keras backends each trains or runs on.
BACKENDS = {"keras_vit.training": ("tensorflow", "jax"), "keras_vit.export": ("tensorflow",)}
SCRIPTS = {  # the console scripts of pyproject.toml and their programs
    "keras-vit-train": "keras_vit.training",
    "keras-vit-fewshot": "keras_vit.training",
    "keras-vit-export": "keras_vit.export",
    "keras-vit-analysis": "keras_vit.analysis",
    "keras-vit-convert": "keras_vit.convert",
}


def program():
    """The keras_vit program this process runs (one of PROGRAMS), or None:
    read from `python -m NAME` or a console script's name."""
    argv = sys.orig_argv
    module = argv[argv.index("-m") + 1] if "-m" in argv[:-1] else ""
    module = SCRIPTS.get(os.path.basename(sys.argv[0]) if sys.argv else "", module)
    return next((name for name in PROGRAMS if module == name or module.startswith(name + ".")), None)


def quiet_start(name):
    """Imports Keras (and TensorFlow, with its devices, where the backend or
    the program needs it) for program `name`, with TF_CPP_MIN_LOG_LEVEL
    (default 2: errors only) applied to what is written meanwhile: TF 2.21
    writes its import lines (oneDNN, CUDA drivers) before that level takes
    effect. The training and export programs are built on TensorFlow: Keras'
    backend defaults to it there, and the training program also trains on
    JAX, with TensorFlow kept off the GPUs (tf.data only)."""
    if name in BACKENDS:
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    level = os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    missing = None  # why TensorFlow cannot be imported beside another backend
    try:
        with captured_stderr() as lines:
            import keras

            backend = keras.config.backend()
            if backend == "tensorflow" or backend in BACKENDS.get(name, ()):
                missing = tensorflow_devices(backend)
    finally:
        sys.stderr.writelines(shown(lines, int(level) if level.isdigit() else 0))
        sys.stderr.flush()
    if missing:
        sys.exit(
            f"error: python -m {name} reads its data with tf.data, and TensorFlow is not installed "
            f"({missing}); pip install tensorflow beside {backend}."
        )
    if name in BACKENDS and backend not in BACKENDS[name]:
        runs_on = " or ".join({"tensorflow": "TensorFlow", "jax": "JAX"}[b] for b in BACKENDS[name])
        sys.exit(
            f"error: python -m {name} runs on {runs_on}, and KERAS_BACKEND is {backend!r}; "
            f"unset it or set KERAS_BACKEND=tensorflow (the library itself runs on {backend})."
        )


def tensorflow_devices(backend):
    """Imports TensorFlow and lists its devices; beside another backend, it
    sees no GPU, which that backend's arrays own. Returns None, or the
    ImportError's text where TensorFlow is not installed beside another backend."""
    try:
        import tensorflow as tf
    except ImportError as error:
        if backend == "tensorflow":
            raise
        return str(error)
    if backend != "tensorflow":
        tf.config.set_visible_devices([], "GPU")
    tf.config.list_physical_devices()
    return None


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
