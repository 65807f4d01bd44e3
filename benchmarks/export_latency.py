"""Batch-1 latency and size of each export of ViT-S/16 and ViT-B/16 at 224, one run.

    python benchmarks/export_latency.py [--models vit_s16 vit_b16] [--rounds 20] [--threads 2]
        [--quantize fp32 fp16 dynamic int8 w8a8] [--tflite-only]

Keras, SavedModel, TFLite fp32 / fp16 / dynamic-range int8 / full int8 / w8a8
and ONNX Runtime, all on `--threads` threads, interleaved so drift hits all
alike; each timed call follows two untimed calls of the same runtime.
Random weights (the speed does not depend on them); int8 and w8a8 are
calibrated on 8 random images. Needs tf2onnx, onnxruntime and ai-edge-litert
(the `export` extra).
"""

import argparse
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from common import interleaved_medians, random_images  # noqa: E402

import keras_vit  # noqa: E402
from keras_vit.export.onnx_model import convert_onnx  # noqa: E402
from keras_vit.export.options import QUANTIZATIONS  # noqa: E402
from keras_vit.export.saved_model import write_saved_model  # noqa: E402
from keras_vit.export.tflite import convert_tflite  # noqa: E402
from keras_vit.export.verify import OnnxRunner, SavedModelRunner, TFLiteRunner, keras_runner, path_size  # noqa: E402
from keras_vit.files import write_bytes  # noqa: E402


def cpu_name():
    """The CPU's model name, from /proc/cpuinfo (Linux)."""
    with open("/proc/cpuinfo") as f:
        return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown")


def runners(model, directory, threads, quantize, tflite_only):
    """(name, size in bytes, batch-1 callable) for each runtime."""
    if not tflite_only:
        yield "keras", 4 * model.count_params(), keras_runner(model)
        path = os.path.join(directory, "saved_model")
        write_saved_model(model, path)
        yield "saved_model", path_size(path), SavedModelRunner(path)
    calibration = random_images(8, 224, seed=1)
    for q in quantize:
        path = os.path.join(directory, f"model_{q}.tflite")
        write_bytes(path, convert_tflite(model, q, calibration))
        yield f"tflite_{q}", path_size(path), TFLiteRunner(path, threads)
    if tflite_only:
        return
    path = os.path.join(directory, "model.onnx")
    write_bytes(path, convert_onnx(model))
    yield "onnxruntime", path_size(path), OnnxRunner(path, threads)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vit_s16", "vit_b16"])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--quantize", nargs="+", default=list(QUANTIZATIONS), help="TFLite variants (fp32 is always timed)"
    )
    parser.add_argument("--tflite-only", action="store_true", help="skip Keras, SavedModel and ONNX Runtime")
    args = parser.parse_args()
    quantize = ["fp32"] + [q for q in args.quantize if q != "fp32"]
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores")
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.utils.set_random_seed(0)
    image = random_images(1, 224)
    for preset in args.models:
        model = keras_vit.ViT.from_preset(preset)
        with tempfile.TemporaryDirectory() as directory:
            table = list(runners(model, directory, args.threads, quantize, args.tflite_only))
            calls = {name: (lambda fn=fn: fn(image)) for name, _, fn in table}
            seconds = interleaved_medians(calls, args.rounds, settle=2)
        fp32 = seconds["tflite_fp32"]
        print(f"\n{preset}, 224x224, batch 1, {args.threads} threads, median of {args.rounds}")
        print(f"{'runtime':<14} {'size MB':>9} {'ms':>8} {'vs TFLite fp32':>15}")
        for name, size, _ in table:
            print(f"{name:<14} {size / 1e6:>9.1f} {1e3 * seconds[name]:>8.1f} {fp32 / seconds[name]:>14.2f}x")


if __name__ == "__main__":
    main()
