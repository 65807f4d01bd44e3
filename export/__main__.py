"""python -m keras_vit.export MODEL [--format ...] [--quantize ...] [--calibration DATA] --out DIR

Writes the model in each format to DIR, runs every file in its own runtime
(and each .tflite file on LiteRT's GPU accelerator), prints the comparison
with Keras and writes it to DIR/report.json.
"""

import argparse
import sys

from keras_vit.export import (
    FORMATS,
    QUANTIZATIONS,
    ExportError,
    VerificationError,
    export_model,
    fixed_size_copy,
    load_model,
)
from keras_vit.export.data import load_images, load_verify_images
from keras_vit.export.labels import read_labels


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m keras_vit.export", description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a .keras file (model.save) or a preset folder (model.save_to_preset)")
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument(
        "--image-size",
        nargs="+",
        type=int,
        metavar="SIZE",
        help="HEIGHT [WIDTH]: the image size of the files, for a model built with image_size=None "
        "(which takes any size); its position embeddings are resized to it",
    )
    parser.add_argument(
        "--format", nargs="+", default=list(FORMATS), help=f"some of {', '.join(FORMATS)} (default: all)"
    )
    parser.add_argument(
        "--quantize",
        nargs="+",
        default=["fp32"],
        help=f"TFLite variants, some of {', '.join(QUANTIZATIONS)} (default: fp32); "
        "'dynamic' is dynamic-range int8, 'w8a8' int8 weight matmuls with the rest in float, "
        "'int8' full-integer int8 for integer-only accelerators ('w8a8' and 'int8' need --calibration)",
    )
    parser.add_argument(
        "--calibration", help="images for int8 calibration: a folder of images or a .npy file"
    )
    parser.add_argument(
        "--calibration-limit", type=int, default=500, help="at most this many calibration images"
    )
    parser.add_argument(
        "--verify",
        help="held-out images to compare on (default: a fifth of --calibration, else random); a folder of "
        "class sub-folders (DIR/<class>/<image>) also gives each file's test accuracy",
    )
    parser.add_argument(
        "--labels",
        help="a text file, one class name per line, or 'imagenet' for the ImageNet-1k names (downloaded "
        "once); written as labels.txt and into each .tflite's metadata",
    )
    parser.add_argument(
        "--softmax", action="store_true", help="TFLite files end in a softmax: scores are probabilities"
    )
    parser.add_argument(
        "--metadata",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="TFLite metadata: name, description, version, author, license "
        "(default: the model's name, keras_vit's version, author keras_vit, Apache-2.0)",
    )
    parser.add_argument(
        "--dynamic-batch", action="store_true", help="TFLite with a dynamic batch (default: batch 1)"
    )
    parser.add_argument("--threads", type=int, default=2, help="threads for the latency measurement")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        model = load_model(args.model)
        if args.image_size:
            model = _fixed_size(model, args.image_size)
        calibration = verify = verify_labels = class_names = None
        if args.labels:
            class_names = read_labels(args.labels)
        if args.calibration:
            calibration = load_images(
                args.calibration, model.image_size, args.calibration_limit, what="--calibration"
            )
        if args.verify:
            verify, verify_labels = load_verify_images(
                args.verify, model.image_size, model.num_classes, class_names
            )
        metadata = dict(_key_value(item) for item in args.metadata)
        export_model(
            model,
            args.out,
            formats=args.format,
            quantize=args.quantize,
            calibration_images=calibration,
            verify_images=verify,
            verify_labels=verify_labels,
            class_names=class_names,
            softmax=args.softmax,
            metadata=metadata,
            dynamic_batch=args.dynamic_batch,
            threads=args.threads,
        )
    except (ExportError, VerificationError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def _fixed_size(model, sides):
    """`model` at the `--image-size` `sides` (one side: a square)."""
    if len(sides) > 2:
        raise ExportError(f"--image-size takes HEIGHT [WIDTH], got {' '.join(map(str, sides))}.")
    size = (sides[0], sides[-1])
    if model.image_size is not None:
        raise ExportError(
            f"--image-size is for a model built with image_size=None; {model.name} takes "
            f"{model.image_size[0]}x{model.image_size[1]} images only."
        )
    return fixed_size_copy(model, size)


def _key_value(item):
    """`"KEY=VALUE"` as `(KEY, VALUE)`; an ExportError without "="."""
    key, equals, value = item.partition("=")
    if not equals:
        raise ExportError(f"--metadata takes KEY=VALUE items, got {item!r}.")
    return key, value


if __name__ == "__main__":
    sys.exit(main())
