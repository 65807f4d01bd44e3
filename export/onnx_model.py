"""ONNX conversion through tf2onnx."""

import json

import onnx
import tensorflow as tf
import tf2onnx

from keras_vit.export.errors import ExportError

OPSET = 17


def convert_onnx(model, class_names=None, opset=OPSET):
    """`model` as ONNX bytes: input `images` `(B, H, W, 3)` float32 in
    [0, 255] -> output `logits` `(B, classes)`; dynamic batch. Class names,
    when given, go in the metadata (`class_names`, a JSON list)."""
    height, width = model.image_size
    signature = [tf.TensorSpec((None, height, width, 3), tf.float32, name="images")]

    @tf.function(input_signature=signature)
    def forward(images):
        return {"logits": model(images, training=False)}

    try:
        proto, _ = tf2onnx.convert.from_function(forward, input_signature=signature, opset=opset)
    except Exception as error:  # tf2onnx raises plain Exceptions
        raise ExportError(f"ONNX conversion (opset {opset}) failed: {error}") from error
    if class_names is not None:
        onnx.helper.set_model_props(proto, {"class_names": json.dumps(list(class_names))})
    onnx.checker.check_model(proto)
    return proto.SerializeToString()
