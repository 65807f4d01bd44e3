"""Shared timing helpers for the benchmarks: interleaved runs, medians."""

import argparse
import statistics
import time

import numpy as np
import keras
import tensorflow as tf


def matmul_gflops(size=2048, repeats=20, dtype=tf.float32):
    """This machine's measured dense matmul rate, in GFLOP/s."""
    a = tf.random.normal((size, size), dtype=dtype)
    b = tf.random.normal((size, size), dtype=dtype)
    step = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step().numpy()
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e9


def interleaved_medians(functions, rounds, warmup=2):
    """Runs each function `warmup` times, then `rounds` times in turn (so drift
    hits all alike); returns each one's median seconds per call."""
    for fn in functions.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in functions}
    for _ in range(rounds):
        for name, fn in functions.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def compiled_forward(model, images, jit_compile=False):
    """A no-argument callable running `model` on `images` in a tf.function."""
    images = tf.constant(images)
    forward = tf.function(lambda: model(images, training=False), jit_compile=jit_compile)
    return lambda: tf.nest.map_structure(lambda t: t.numpy(), forward())


def random_images(batch, size, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (batch, size, size, 3)).astype("float32")


def forward_pass_args(description, rounds):
    """The flags of the forward-pass benchmarks: --batch, --rounds, --jit."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--jit", action="store_true", help="compile each forward pass with XLA")
    return parser.parse_args()


def forward_images_per_second(models, args, size=224):
    """Images/s of each model's forward pass on the same random batch, timed
    in interleaved rounds (`args` from `forward_pass_args`)."""
    keras.utils.set_random_seed(0)
    images = random_images(args.batch, size)
    seconds = interleaved_medians(
        {name: compiled_forward(model, images, args.jit) for name, model in models.items()}, args.rounds
    )
    return {name: args.batch / s for name, s in seconds.items()}
