"""The paper's few-shot linear evaluation (Sec. 4.1; big_vision's evaluator).

The representation is frozen: `ViT.feature_extractor(["pooled"])`. A linear
map to {-1, 1} targets is solved in closed form with L2 regularisation
(ridge, the bias unregularised), from `k` training images per class; the
accuracy is measured on the test split.

    python -m keras_vit.training.fewshot --model runs/digits/model.keras

The run's `results.json` beside the model gives the defaults of `--data`,
`--data-dir` and `--resize`: the data, and the resize (to the model's image
size), that the run's own few-shot evaluation used.
"""

import argparse
import json
import os
import sys

import keras
import numpy as np

import keras_vit
from keras_vit.training import config as configs
from keras_vit.training import data

SHOTS = (1, 5, 10, 25)


def fewshot_accuracy(x_train, y_train, x_test, y_test, num_classes, l2_reg=1.0):
    """Ridge regression to {-1, 1} one-vs-all targets, closed form:
    `W = (XᵀX + λI)⁻¹ XᵀY` on features centred by the training mean (with
    the mean target as the bias). Returns the test top-1 accuracy."""
    x_train, x_test = np.asarray(x_train, np.float64), np.asarray(x_test, np.float64)
    targets = 2.0 * np.eye(num_classes)[y_train] - 1.0
    x_mean, t_mean = x_train.mean(0), targets.mean(0)
    xc = x_train - x_mean
    w = np.linalg.solve(xc.T @ xc + l2_reg * np.eye(xc.shape[1]), xc.T @ (targets - t_mean))
    scores = (x_test - x_mean) @ w + t_mean
    return float(np.mean(np.argmax(scores, 1) == np.asarray(y_test)))


def sample_shots(labels, shots, seed=0):
    """Indices of the first `shots` examples of each class in a seeded shuffle."""
    order = np.random.default_rng(seed).permutation(len(labels))
    return np.concatenate([order[labels[order] == c][:shots] for c in np.unique(labels)])


def features(model, ds, image_size, num_classes, resize, batch_size=64):
    """Pooled features `(N, D)` and labels `(N,)` of every example in `ds`,
    in one pass over it."""
    extractor = model.feature_extractor(["pooled"])
    batches = data.pipeline(
        ds, image_size, num_classes, batch_size, training=False, resize=resize, drop_remainder=False
    )
    pooled, labels = zip(
        *((keras.ops.convert_to_numpy(extractor(x)["pooled"]), y.numpy().argmax(-1)) for x, y in batches)
    )
    return np.concatenate(pooled).astype("float64"), np.concatenate(labels)


def evaluate(model, splits, image_size, resize, shots=SHOTS, l2_reg=1.0, seed=0):
    """`{shots: test accuracy}` with `shots` training images per class."""
    x_train, y_train = features(model, splits.train, image_size, splits.num_classes, resize)
    x_test, y_test = features(model, splits.test, image_size, splits.num_classes, resize)
    results = {}
    for k in shots:
        idx = sample_shots(y_train, k, seed)
        results[k] = fewshot_accuracy(x_train[idx], y_train[idx], x_test, y_test, splits.num_classes, l2_reg)
    return results


# Flag -> its default where no results.json lies beside the model.
RUN_DEFAULTS = {"data": "digits", "data_dir": None, "resize": "bilinear"}


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m keras_vit.training.fewshot",
        description="Few-shot linear evaluation of a trained ViT.",
    )
    parser.add_argument(
        "--model", required=True, help="a .keras file or a preset folder, e.g. runs/digits/model.keras"
    )
    parser.add_argument(
        "--data", help="data set, as in python -m keras_vit.training (default: the run's, else digits)"
    )
    parser.add_argument("--data-dir", help="the folder TensorFlow Datasets reads from (default: the run's)")
    parser.add_argument(
        "--shots",
        type=int,
        nargs="+",
        default=list(SHOTS),
        help=f"training images per class (default: {' '.join(map(str, SHOTS))})",
    )
    parser.add_argument("--l2-reg", type=float, default=1.0, help="the ridge regularisation (default: 1.0)")
    parser.add_argument(
        "--resize",
        choices=configs.RESIZE_METHODS,
        metavar="METHOD",
        help=f"tf.image.resize method to the model's image size: {', '.join(configs.RESIZE_METHODS)} "
        "(default: the run's, else bilinear)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and of the shots (default: 0)")
    args = parser.parse_args(argv)
    run_results = os.path.join(os.path.dirname(args.model), "results.json")
    try:
        run = {}
        if os.path.isfile(run_results):
            with open(run_results) as f:
                run = json.load(f).get("config", {})
        for key, default in RUN_DEFAULTS.items():
            if getattr(args, key) is None:
                setattr(args, key, run.get(key, default))
        model = keras_vit.load_model(args.model)
        splits = data.load_splits(args.data, args.data_dir, args.seed)
    except ValueError as e:
        sys.exit(f"error: {e}")
    height, width = model.image_size
    print(
        f"data {args.data}, {height}x{width} images, resize {args.resize}"
        + (f" (defaults from {run_results})" if run else ""),
        flush=True,
    )
    results = evaluate(model, splits, model.image_size, args.resize, args.shots, args.l2_reg, args.seed)
    for k, acc in results.items():
        print(f"{k:>3}-shot accuracy: {acc:.4f}")
    return results


if __name__ == "__main__":
    main()
