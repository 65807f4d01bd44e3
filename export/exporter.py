"""The exporter: writes a model in each format, runs every file in its own
runtime against Keras, and writes the report (`export_model`)."""

import hashlib
import os

import numpy as np

import keras_vit
from keras_vit import checkpoints, lora
from keras_vit.export.data import check_pixels
from keras_vit.export.errors import ExportError, VerificationError
from keras_vit.export.metadata import LABELS, check_info, label_file, with_metadata
from keras_vit.export.onnx_model import convert_onnx
from keras_vit.export.options import FORMATS, check_calibration, check_formats
from keras_vit.export.saved_model import write_saved_model
from keras_vit.export.tflite import convert_tflite
from keras_vit.export.verify import format_table, keras_runner, top1_accuracy, verify, write_report
from keras_vit.files import check_writable, write_bytes

REPORT = "report.json"


def load_model(path):
    """A keras_vit model with a classification head from a `.keras` file or a
    preset folder (`keras_vit.load_model`); an ExportError otherwise."""
    try:
        model = keras_vit.load_model(path)
    except ValueError as error:
        raise ExportError(str(error)) from None
    if not model.include_top:
        raise ExportError(
            f"{path} holds a keras_vit.ViT without its head (include_top=False); export needs the head."
        )
    return model


def float32_copy(model):
    """`model` itself if it computes in float32 and has no LoRA adapters, else
    a float32 ViT with its weights, adapters merged into the kernels: TFLite
    has no bfloat16 kernels, the converter refuses the mixed-precision graph op
    by op, and a merged kernel exports as the one weight a model without LoRA
    has (the same file size and ops)."""
    if model.dtype_policy.compute_dtype == "float32" and not lora.is_enabled(model):
        return model
    return checkpoints.copy_with(model, dtype="float32")


def fixed_size_copy(model, image_size):
    """A ViT with `model`'s weights that takes images of one size: for a model
    built with `image_size=None`. Its position embeddings are resized at once
    by the rule the model applies at call time (`position_resize_method`), so
    its logits are the model's at that size. An ExportError for a size the
    model cannot take."""
    try:
        return checkpoints.copy_with(model, image_size=image_size, position_grid_size=None)
    except ValueError as error:
        raise ExportError(f"image size {image_size!r}: {error}") from None


def export_model(
    model,
    out_dir,
    formats=FORMATS,
    quantize=("fp32",),
    calibration_images=None,
    verify_images=None,
    verify_labels=None,
    class_names=None,
    softmax=False,
    metadata=None,
    dynamic_batch=False,
    threads=2,
):
    """Writes `model` to `out_dir` in each of `formats`, verifies every file
    and returns the report (also written to `out_dir/report.json`).

    Files: `saved_model/1/` (TF Serving layout), `model_{q}.tflite` for each
    `q` in `quantize` (`model_{q}_dynamic_batch.tflite` with `dynamic_batch`),
    `model.onnx`, `labels.txt` with `class_names`.
    Every `.tflite` file carries TFLite metadata (export/metadata.py), which
    MediaPipe Tasks' ImageClassifier needs: name, description, version,
    author, license (`metadata`, a dict, overrides the defaults), RGB input
    with its normalization, and `class_names` as its label file. With
    `softmax`, the `.tflite` files (only) end in a softmax: their scores are
    probabilities, compared with the softmax of the Keras logits.
    Images (calibration, verification) are `(N, H, W, 3)` in [0, 255]; images
    with a NaN or inf pixel are refused (`ExportError`) before anything is
    written. Without `verify_images`, the last fifth of `calibration_images`
    is held out for verification (and not used to calibrate), else random
    images are used. `verify_labels` `(N,)`, the class indices of
    `verify_images`, give each file's own top-1 accuracy (`test_accuracy`
    in its row, `keras_test_accuracy` the model's); without them both are
    None. Each `.tflite` row has `gpu_delegate`, the file's run on LiteRT's
    GPU accelerator (export/gpu_delegate.py): reported, never a failure.
    Raises `VerificationError` (after writing the report) if a file breaks a
    threshold (`export.verify.MAX_DIFF`, `MIN_TOP1_AGREEMENT`): max |Δ logits|
    ≤ 1e-4 (fp32), 1e-2 (fp16), both times max(1, max |logits|); top-1
    agreement ≥ 98% (dynamic-range int8), ≥ 96% (w8a8), ≥ 90% (full-integer
    int8, which quantizes LayerNorm, softmax and GELU too and is lossy on
    ViTs); NaN or inf logits; a custom or Flex op in a `.tflite` file.
    A mixed-precision model (`mixed_bfloat16`, `mixed_float16`) is exported
    as its float32 copy: the files are float32 (or quantized from it). A
    model with LoRA adapters (`ViT.enable_lora`) is exported as a copy with
    the adapters merged into its kernels.
    """
    if model.image_size is None:
        raise ExportError(
            f"{model.name} takes any image size (image_size=None); exported files take one: give it with "
            f"--image-size HEIGHT [WIDTH], or export export.fixed_size_copy(model, (height, width))."
        )
    formats, quantize = _check_options(model, formats, quantize, class_names, calibration_images, softmax)
    check_info(metadata or {})
    _check_images(model, calibration_images, verify_images)
    verify_labels = _check_labels(model, verify_images, verify_labels)
    try:
        check_writable(out_dir)
    except OSError as error:
        raise ExportError(
            f"Output folder {out_dir!r} cannot be written: {error.strerror or error}."
        ) from error
    calibration_images, verify_images, source = _split_images(model, calibration_images, verify_images)

    model = float32_copy(model)  # after the checks: a copy of a large model takes a while
    reference = once_per_array(keras_runner(model))  # every file is compared on the same images
    # What the .tflite files give: the logits, or with `softmax` their softmax.
    scores = (lambda images: _softmax(reference(images))) if softmax else reference
    rows = []

    def add(file_format, path, q, reference=reference):
        row = verify(file_format, path, q, reference, verify_images, verify_labels, threads=threads)
        row["file"] = os.path.relpath(path, out_dir)
        rows.append(row)

    if "saved_model" in formats:
        path = os.path.join(out_dir, "saved_model", "1")
        write_saved_model(model, path)
        add("saved_model", path, "fp32")
    if "tflite" in formats:
        for q in quantize:
            path = os.path.join(out_dir, f"model_{q}{'_dynamic_batch' if dynamic_batch else ''}.tflite")
            content = convert_tflite(model, q, calibration_images, dynamic_batch)
            write_bytes(path, with_metadata(content, model, class_names, softmax, metadata))
            add("tflite", path, q, scores)
    if "onnx" in formats:
        path = os.path.join(out_dir, "model.onnx")
        write_bytes(path, convert_onnx(model, class_names))
        add("onnx", path, "fp32")
    if class_names is not None:
        write_bytes(os.path.join(out_dir, LABELS), label_file(class_names))

    report = dict(
        model=model.name,
        image_size=list(model.image_size),
        num_classes=model.num_classes,
        verify_images=dict(count=len(verify_images), source=source),
        keras_test_accuracy=top1_accuracy(reference(verify_images), verify_labels),
        threads=threads,
        tflite_softmax=softmax,
        files=rows,
    )
    write_report(os.path.join(out_dir, REPORT), report)
    print(format_table(rows))
    failed = [f"{row['file']}: {'; '.join(row['failures'])}" for row in rows if row["failures"]]
    if failed:
        raise VerificationError(
            "Exported files do not match the Keras model (see report.json):\n  " + "\n  ".join(failed)
        )
    return report


def _check_options(model, formats, quantize, class_names, calibration_images, softmax):
    formats, quantize = check_formats(formats, quantize)
    if softmax and "tflite" not in formats:
        raise ExportError("softmax applies to TFLite only; add the 'tflite' format.")
    check_calibration(quantize, calibration_images)
    if class_names is not None and len(class_names) != model.num_classes:
        raise ExportError(f"{len(class_names)} class names for a model with {model.num_classes} classes.")
    if class_names is not None and not all(name and "\n" not in name for name in class_names):
        raise ExportError("Class names must be non-empty and have no line break (labels.txt has one a line).")
    return formats, quantize


def _check_images(model, calibration_images, verify_images):
    """Refuses images of the wrong shape, or with a NaN or inf pixel, before any work."""
    expected = (*model.image_size, 3)
    for name, argument, images in (
        ("calibration", "calibration_images", calibration_images),
        ("verification", "verify_images", verify_images),
    ):
        if images is None:
            continue
        if np.shape(images)[1:] != expected:
            raise ExportError(
                f"{name} images have shape {np.shape(images)}; expected (N, {expected[0]}, {expected[1]}, 3)."
            )
        check_pixels(images, argument)


def _check_labels(model, verify_images, verify_labels):
    """`verify_labels` as an int array `(N,)`, or None; an ExportError for
    labels without images, of another count, or outside the model's classes."""
    if verify_labels is None:
        return None
    if verify_images is None:
        raise ExportError("verify_labels without verify_images: pass the images they label.")
    labels = np.asarray(verify_labels)
    if labels.shape != (len(verify_images),) or labels.dtype.kind not in "iu":
        raise ExportError(
            f"verify_labels has shape {labels.shape} and dtype {labels.dtype}; expected "
            f"({len(verify_images)},) integer class indices, one per verification image."
        )
    if len(labels) and not (labels.min() >= 0 and labels.max() < model.num_classes):
        raise ExportError(
            f"verify_labels range over [{labels.min()}, {labels.max()}]; expected class indices in "
            f"[0, {model.num_classes - 1}]."
        )
    return labels


def _split_images(model, calibration_images, verify_images):
    """(calibration, verification, where the verification images come from)."""
    if verify_images is not None:
        return calibration_images, np.asarray(verify_images, "float32"), "given"
    if calibration_images is not None and len(calibration_images) >= 2:
        held_out = max(1, len(calibration_images) // 5)
        verify_images = np.asarray(calibration_images[-held_out:], "float32")
        return calibration_images[:-held_out], verify_images, "held out from calibration"
    rng = np.random.default_rng(0)
    return calibration_images, rng.uniform(0, 255, (16, *model.image_size, 3)).astype("float32"), "random"


def once_per_array(function):
    """`function` of an array, computed once for each distinct array (by
    shape, dtype and bytes) and then given back as a copy."""
    results = {}

    def cached(array):
        array = np.ascontiguousarray(array)
        key = (array.shape, array.dtype.str, hashlib.sha256(array.data).hexdigest())
        if key not in results:
            results[key] = function(array)
        return results[key].copy()

    return cached


def _softmax(logits):
    """Softmax over the last axis of `logits` `(B, K)`."""
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)
