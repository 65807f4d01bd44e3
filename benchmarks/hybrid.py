"""Hybrid against plain: R50+ViT-B/16 and ViT-B/16 inference speed at 224, one run.

    python benchmarks/hybrid.py [--batch 8] [--rounds 5] [--jit]

Prints images/s of each (random weights, fp32, interleaved rounds so that
drift on a shared machine hits both alike) and their ratio.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
from common import compiled_forward, interleaved_medians, random_images  # noqa: E402

import keras_vit  # noqa: E402

PRESETS = ("vit_b16", "r50_vit_b16")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--jit", action="store_true", help="compile each forward pass with XLA")
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    images = random_images(args.batch, 224)
    models = {name: keras_vit.ViT.from_preset(name) for name in PRESETS}
    seconds = interleaved_medians(
        {name: compiled_forward(model, images, args.jit) for name, model in models.items()}, args.rounds
    )
    print(f"224x224, batch {args.batch}, fp32, {'XLA' if args.jit else 'no XLA'}")
    print(f"{'model':<12} {'params':>12} {'images/s':>9} {'vs vit_b16':>11}")
    base = args.batch / seconds["vit_b16"]
    for name, model in models.items():
        speed = args.batch / seconds[name]
        print(f"{name:<12} {model.count_params():>12,} {speed:>9.2f} {speed / base:>10.2f}x")


if __name__ == "__main__":
    main()
