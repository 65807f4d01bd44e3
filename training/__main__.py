"""`python -m training [--config NAME] [flags] [--set key=value ...]`

Trains a ViT with `model.fit`. With no arguments: the main job, a small ViT
trained on scikit-learn's digits (offline, a few minutes on 2 CPU cores).
Configs live in `training/configs/`; flags and `--set` override them.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from training import config as configs  # noqa: E402

# Flag -> config key; each flag overrides its key.
FLAGS = {
    "preset": str, "weights": str, "image_size": int, "data": str, "data_dir": str,
    "batch_size": int, "epochs": int, "steps_per_epoch": int, "recipe": str,
    "learning_rate": float, "precision": str, "strategy": str, "output": str, "seed": int,
}


def parse(argv=None):
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=configs.DEFAULT, help=f"one of {', '.join(configs.list_configs())} or a .json path")
    for key, kind in FLAGS.items():
        parser.add_argument("--" + key.replace("_", "-"), type=kind, dest=key)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any config key")
    args = parser.parse_args(argv)
    overrides = [f"{key}={getattr(args, key)}" for key in FLAGS if getattr(args, key) is not None]
    return configs.load_config(args.config, overrides + args.set)


def main(argv=None):
    try:
        config = parse(argv)
        from training import callbacks, train

        prepared = train.prepare(config)
    except ValueError as e:
        sys.exit(f"error: {e}")
    try:
        train.fit(prepared)
    except callbacks.NaNLossError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
