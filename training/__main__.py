"""`python -m keras_vit.training [--config NAME] [flags] [--set key=value ...]`

Trains a ViT with `model.fit`. With no arguments: the main job, a small ViT
trained on scikit-learn's digits (offline, a few minutes on 2 CPU cores).
Configs live in `training/configs/`; flags and `--set` override them.
"""

import argparse
import json
import sys

from keras_vit.training import config as configs

# Flag -> what its config key does; `--batch-size 64` is `--set batch_size=64`.
FLAGS = {
    "preset": "the architecture, a keras_vit preset name (keras_vit.list_presets())",
    "weights": "weights to start from: a named source of the preset (e.g. imagenet21k), "
    "a checkpoint file (.npz, .safetensors, .keras) or a preset folder",
    "image_size": "input side in pixels; --set image_size=[height,width] for a rectangle",
    "data": "digits, a TensorFlow Datasets name (cifar10, cifar100, oxford_iiit_pet, oxford_flowers102, "
    "imagenet2012) or a folder with one sub-folder of images per class",
    "data_dir": "the folder TensorFlow Datasets reads from, a local copy",
    "batch_size": "global batch size, over all replicas",
    "epochs": "training epochs",
    "steps_per_epoch": "training steps per epoch; null: training images // batch size",
    "recipe": f"optimizer and schedule: {', '.join(configs.RECIPES)}",
    "learning_rate": "peak learning rate, reached after warmup_steps",
    "precision": f"one of {', '.join(configs.PRECISIONS)} "
    "(auto: mixed_bfloat16 on TPU, mixed_float16 on GPU, float32 on CPU)",
    "strategy": f"one of {', '.join(configs.STRATEGIES)} (auto: from the machine and TF_CONFIG; with "
    "KERAS_BACKEND=jax, data_parallel over all devices; model_parallel takes --set model_parallel_size=K)",
    "output": "folder for model.keras, preset/, results.json, logs/ and backup/ (a rerun resumes from it); "
    "multi_worker: one shared folder, which the chief writes",
    "seed": "random seed of the data split and order, the initial weights and the augmentation",
}


def argument_parser():
    defaults = configs.load_config(configs.DEFAULT)
    parser = argparse.ArgumentParser(
        prog="python -m keras_vit.training",
        description=__doc__.split("\n\n")[1],
        epilog=f"Defaults shown are those of config {configs.DEFAULT}; another --config brings its own.",
    )
    parser.add_argument(
        "--config",
        default=configs.DEFAULT,
        help=f"one of {', '.join(configs.list_configs())} or a .json path (default: {configs.DEFAULT})",
    )
    for key, text in FLAGS.items():
        default = defaults[key] if isinstance(defaults[key], str) else json.dumps(defaults[key])
        parser.add_argument("--" + key.replace("_", "-"), dest=key, help=f"{text} (default: {default})")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key, e.g. --set augment.mixup=0.8 (a value is read as JSON if it can be)",
    )
    return parser


def parse(argv=None):
    args = argument_parser().parse_args(argv)
    overrides = [f"{key}={getattr(args, key)}" for key in FLAGS if getattr(args, key) is not None]
    return configs.load_config(args.config, overrides + args.set)


def main(argv=None):
    try:
        config = parse(argv)
    except ValueError as e:
        sys.exit(f"error: {e}")
    if config["verbose"] == "auto":  # a progress bar on a terminal, else one line per epoch
        config["verbose"] = 1 if sys.stdout.isatty() else 2
    from keras_vit.training import callbacks, train

    errors = (callbacks.RunError,)
    if config["export"]:  # only a run that exports imports the export stack
        from keras_vit import export

        errors += (export.ExportError, export.VerificationError)
    try:
        prepared = train.prepare(config)
    except ValueError as e:
        sys.exit(f"error: {e}")
    try:
        train.fit(prepared)
    except errors as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
