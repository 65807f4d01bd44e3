"""ViT-S/16 training speed: keras_vit against keras-hub's ViT, one run.

    python benchmarks/training.py [--batch 8] [--rounds 8] [--jit]

Both models are ViT-S/16 at 224 with a 1000-class head on the class token,
compiled alike (AdamW, softmax cross-entropy on logits, no metrics); one train step is a
forward pass, the gradients and the optimizer update on the same random batch.
Prints images/s per model and keras_vit's ratio to keras-hub, timed in
interleaved rounds. Needs the `benchmark` extras.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from common import cpu_name, interleaved_medians, random_images, speed_args, train_step  # noqa: E402

import keras_vit  # noqa: E402

SIZE, CLASSES = 224, 1000
S16 = dict(patch_size=16, num_layers=12, num_heads=6, hidden_dim=384, mlp_dim=1536)


def peers():
    """ViT-S/16 from each implementation, random weights, logits out."""
    import keras_hub

    yield "keras_vit", keras_vit.ViT.from_preset("vit_s16", num_classes=CLASSES)
    backbone = keras_hub.models.ViTBackbone(image_shape=(SIZE, SIZE, 3), **S16)
    yield "keras_hub", keras_hub.models.ViTImageClassifier(backbone, CLASSES, pooling="token")


def main():
    args = speed_args(__doc__.splitlines()[0], rounds=8)
    print(f"CPU: {cpu_name()}")

    keras.utils.set_random_seed(0)
    images = random_images(args.batch, SIZE)
    labels = np.arange(args.batch) % CLASSES
    models = dict(peers())
    steps = {name: train_step(model, images, labels, args.jit) for name, model in models.items()}
    seconds = interleaved_medians(steps, args.rounds)
    speeds = {name: args.batch / s for name, s in seconds.items()}

    print(f"ViT-S/16, 224x224, train step, batch {args.batch}, fp32, {'XLA' if args.jit else 'no XLA'}")
    print(f"{'model':<10} {'params':>12} {'images/s':>9} {'keras_vit / it':>15}")
    for name, model in models.items():
        print(
            f"{name:<10} {model.count_params():>12,} {speeds[name]:>9.2f} "
            f"{speeds['keras_vit'] / speeds[name]:>14.2f}x"
        )


if __name__ == "__main__":
    main()
