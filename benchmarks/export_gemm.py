"""The matmul kernels under TFLite fp32 and ONNX Runtime: XNNPACK against MLAS.

    python benchmarks/export_gemm.py [--rounds 40]

Eight chained `(197, D) x (D, D)` matmuls (a ViT's token rows through its
projections, D = 384 for ViT-S and 768 for ViT-B), written once as a TFLite
file (FULLY_CONNECTED, run by XNNPACK) and once as ONNX (MatMul, run by
onnxruntime's MLAS), timed interleaved on 1 and 2 threads. Prints GFLOP/s and
the TFLite / ONNX Runtime speed ratio: these matmuls are most of a ViT's
time, so the ratio bounds how close TFLite fp32 can come to ONNX Runtime on
this CPU. Needs the `export` extra.
"""

import argparse
import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from common import interleaved_medians  # noqa: E402

from keras_vit.export.onnx_model import OPSET  # noqa: E402
from keras_vit.export.verify import OnnxRunner, TFLiteRunner  # noqa: E402
from keras_vit.files import write_bytes  # noqa: E402

TOKENS = 197
MATMULS = 8


def chained_matmuls(width):
    """A tf.function: `(1, TOKENS, width)` -> `{"logits": same shape}` through
    `MATMULS` constant `(width, width)` matmuls."""
    rng = np.random.default_rng(0)
    kernels = [rng.normal(0, width**-0.5, (width, width)).astype("float32") for _ in range(MATMULS)]
    signature = [tf.TensorSpec((1, TOKENS, width), tf.float32, name="rows")]

    @tf.function(input_signature=signature)
    def forward(rows):
        x = tf.reshape(rows, (TOKENS, width))
        for kernel in kernels:
            x = tf.matmul(x, kernel)
        return {"logits": tf.reshape(x, (1, TOKENS, width))}

    return forward, signature


def write_files(width, directory):
    """The chain as a `.tflite` and an `.onnx` file; returns both paths."""
    import tf2onnx

    forward, signature = chained_matmuls(width)
    tflite_path = os.path.join(directory, f"gemm_{width}.tflite")
    converter = tf.lite.TFLiteConverter.from_concrete_functions([forward.get_concrete_function()], forward)
    write_bytes(tflite_path, converter.convert())
    onnx_path = os.path.join(directory, f"gemm_{width}.onnx")
    proto, _ = tf2onnx.convert.from_function(forward, input_signature=signature, opset=OPSET)
    write_bytes(onnx_path, proto.SerializeToString())
    return tflite_path, onnx_path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    print(f"{MATMULS} chained ({TOKENS}, D) x (D, D) matmuls, median of {args.rounds}")
    print(f"{'D':>5} {'threads':>8} {'TFLite GFLOP/s':>15} {'ORT GFLOP/s':>12} {'TFLite/ORT speed':>17}")
    with tempfile.TemporaryDirectory() as directory:
        for width in (384, 768):
            tflite_path, onnx_path = write_files(width, directory)
            image = np.random.default_rng(1).normal(size=(1, TOKENS, width)).astype("float32")
            for threads in (1, 2):
                runners = {
                    "tflite": TFLiteRunner(tflite_path, threads),
                    "ort": OnnxRunner(onnx_path, threads),
                }
                seconds = interleaved_medians(
                    {name: (lambda fn=fn: fn(image)) for name, fn in runners.items()}, args.rounds, settle=2
                )
                gflop = 2 * MATMULS * TOKENS * width**2 / 1e9
                print(
                    f"{width:>5} {threads:>8} {gflop / seconds['tflite']:>15.0f} "
                    f"{gflop / seconds['ort']:>12.0f} "
                    f"{seconds['ort'] / seconds['tflite']:>16.2f}x"
                )


if __name__ == "__main__":
    main()
