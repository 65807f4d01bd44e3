"""ViT-B/16 inference speed: keras_vit against keras-hub and vit-keras, one run.

    python benchmarks/inference.py [--batch 8] [--rounds 10] [--jit]

Prints images/s per implementation, keras_vit's ratio to each peer, and each
one's fraction of this machine's measured fp32 matmul rate (ViT-B/16 at 224 is
35.1 GFLOP per image), the matmul timed in the same rounds as the models. Needs the `benchmark` extras.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from common import cpu_name, forward_images_per_second, speed_args  # noqa: E402

import keras_vit  # noqa: E402

GFLOP_PER_IMAGE = 35.1  # ViT-B/16 at 224: 17.56 GMACs.


def peers():
    """The same architecture from each implementation, random weights."""
    import keras_hub
    from vit_keras import vit

    yield "keras_vit", keras_vit.ViT.from_preset("vit_b16")
    yield (
        "keras_hub",
        keras_hub.models.ViTBackbone(
            image_shape=(224, 224, 3),
            patch_size=16,
            num_layers=12,
            num_heads=12,
            hidden_dim=768,
            mlp_dim=3072,
        ),
    )
    yield "vit_keras", vit.vit_b16(image_size=224, pretrained=False, include_top=True, pretrained_top=False)


def main():
    args = speed_args(__doc__.splitlines()[0], rounds=10)
    print(f"CPU: {cpu_name()}")
    models = dict(peers())
    speeds, rate = forward_images_per_second(models, args)
    print(
        f"ViT-B/16, 224x224, batch {args.batch}, fp32, {'XLA' if args.jit else 'no XLA'}; "
        f"fp32 matmul rate {rate:.0f} GFLOP/s"
    )
    print(f"{'model':<10} {'params':>12} {'images/s':>9} {'keras_vit / it':>15} {'of matmul rate':>15}")
    ours = speeds["keras_vit"]
    for name, model in models.items():
        speed = speeds[name]
        print(
            f"{name:<10} {model.count_params():>12,} {speed:>9.2f} {ours / speed:>14.2f}x "
            f"{speed * GFLOP_PER_IMAGE / rate:>14.0%}"
        )


if __name__ == "__main__":
    main()
