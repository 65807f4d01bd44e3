"""What can be exported, and the one check of a choice of it."""

from keras_vit.export.errors import ExportError

FORMATS = ("saved_model", "tflite", "onnx")
QUANTIZATIONS = ("fp32", "fp16", "dynamic", "int8")


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
