"""bfloat16 against float32 for keras_vit on this CPU, one run.

    python benchmarks/bf16.py [--batch 8] [--rounds 6] [--jit]

Times, in interleaved rounds, the ViT-B/16 forward pass and the ViT-S/16
train step (AdamW) with `dtype="mixed_bfloat16"` and with float32, and prints
images/s and the bf16 / fp32 ratio of each, after the CPU's name and flags:
whether bf16 pays depends on the CPU (and on how oneDNN uses it), so measure
it on yours.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from common import compiled_forward, cpu_name, interleaved_medians, random_images, speed_args, train_step  # noqa: E402

import keras_vit  # noqa: E402

DTYPES = ("float32", "mixed_bfloat16")


def main():
    args = speed_args(__doc__.splitlines()[0], rounds=6)
    print(f"CPU: {cpu_name()}; batch {args.batch}, {'XLA' if args.jit else 'no XLA'}")
    keras.utils.set_random_seed(0)
    images = random_images(args.batch, 224)
    labels = np.arange(args.batch) % 1000
    steps = {}
    for dtype in DTYPES:
        forward = keras_vit.ViT.from_preset("vit_b16", dtype=dtype)
        steps["ViT-B/16 forward", dtype] = compiled_forward(forward, images, args.jit)
        trained = keras_vit.ViT.from_preset("vit_s16", dtype=dtype)
        steps["ViT-S/16 train step", dtype] = train_step(trained, images, labels, args.jit)
    seconds = interleaved_medians(steps, args.rounds)
    print(f"{'workload':<20} {'float32':>14} {'mixed_bfloat16':>15} {'bf16 / fp32':>12}")
    for workload in dict.fromkeys(name for name, _ in steps):
        fp32, bf16 = (args.batch / seconds[workload, dtype] for dtype in DTYPES)
        print(f"{workload:<20} {fp32:>8.2f} img/s {bf16:>9.2f} img/s {bf16 / fp32:>11.2f}x")


if __name__ == "__main__":
    main()
