"""Runs each written file in its own runtime and compares it with Keras."""

import json
import os
import statistics
import time

import numpy as np
import onnxruntime
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from keras_vit.export.errors import ExportError
from keras_vit.export.gpu_delegate import gpu_verdict
from keras_vit.export.tflite import tflite_ops
from keras_vit.files import write_bytes

# Max |Δ logits| allowed, as a fraction of the logits' scale max(1, max |logits|);
# quantized int8 files are held to top-1 agreement with Keras instead.
MAX_DIFF = {"fp32": 1e-4, "fp16": 1e-2}
# Top-1 agreement with Keras asked of the int8 files. Measured on the test model (tests/test_export.py,
# 5 seeds, oneDNN on and off): dynamic-range int8 (float activations) 99.2-100%, full-integer int8
# 96.5-98.5%, w8a8 98.5-99.75% (int8 weight matmuls only; 98.5-100% with the attention matmuls in int8 too).
# Full int8 quantizes every activation,
# LayerNorm, softmax and GELU included, which costs ViTs accuracy (MinMax int8 takes ViT-B/16 from 84.5 to
# 23.6 ImageNet top-1, FQ-ViT); w8a8 keeps those in float (PTQ4ViT: <= 0.4 points lost). Their 90% and 96%
# still fail a broken file (calibrated on pixels in [0, 1] or [-1, 1]: 9-11%) and leave margin (6.5 and
# 2.5 points, 26 and 10 of the 397 images) for CPUs that round differently.
MIN_TOP1_AGREEMENT = {"dynamic": 0.98, "int8": 0.90, "w8a8": 0.96}


class SavedModelRunner:
    """A SavedModel in TensorFlow: float32 logits of images `(B, H, W, 3)`, and
    of uint8 pixels through the `serving_uint8` signature. It runs on the
    process's TensorFlow thread pool, which cannot be sized per model."""

    def __init__(self, path):
        self.loaded = tf.saved_model.load(path)
        self.default = self.loaded.signatures["serving_default"]
        self.uint8 = self.loaded.signatures["serving_uint8"]

    def __call__(self, images):
        return self.default(images=tf.constant(images))["logits"].numpy()

    def uint8_logits(self, images):
        return self.uint8(images=tf.constant(images))["logits"].numpy()


class TFLiteRunner:
    """A `.tflite` file in the LiteRT interpreter on `threads` threads: logits of
    images `(B, H, W, 3)`, one image per invocation unless the file takes a
    dynamic batch."""

    def __init__(self, path, threads=2):
        self.interpreter = Interpreter(model_path=path, num_threads=threads)
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.dynamic_batch = self.input["shape_signature"][0] == -1
        self.batch = None

    def _run(self, images):
        if self.dynamic_batch and self.batch != len(images):
            self.interpreter.resize_tensor_input(self.input["index"], images.shape)
            self.interpreter.allocate_tensors()
            self.batch = len(images)
        elif self.batch is None:
            self.interpreter.allocate_tensors()
            self.batch = 1
        self.interpreter.set_tensor(self.input["index"], images)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output["index"]).copy()

    def __call__(self, images):
        if self.dynamic_batch:
            return self._run(images)
        return np.concatenate([self._run(image[None]) for image in images])


class OnnxRunner:
    """An `.onnx` file in onnxruntime (CPU, `threads` intra-op threads): logits
    of images `(B, H, W, 3)`."""

    def __init__(self, path, threads=2):
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, images):
        return self.session.run(["logits"], {self.input: images})[0]


def median_latency(fn, image, runs=20, warmup=3):
    """Median seconds of `fn(image)` over `runs` calls."""
    for _ in range(warmup):
        fn(image)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn(image)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def keras_runner(model):
    """A batch-1-capable float32 forward pass of the Keras model, in a tf.function."""
    forward = tf.function(lambda images: model(images, training=False), reduce_retracing=True)
    return lambda images: forward(tf.constant(images)).numpy()


def open_runner(file_format, path, threads):
    """The runner of a `file_format` file (one of FORMATS); `threads` sizes
    LiteRT's and onnxruntime's pools."""
    if file_format == "saved_model":
        return SavedModelRunner(path)
    return {"tflite": TFLiteRunner, "onnx": OnnxRunner}[file_format](path, threads)


def verify(file_format, path, quantize, reference, images, labels=None, threads=2, runs=20):
    """Loads `path` with its own runtime, runs it on `images` and compares
    with `reference(images)`, the Keras logits. Returns a report row (a dict):
    with `labels` `(N,)`, the file's own top-1 accuracy (`test_accuracy`,
    else None); for a `.tflite` file, its run on LiteRT's GPU accelerator
    (`gpu_delegate`, export/gpu_delegate.py)."""
    expected = reference(images)
    try:
        runner = open_runner(file_format, path, threads)
        got = runner(images)
    except Exception as error:
        raise ExportError(f"{path} was written but does not load and run in its runtime: {error}") from error
    diff = float(np.max(np.abs(got - expected)))
    if file_format == "saved_model":
        # The uint8 signature, on the same pixels rounded to integers.
        pixels = np.clip(np.round(images), 0, 255)
        uint8_diff = runner.uint8_logits(pixels.astype("uint8")) - reference(pixels.astype("float32"))
        diff = float(np.max([diff, np.max(np.abs(uint8_diff))]))  # np.max keeps a NaN; max() may drop it
    row = dict(
        format=file_format,
        quantize=quantize,
        file=path,
        size_bytes=path_size(path),
        max_abs_diff=diff,
        top1_agreement=float(np.mean(got.argmax(-1) == expected.argmax(-1))),
        test_accuracy=top1_accuracy(got, labels),
        latency_ms=1e3 * median_latency(runner, images[:1], runs=runs),
        failures=[],
    )
    # Every check is written so that NaN fails it (`not x <= limit`; NaN compares False):
    # np.argmax takes NaN for the largest logit, so NaN rows can agree in top-1.
    for source, logits in (("the Keras model", expected), ("the file", got)):
        bad = int(np.sum(~np.isfinite(logits).all(axis=-1)))
        if bad:
            row["failures"].append(f"{source} gives NaN or inf logits for {bad} of {len(logits)} images")
    if quantize in MAX_DIFF:
        row["tolerance"] = MAX_DIFF[quantize] * max(1.0, float(np.max(np.abs(expected))))
        if not diff <= row["tolerance"]:
            row["failures"].append(f"max |Δ logits| {diff:.3g} > {row['tolerance']:.3g}")
    else:
        row["min_top1_agreement"] = MIN_TOP1_AGREEMENT[quantize]
        if not row["top1_agreement"] >= row["min_top1_agreement"]:
            row["failures"].append(
                f"top-1 agreement {row['top1_agreement']:.1%} < {row['min_top1_agreement']:.0%}"
            )
    if file_format == "tflite":
        with open(path, "rb") as f:
            ops = tflite_ops(f.read())
        row["ops"] = sorted(ops)
        custom = sorted(name for name, builtin in ops.items() if not builtin)
        if custom:
            row["failures"].append(f"non-builtin ops {custom}")
        row["gpu_delegate"] = gpu_verdict(path, images, got)
    return row


def top1_accuracy(scores, labels):
    """The fraction of `scores` `(N, K)` whose argmax is `labels` `(N,)`; None without labels."""
    return None if labels is None else float(np.mean(scores.argmax(-1) == labels))


def path_size(path):
    """Bytes in the file at `path`, or in all files under the folder `path`."""
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)
    return os.path.getsize(path)


def format_table(rows):
    """The report as a fixed-width text table: `top-1` is the agreement with
    Keras, `accuracy` the file's own on the labels (`-` without), `GPU` the
    GPU delegate's verdict (format_gpu)."""
    lines = [
        f"{'file':<40} {'size':>10} {'max |Δ|':>9} {'top-1':>7} {'accuracy':>8} {'ms (b=1)':>9} "
        f"{'GPU':<14}  status"
    ]
    for row in rows:
        status = "ok" if not row["failures"] else "FAIL: " + "; ".join(row["failures"])
        accuracy = "-" if row["test_accuracy"] is None else f"{row['test_accuracy']:.1%}"
        lines.append(
            f"{row['file']:<40} {row['size_bytes'] / 1e6:>8.2f}MB {row['max_abs_diff']:>9.2e} "
            f"{row['top1_agreement']:>7.1%} {accuracy:>8} {row['latency_ms']:>9.2f} "
            f"{format_gpu(row.get('gpu_delegate')):<14}  {status}"
        )
    return "\n".join(lines)


def format_gpu(verdict):
    """A `gpu_delegate` verdict in a few characters: `yes 100%` (every op on the
    GPU, top-1 agreement with the CPU), `partly 100%` (some ops on the CPU),
    `fails` (no GPU compilation), `no device`, `error` (the run crashed),
    `-` (not a `.tflite` file)."""
    if verdict is None:
        return "-"
    if verdict["fully_accelerated"] is None:
        return "no device" if verdict["error"].startswith("no GPU") else "error"
    if verdict["top1_agreement"] is None:
        return "fails"
    return f"{'yes' if verdict['fully_accelerated'] else 'partly'} {verdict['top1_agreement']:.0%}"


def write_report(path, report):
    """`report` as JSON; a NaN or inf number (which JSON has not) is written as null."""
    write_bytes(path, json.dumps(_json_numbers(report), indent=2, allow_nan=False).encode())


def _json_numbers(value):
    if isinstance(value, dict):
        return {key: _json_numbers(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_numbers(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
