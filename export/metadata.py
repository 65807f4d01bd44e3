"""TFLite model metadata, as MediaPipe Tasks' ImageClassifier and the TFLite
Support library read it: the model's name, version, author and license, the
input image's colour space and normalization, and the class labels.

The metadata is a flatbuffer (`metadata_schema.fbs`, identifier "M001") held
in a buffer of the model named "TFLITE_METADATA"; its associated file
(`labels.txt`) follows the model's flatbuffer as a zip archive.
"""

import io
import zipfile

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema
from mediapipe.tasks.metadata import metadata_schema_py_generated as meta

import keras_vit
from keras_vit.export.errors import ExportError
from keras_vit.images import pixel_mean_std

METADATA_NAME = "TFLITE_METADATA"
LABELS = "labels.txt"
INFO_KEYS = ("name", "description", "version", "author", "license")
# The oldest metadata parser that reads every field written here (the fields of schema version 1.0.0).
MIN_PARSER_VERSION = "1.0.0"


def default_info(model):
    """The metadata's name, description, version, author and license for `model`."""
    height, width = model.image_size
    return dict(
        name=model.name,
        description=f"keras_vit Vision Transformer ({model.name}) classifying {height}x{width} RGB images "
        f"into {model.num_classes} classes.",
        version=keras_vit.__version__,
        author="keras_vit",
        license="Apache-2.0",
    )


def check_info(info):
    """An ExportError for a key of `info` not in INFO_KEYS, or a value that is not a string."""
    unknown = sorted(set(info) - set(INFO_KEYS))
    if unknown:
        raise ExportError(f"Unknown metadata key(s) {unknown}; expected some of {', '.join(INFO_KEYS)}.")
    for key, value in info.items():
        if not isinstance(value, str):
            raise ExportError(f"Metadata {key!r} must be a string, got {value!r}.")


def label_file(class_names):
    """The bytes of `labels.txt`: one class name a line."""
    return "".join(f"{name}\n" for name in class_names).encode()


def with_metadata(content, model, class_names=None, softmax=False, info=None):
    """`.tflite` bytes `content` of `model` (float32 images `(1 or B, H, W, 3)`
    -> logits `(1 or B, K)`) with metadata: `info` overrides default_info's
    keys (check_info); `class_names` (K) become `labels.txt`, the output's
    label file; `softmax` ends the graph in a SOFTMAX, so that the scores are
    probabilities `(1 or B, K)`. Returns the new bytes."""
    tflite = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(content, 0))
    if any(entry.name == b"buffer_location" for entry in tflite.metadata):
        # Over 2 GB the converter puts the weights after the flatbuffer, at offsets that repacking would move.
        raise ExportError(
            "TFLite metadata cannot be added to a file over 2 GB (weights stored after the flatbuffer); "
            "export fp16 or dynamic instead."
        )
    if softmax:
        _append_softmax(tflite)
    metadata = _metadata(model, dict(default_info(model), **(info or {})), class_names is not None, softmax)
    tflite.buffers.append(schema.BufferT(data=np.frombuffer(metadata, np.uint8)))
    tflite.metadata.append(schema.MetadataT(name=METADATA_NAME, buffer=len(tflite.buffers) - 1))
    tflite.buffers = [_AlignedBuffer(data=b.data, offset=b.offset, size=b.size) for b in tflite.buffers]
    builder = flatbuffers.Builder(len(content) + len(metadata) + 1024)
    builder.Finish(tflite.Pack(builder), file_identifier=b"TFL3")
    out = io.BytesIO(builder.Output())
    if class_names is not None:
        with zipfile.ZipFile(out, "a", zipfile.ZIP_STORED) as archive:  # ZipInfo's fixed date: same bytes
            archive.writestr(zipfile.ZipInfo(LABELS), label_file(class_names))
    return out.getvalue()


class _AlignedBuffer(schema.BufferT):
    """A buffer whose data is packed on a 16-byte boundary, as the converter
    writes them (`data:[ubyte] (force_align: 16)`); BufferT.Pack aligns to 1."""

    def Pack(self, builder):
        if self.data is not None:
            builder.Prep(16, len(self.data))
        return super().Pack(builder)


def _append_softmax(tflite):
    """Ends the one graph of `tflite` (a schema.ModelT) in a float32 SOFTMAX
    over its output; the signature's output becomes the probabilities."""
    (graph,) = tflite.subgraphs
    (logits,) = graph.outputs
    source = graph.tensors[logits]
    if source.type != schema.TensorType.FLOAT32:
        raise ExportError("softmax needs a .tflite file with a float32 output.")
    graph.tensors.append(
        schema.TensorT(
            name="probabilities", shape=source.shape, shapeSignature=source.shapeSignature, type=source.type
        )
    )
    probabilities = len(graph.tensors) - 1
    tflite.operatorCodes.append(
        schema.OperatorCodeT(
            deprecatedBuiltinCode=schema.BuiltinOperator.SOFTMAX,
            builtinCode=schema.BuiltinOperator.SOFTMAX,
            version=1,
        )
    )
    graph.operators.append(
        schema.OperatorT(
            opcodeIndex=len(tflite.operatorCodes) - 1,
            inputs=[logits],
            outputs=[probabilities],
            builtinOptionsType=schema.BuiltinOptions.SoftmaxOptions,
            builtinOptions=schema.SoftmaxOptionsT(beta=1.0),
        )
    )
    graph.outputs = [probabilities]
    for signature in tflite.signatureDefs or []:
        for output in signature.outputs:
            if output.tensorIndex == logits:
                output.tensorIndex = probabilities


def input_normalization(model):
    """`(mean, std)` lists in [0, 255] pixel units that take pixels to the
    model's input (`keras_vit.images.pixel_mean_std`), one value where the
    three channels agree."""
    mean, std = map(list, pixel_mean_std(model))
    if len(set(mean)) == 1 and len(set(std)) == 1:
        return mean[:1], std[:1]
    return mean, std


def _numbers(values):
    return ", ".join(f"{v:g}" for v in values)


def _metadata(model, info, labels, softmax):
    """The "M001" metadata flatbuffer of `model`: `info` (INFO_KEYS), the
    input's normalization, and the output's label file if `labels`."""
    mean, std = input_normalization(model)
    low = [(0.0 - m) / s for m, s in zip(mean, std)]
    high = [(255.0 - m) / s for m, s in zip(mean, std)]
    height, width = model.image_size
    image = meta.TensorMetadataT(
        name="image",
        description=f"RGB image {height}x{width}, float32 values (pixel - mean) / std for pixels in "
        f"[0, 255], mean {_numbers(mean)}, std {_numbers(std)} (per channel where three).",
        content=meta.ContentT(
            contentPropertiesType=meta.ContentProperties.ImageProperties,
            contentProperties=meta.ImagePropertiesT(colorSpace=meta.ColorSpaceType.RGB),
        ),
        processUnits=[
            meta.ProcessUnitT(
                optionsType=meta.ProcessUnitOptions.NormalizationOptions,
                options=meta.NormalizationOptionsT(mean=mean, std=std),
            )
        ],
        stats=meta.StatsT(max=high, min=low),
    )
    scores = meta.TensorMetadataT(
        name="probabilities" if softmax else "logits",
        description=f"{'Probabilities' if softmax else 'Logits'} of the {model.num_classes} classes.",
        content=meta.ContentT(
            contentPropertiesType=meta.ContentProperties.FeatureProperties,
            contentProperties=meta.FeaturePropertiesT(),
        ),
        stats=meta.StatsT(max=[1.0], min=[0.0]) if softmax else None,
        associatedFiles=[
            meta.AssociatedFileT(
                name=LABELS,
                description="Class names, one a line, in the order of the scores.",
                type=meta.AssociatedFileType.TENSOR_AXIS_LABELS,
            )
        ]
        if labels
        else None,
    )
    metadata = meta.ModelMetadataT(
        **info,
        subgraphMetadata=[
            meta.SubGraphMetadataT(
                name="image_classifier", inputTensorMetadata=[image], outputTensorMetadata=[scores]
            )
        ],
        minParserVersion=MIN_PARSER_VERSION,
    )
    builder = flatbuffers.Builder(1024)
    builder.Finish(metadata.Pack(builder), file_identifier=b"M001")
    return bytes(builder.Output())
