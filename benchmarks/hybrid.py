"""Hybrid against plain: R50+ViT-B/16 and ViT-B/16 inference speed at 224, one run.

    python benchmarks/hybrid.py [--batch 8] [--rounds 5] [--jit]

Prints images/s of each (random weights, fp32, interleaved rounds so that
drift on a shared machine hits both alike) and their ratio.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from common import forward_images_per_second, speed_args  # noqa: E402

import keras_vit  # noqa: E402

PRESETS = ("vit_b16", "r50_vit_b16")


def main():
    args = speed_args(__doc__.splitlines()[0], rounds=5)
    models = {name: keras_vit.ViT.from_preset(name) for name in PRESETS}
    speeds, _ = forward_images_per_second(models, args)
    print(f"224x224, batch {args.batch}, fp32, {'XLA' if args.jit else 'no XLA'}")
    print(f"{'model':<12} {'params':>12} {'images/s':>9} {'vs vit_b16':>11}")
    base = speeds["vit_b16"]
    for name, model in models.items():
        speed = speeds[name]
        print(f"{name:<12} {model.count_params():>12,} {speed:>9.2f} {speed / base:>10.2f}x")


if __name__ == "__main__":
    main()
