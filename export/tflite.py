"""TFLite conversion (builtin ops only) and the op list of a `.tflite` file."""

import re
import tempfile
import warnings

import keras
import numpy as np
import tensorflow as tf
from ai_edge_litert import schema_py_generated as schema

from keras_vit.export.errors import ExportError
from keras_vit.export.options import CALIBRATED, check_calibration, check_formats
from keras_vit.startup import captured_stderr

_BUILTIN_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
# TensorFlow ops without a TFLite builtin that a model setting can bring in, and what to do.
NO_BUILTIN_HINTS = {
    "Erf": "exact GELU written in a form the converter does not fuse into its builtin GELU; "
    "keras_vit.layers.gelu is written so that it does: use it",
    "Erfc": "exact GELU as Keras' or TensorFlow's own gelu writes it; use keras_vit.layers.gelu",
}
# "w8a8" runs these ops in int8: the weight matmuls and the ops that only move their int8 values. Every other
# op stays float: LayerNorm's (MEAN, SQUARED_DIFFERENCE, RSQRT), SOFTMAX, GELU, the residual ADDs, and the
# attention BATCH_MATMULs (QKᵀ, PV), which XNNPACK runs in int8 only with a zero-point-0 right operand:
# calibrated K and V have none, and their reference kernels made ViT-S/16 0.88x fp32 instead of 2.2-2.5x.
W8A8_INT8_OPS = ("FULLY_CONNECTED", "CONV_2D", "RESHAPE", "TRANSPOSE", "STRIDED_SLICE")


def convert_tflite(model, quantize="fp32", calibration_images=None, dynamic_batch=False):
    """`model` as `.tflite` bytes: images `(1 or B, H, W, 3)` float32 in
    [0, 255] -> logits `(1 or B, classes)` float32.

    `quantize`: `"fp32"`; `"fp16"` (float16 weights); `"dynamic"` (int8
    weights, float activations); `"int8"` (full integer: int8 weights and
    activations in every op); `"w8a8"` (int8 weights and activations in the
    weight matmuls, W8A8_INT8_OPS; attention, LayerNorm, softmax and GELU
    in float). `"int8"` and `"w8a8"` are calibrated on `calibration_images`
    `(N, H, W, 3)` and keep float32 input and output. Only TFLite builtin ops
    are allowed (no Flex ops).
    """
    check_formats(("tflite",), (quantize,))
    check_calibration((quantize,), calibration_images)
    height, width = model.image_size
    with tempfile.TemporaryDirectory() as directory:
        # A fixed batch of 1 keeps SHAPE/GATHER/REDUCE_PROD out of the mobile graph.
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(
            "serve",
            lambda images: model(images, training=False),
            input_signature=[
                tf.TensorSpec((None if dynamic_batch else 1, height, width, 3), tf.float32, name="images")
            ],
        )
        archive.write_out(directory, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(directory)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize != "fp32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "fp16":
            converter.target_spec.supported_types = [tf.float16]
        if quantize in CALIBRATED:
            images = np.asarray(calibration_images, "float32")
            converter.representative_dataset = lambda: ([image[None]] for image in images)
        if quantize == "int8":
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        with captured_stderr() as log:  # the converter writes its MLIR diagnostics there
            try:
                return _quantize_w8a8(converter) if quantize == "w8a8" else converter.convert()
            except Exception as error:  # the converter raises several private types
                message = str(error)
        raise ExportError(_conversion_error(quantize, message + "".join(log)))


def _quantize_w8a8(converter):
    """The converter's model calibrated, then quantized with every op outside W8A8_INT8_OPS denylisted."""
    float_ops = [name for name in _BUILTIN_NAMES.values() if name not in W8A8_INT8_OPS]
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=float_ops)
    with warnings.catch_warnings():  # the debugger opens its model in the deprecated tf.lite.Interpreter
        warnings.simplefilter("ignore", UserWarning)
        debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_options=options)
    return debugger.get_nondebug_quantized_model()


def _conversion_error(quantize, message):
    """One line for a failed conversion: the ops with no builtin, and what to do."""
    missing = sorted(set(re.findall(r"'tf\.(\w+)' op is neither a custom op nor a flex op", message)))
    if not missing:
        last = next((line.strip() for line in reversed(message.splitlines()) if line.strip()), "no message")
        return f"TFLite conversion ({quantize}, builtin ops only) failed: {last}"
    hints = [f"{op}: {NO_BUILTIN_HINTS[op]}" for op in missing if op in NO_BUILTIN_HINTS]
    return (
        f"TFLite conversion ({quantize}) failed: TensorFlow op(s) {', '.join(missing)} have no TFLite builtin"
        + (f" ({'; '.join(hints)})." if hints else "; the model uses a layer outside keras_vit's ops.")
    )


def tflite_ops(content):
    """The operators a `.tflite` flatbuffer uses, as `{name: is_builtin}`;
    custom and Flex ops are not builtin."""
    root = schema.Model.GetRootAsModel(content, 0)
    ops = {}
    for i in range(root.OperatorCodesLength()):
        code = root.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            ops[code.CustomCode().decode()] = False
        else:
            ops[_BUILTIN_NAMES[builtin]] = True
    return ops
