"""SavedModel with serving signatures, in TF Serving's layout (`DIR/1/`)."""

import keras
import tensorflow as tf

from keras_vit.files import write_directory


def serving_function(model):
    """Images `(B, H, W, 3)` in [0, 255], any real or integer dtype ->
    `{"logits": (B, classes), "probabilities": (B, classes)}`."""

    def serve(images):
        logits = model(tf.cast(images, tf.float32), training=False)
        return {"logits": logits, "probabilities": tf.nn.softmax(logits, axis=-1)}

    return serve


def write_saved_model(model, path):
    """Writes `model` to `path` with two signatures: `serving_default`
    (float32 images) and `serving_uint8` (uint8 images), both dynamic batch."""
    height, width = model.image_size
    serve = serving_function(model)

    def write(directory):
        archive = keras.export.ExportArchive()
        archive.track(model)
        for name, dtype in (("serving_default", tf.float32), ("serving_uint8", tf.uint8)):
            archive.add_endpoint(
                name, serve, input_signature=[tf.TensorSpec((None, height, width, 3), dtype, name="images")]
            )
        archive.write_out(directory, verbose=False)

    write_directory(path, write)
