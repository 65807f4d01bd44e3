"""What can be exported, and the one check of a choice of it."""

from keras_vit.export.errors import ExportError

FORMATS = ("saved_model", "tflite", "onnx")
QUANTIZATIONS = ("fp32", "fp16", "dynamic", "int8", "w8a8")
# The quantizations that calibrate activation ranges on images.
CALIBRATED = ("int8", "w8a8")


def check_formats(formats, quantize):
    """`formats` and `quantize` as tuples; an ExportError for an unknown name,
    an empty choice, or quantizations without the TFLite format."""
    formats, quantize = tuple(formats), tuple(quantize)
    for name in formats:
        if name not in FORMATS:
            raise ExportError(f"Unknown format {name!r}; expected some of {', '.join(FORMATS)}.")
    for q in quantize:
        if q not in QUANTIZATIONS:
            raise ExportError(f"Unknown quantization {q!r}; expected some of {', '.join(QUANTIZATIONS)}.")
    if not formats or not quantize:
        raise ExportError("Nothing to export: give at least one format and one quantization.")
    if quantize != ("fp32",) and "tflite" not in formats:
        raise ExportError(f"Quantization {quantize} applies to TFLite only; add the 'tflite' format.")
    return formats, quantize


def check_calibration(quantize, calibration_images):
    """An ExportError if a quantization in `quantize` needs calibration images
    (CALIBRATED) and fewer than two were given."""
    for q in quantize:
        if q in CALIBRATED and (calibration_images is None or len(calibration_images) < 2):
            raise ExportError(
                f"quantize {q!r} needs calibration images (a few hundred from the training data): "
                "pass calibration_images, or --calibration DATA (a folder of images or a .npy file)."
            )
