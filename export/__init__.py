"""Export a trained keras_vit model to SavedModel, TFLite and ONNX, and prove
each file right by running it in its own runtime.

    report = export.export_model(model, "out/", formats=("saved_model", "tflite", "onnx"),
                                 quantize=("fp32", "int8"), calibration_images=images)
"""

if __name__ != "keras_vit.export":  # e.g. `import export` from the repository's root
    raise ImportError(
        f"This folder is installed as the package keras_vit.export; import it under that name "
        f"(python -m keras_vit.export), not as {__name__!r}."
    )

from keras_vit.export.errors import ExportError, VerificationError
from keras_vit.export.exporter import REPORT, export_model, fixed_size_copy, load_model
from keras_vit.export.options import FORMATS, QUANTIZATIONS, check_formats

__all__ = [
    "ExportError",
    "VerificationError",
    "FORMATS",
    "QUANTIZATIONS",
    "REPORT",
    "check_formats",
    "export_model",
    "fixed_size_copy",
    "load_model",
]
