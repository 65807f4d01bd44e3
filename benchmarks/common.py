"""Shared timing helpers for the benchmarks: interleaved runs, medians."""

import argparse
import statistics
import subprocess
import time

import keras
import numpy as np
import tensorflow as tf

MATMUL_SIZE = 2048


def cpu_name():
    """`lscpu`'s model name, core count and the AVX-512 BF16 / AMX flags: the
    line every benchmark prints first."""
    lines = subprocess.check_output(["lscpu"], text=True).splitlines()
    fields = {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in lines)}
    flags = set(fields.get("Flags", "").split())
    extras = [f for f in ("avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{fields['Model name']}, {fields['CPU(s)']} cores, {' '.join(extras) or 'no AVX-512'}"


def matmul_step(size=MATMUL_SIZE, dtype=tf.float32):
    """A no-argument callable running one dense `(size, size)` matmul; it does
    `2 * size**3` FLOPs."""
    a = tf.random.normal((size, size), dtype=dtype)
    b = tf.random.normal((size, size), dtype=dtype)
    step = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
    return lambda: step().numpy()


def interleaved_medians(functions, rounds, warmup=2, settle=0):
    """Runs each function `warmup` times, then `rounds` times in turn (so drift
    hits all alike); returns each one's median seconds per call. With `settle`,
    each timed call follows that many untimed calls of the same function, so
    threads the previous runtime left spinning (onnxruntime's do) have gone
    quiet and do not slow the next one down."""
    for fn in functions.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in functions}
    for _ in range(rounds):
        for name, fn in functions.items():
            for _ in range(settle):
                fn()
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def compiled_forward(model, images, jit_compile=False):
    """A no-argument callable running `model` on `images` in a tf.function."""
    images = tf.constant(images)
    forward = tf.function(lambda: model(images, training=False), jit_compile=jit_compile)
    return lambda: tf.nest.map_structure(lambda t: t.numpy(), forward())


def train_step(model, images, labels, jit_compile=False):
    """A no-argument callable that runs one compiled train step of `model`
    (AdamW, softmax cross-entropy on logits, no metrics) on `images`, `labels`."""
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[],
        jit_compile=jit_compile,
    )
    return lambda: model.train_on_batch(images, labels)


def random_images(batch, size, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (batch, size, size, 3)).astype("float32")


def speed_args(description, rounds):
    """The flags of the speed benchmarks: --batch, --rounds, --jit."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--jit", action="store_true", help="compile with XLA (jit_compile=True)")
    return parser.parse_args()


def forward_images_per_second(models, args, size=224):
    """Images/s of each model's forward pass on the same random batch, and
    this machine's fp32 matmul rate in GFLOP/s (a 2048x2048 matmul), all
    timed in the same interleaved rounds (`args` from `speed_args`).
    Returns `(speeds, rate)`."""
    keras.utils.set_random_seed(0)
    images = random_images(args.batch, size)
    steps = {name: compiled_forward(model, images, args.jit) for name, model in models.items()}
    seconds = interleaved_medians({**steps, "matmul": matmul_step()}, args.rounds)
    matmul_seconds = seconds.pop("matmul")
    return {name: args.batch / s for name, s in seconds.items()}, 2 * MATMUL_SIZE**3 / matmul_seconds / 1e9
