"""The exported `.tflite` files in the mobile runtime, MediaPipe Tasks'
ImageClassifier: it loads each file as written (the metadata gives it the
input's normalization and the labels) and classifies uint8 RGB digits as the
Keras model does; the training program's export carries its data set's labels."""

import json
import zipfile

import keras
import mediapipe as mp
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert import schema_py_generated as schema
from digits import digits_images
from helpers import fit_digits_vit, randomize
from mediapipe.tasks.metadata import metadata_schema_py_generated as meta
from mediapipe.tasks.python import BaseOptions
from mediapipe.tasks.python.vision import ImageClassifier, ImageClassifierOptions
from tensorflow.python.framework import config as tf_config

import keras_vit
from keras_vit import export
from keras_vit.export.__main__ import main
from keras_vit.export.metadata import with_metadata
from keras_vit.export.tflite import convert_tflite
from keras_vit.export.verify import MIN_TOP1_AGREEMENT
from keras_vit.training import data, train

# A trained model, exported and classified in MediaPipe: one worker runs the module, so it is built once.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("test_mediapipe")]

DIGITS = [str(i) for i in range(10)]
# A ViT for the tests that check the file, not its accuracy: 16x16 images, 4 patches, one block.
SMALL_VIT = dict(image_size=16, patch_size=8, hidden_dim=16, num_layers=1, num_heads=2, mlp_dim=32)
# Top-1 agreement of MediaPipe's top category with Keras' argmax; the calibrated quantizations are held to
# the export's own limits (export/verify.py).
MIN_AGREEMENT = {"fp32": 0.99, "fp16": 0.99, "dynamic": 0.99}


@pytest.fixture(scope="module")
def trained():
    """(model, calibration images, held-out uint8 images `(N, 16, 16, 3)`, Keras logits of them): a tiny
    ViT fit on 1,400 shuffled digits with whole pixel values (as a camera frame has), seeded and
    deterministic. Held-out accuracy 90-95% over seeds; MediaPipe's dynamic-range int8 agrees with Keras on
    99.5-100% of the 397 held-out images (seeds 0-3, oneDNN on and off)."""
    was_deterministic = tf_config.is_op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    try:
        keras.utils.set_random_seed(0)
        images, labels = digits_images(16)
        order = np.random.default_rng(0).permutation(len(images))
        images, labels = np.round(images[order]), labels[order]
        model = fit_digits_vit(images, labels, epochs=10, peak_learning_rate=3e-3)
    finally:
        if not was_deterministic:  # tf.config can only enable it: leave later tests as they were
            tf_config.disable_op_determinism()
    held_out = images[1400:]
    return model, images[:300], held_out.astype("uint8"), model.predict(held_out, verbose=0)


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    """(export folder, report): every quantization as `.tflite`, with the digits' names."""
    model, calibration, held_out, _ = trained
    out = tmp_path_factory.mktemp("mediapipe")
    report = export.export_model(
        model,
        str(out),
        formats=("tflite",),
        quantize=export.QUANTIZATIONS,
        calibration_images=calibration,
        verify_images=held_out.astype("float32"),
        class_names=DIGITS,
    )
    return out, report


def classify(path, images):
    """MediaPipe's results for uint8 `images` `(N, H, W, 3)`: scores `(N, K)` by category index, the
    top category's index `(N,)` and name (a list)."""
    options = ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(path)), max_results=10)
    scores, top, names = np.full((len(images), 10), np.nan), [], []
    with ImageClassifier.create_from_options(options) as classifier:
        for i, image in enumerate(images):
            result = classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=image))
            (head,) = result.classifications
            for category in head.categories:
                scores[i, category.index] = category.score
            top.append(head.categories[0].index)
            names.append(head.categories[0].category_name)
    return scores, np.array(top), names


def read_metadata(path):
    """The file's TFLite metadata (read with MediaPipe's schema) and the files zipped after the model."""
    with open(path, "rb") as f:
        content = f.read()
    model = schema.Model.GetRootAsModel(content, 0)
    entries = [model.Metadata(i) for i in range(model.MetadataLength())]
    (buffer,) = [entry.Buffer() for entry in entries if entry.Name() == b"TFLITE_METADATA"]
    buf = model.Buffers(buffer).DataAsNumpy().tobytes()
    assert meta.ModelMetadata.ModelMetadataBufferHasIdentifier(buf, 0)
    metadata = meta.ModelMetadataT.InitFromObj(meta.ModelMetadata.GetRootAsModelMetadata(buf, 0))
    files = {}
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            files = {name: archive.read(name).decode() for name in archive.namelist()}
    return metadata, files


def softmax(logits):
    exp = np.exp(logits - logits.max(-1, keepdims=True))
    return exp / exp.sum(-1, keepdims=True)


def test_every_quantization_classifies_as_keras(trained, exported):
    _, _, held_out, logits = trained
    out, report = exported
    assert all(row["failures"] == [] for row in report["files"]), report  # LiteRT loads them too
    for q in export.QUANTIZATIONS:
        scores, top, names = classify(out / f"model_{q}.tflite", held_out)
        assert np.isfinite(scores).all(), q
        assert names == [DIGITS[i] for i in top], q
        agreement = np.mean(top == logits.argmax(-1))
        print(f"{q}: top-1 agreement {agreement:.2%}, max |Δ| {np.abs(scores - logits).max():.3g}")
        assert agreement >= MIN_AGREEMENT.get(q, MIN_TOP1_AGREEMENT.get(q)), q
    scores, _, _ = classify(out / "model_fp32.tflite", held_out)
    assert np.abs(scores - logits).max() <= 1e-4 * max(1.0, np.abs(logits).max())  # the file, unchanged


def test_metadata_fields(trained, exported):
    model = trained[0]
    out, _ = exported
    for q in export.QUANTIZATIONS:
        metadata, files = read_metadata(out / f"model_{q}.tflite")
        assert files == {"labels.txt": "".join(f"{name}\n" for name in DIGITS)}, q
    assert metadata.name == model.name.encode() and metadata.version == keras_vit.__version__.encode()
    assert metadata.author == b"keras_vit" and metadata.license == b"Apache-2.0"
    assert b"16x16" in metadata.description and b"10 classes" in metadata.description
    assert metadata.minParserVersion == b"1.0.0"
    (subgraph,) = metadata.subgraphMetadata
    (image,), (scores,) = subgraph.inputTensorMetadata, subgraph.outputTensorMetadata
    assert image.content.contentProperties.colorSpace == meta.ColorSpaceType.RGB
    (normalization,) = image.processUnits
    assert list(normalization.options.mean) == [0.0] and list(normalization.options.std) == [1.0]
    (labels,) = scores.associatedFiles
    assert labels.name == b"labels.txt" and labels.type == meta.AssociatedFileType.TENSOR_AXIS_LABELS


def test_softmax_gives_probabilities_and_no_labels_gives_indices(trained, tmp_path):
    model, _, held_out, logits = trained
    report = export.export_model(
        model, str(tmp_path), formats=("tflite",), verify_images=held_out.astype("float32"), softmax=True
    )
    ((row,),) = [report["files"]]
    assert row["failures"] == [] and row["max_abs_diff"] <= 1e-4 and report["tflite_softmax"]
    scores, top, names = classify(tmp_path / "model_fp32.tflite", held_out)
    np.testing.assert_allclose(scores.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(scores, softmax(logits), atol=1e-4)
    assert np.mean(top == logits.argmax(-1)) >= 0.99
    assert not any(names)  # no label file: MediaPipe gives indices only
    metadata, files = read_metadata(tmp_path / "model_fp32.tflite")
    assert files == {} and metadata.subgraphMetadata[0].outputTensorMetadata[0].associatedFiles is None


def test_cli_labels_and_metadata(trained, tmp_path, capsys):
    model, _, held_out, logits = trained
    model.save(tmp_path / "digits.keras")
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    (tmp_path / "names.txt").write_text("\n".join(names) + "\n")
    common = [str(tmp_path / "digits.keras"), "--out", str(tmp_path / "out"), "--format", "tflite"]
    labels = ["--labels", str(tmp_path / "names.txt")]
    assert main([*common, *labels, "--metadata", "author=Jane Doe", "license=MIT"]) == 0
    _, top, got = classify(tmp_path / "out" / "model_fp32.tflite", held_out)
    assert got == [names[i] for i in top] and np.mean(top == logits.argmax(-1)) >= 0.99
    metadata, _ = read_metadata(tmp_path / "out" / "model_fp32.tflite")
    assert (
        metadata.author == b"Jane Doe" and metadata.license == b"MIT" and metadata.name == model.name.encode()
    )
    capsys.readouterr()
    for argv, message in (
        ([*common, "--metadata", "author"], "--metadata takes KEY=VALUE items, got 'author'"),
        ([*common, "--metadata", "colour=red"], "Unknown metadata key(s) ['colour']"),
        ([*common, "--format", "onnx", "--softmax"], "softmax applies to TFLite only"),
    ):
        assert main(argv) == 1
        assert message in capsys.readouterr().err


def test_input_in_minus_one_to_one_is_normalized(tmp_path):
    """A model without rescaling takes (pixel - 127.5) / 127.5; the metadata tells MediaPipe so."""
    model = keras_vit.ViT(**SMALL_VIT, num_classes=10, include_rescaling=False)
    randomize(model)
    path = tmp_path / "model.tflite"
    path.write_bytes(with_metadata(convert_tflite(model), model))
    images = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3), dtype="uint8")
    scores, _, _ = classify(path, images)
    expected = model.predict((images.astype("float32") - 127.5) / 127.5, verbose=0)
    np.testing.assert_allclose(scores, expected, atol=1e-4)
    (normalization,) = read_metadata(path)[0].subgraphMetadata[0].inputTensorMetadata[0].processUnits
    assert list(normalization.options.mean) == [127.5] and list(normalization.options.std) == [127.5]


def test_imagenet_normalization_inside_and_in_the_metadata(tmp_path):
    """DeiT's per-channel ImageNet normalisation: inside the model (include_rescaling, the presets'
    default) MediaPipe feeds [0, 255] pixels; without it the metadata holds the per-channel mean and std
    in pixel units (MediaPipe Tasks 1.2 refuses per-channel normalisation; other TFLite readers apply it)."""
    imagenet = dict(image_mean=(0.485, 0.456, 0.406), image_std=(0.229, 0.224, 0.225))
    model = randomize(keras_vit.ViT(**SMALL_VIT, num_classes=10, **imagenet))
    path = tmp_path / "model.tflite"
    path.write_bytes(with_metadata(convert_tflite(model), model))
    images = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3), dtype="uint8")
    scores, _, _ = classify(path, images)
    expected = model.predict(images.astype("float32"), verbose=0)
    assert np.ptp(expected) > 0.1
    np.testing.assert_allclose(scores, expected, atol=1e-4)
    (normalization,) = read_metadata(path)[0].subgraphMetadata[0].inputTensorMetadata[0].processUnits
    assert list(normalization.options.mean) == [0.0] and list(normalization.options.std) == [1.0]
    outside = keras_vit.ViT(**SMALL_VIT, num_classes=10, include_rescaling=False, **imagenet)
    path.write_bytes(with_metadata(convert_tflite(outside), outside))
    (normalization,) = read_metadata(path)[0].subgraphMetadata[0].inputTensorMetadata[0].processUnits
    np.testing.assert_allclose(normalization.options.mean, [123.675, 116.28, 103.53], rtol=1e-6)
    np.testing.assert_allclose(normalization.options.std, [58.395, 57.12, 57.375], rtol=1e-6)


def test_data_sets_name_their_classes(tmp_path):
    assert data.load_splits("digits").class_names == DIGITS
    for name in ("zebra", "cat", "dog"):
        (tmp_path / name).mkdir()
        tf.io.write_file(str(tmp_path / name / "0.png"), tf.io.encode_png(np.zeros((4, 4, 3), "uint8")))
    assert data.load_splits(str(tmp_path)).class_names == ["cat", "dog", "zebra"]  # labels 0, 1, 2


def test_training_program_export_writes_the_labels(trained, tmp_path):
    """The main job's last step (train.export_files) puts the data set's class names into each file."""
    model, _, held_out, logits = trained
    export = dict(formats=["tflite"], quantize=["fp32"], calibration_images=32)
    config = dict(batch_size=64, resize="bilinear", data="digits", export=export)
    train.export_files(model, config, data.load_splits("digits"), str(tmp_path))
    path = tmp_path / "export" / "model_fp32.tflite"
    _, top, names = classify(path, held_out)
    assert names == [DIGITS[i] for i in top] and np.mean(top == logits.argmax(-1)) >= 0.99
    metadata, files = read_metadata(path)
    assert files == {"labels.txt": "".join(f"{name}\n" for name in DIGITS)}
    assert metadata.description.endswith(b"Trained on digits.")
    assert (tmp_path / "export" / "labels.txt").read_text().split() == DIGITS


def test_cli_imagenet_labels_downloaded_once(tmp_path, monkeypatch, capsys):
    """`--labels imagenet`: the ImageNet-1k names, fetched with their checksum into $KERAS_VIT_HOME once."""
    import hashlib

    from keras_vit.export import labels

    names = [f"class_{i}" for i in range(1000)]
    index = tmp_path / "served" / "imagenet_class_index.json"
    index.parent.mkdir()
    index.write_text(json.dumps({str(i): [f"n{i:08d}", name] for i, name in enumerate(names)}))
    monkeypatch.setenv("KERAS_VIT_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(labels, "IMAGENET_CLASS_INDEX_URL", index.as_uri())
    monkeypatch.setattr(labels, "IMAGENET_CLASS_INDEX_MD5", hashlib.md5(index.read_bytes()).hexdigest())
    model = randomize(keras_vit.ViT(**SMALL_VIT, num_classes=1000))
    model.save(tmp_path / "m.keras")
    argv = [
        str(tmp_path / "m.keras"),
        "--out",
        str(tmp_path / "out"),
        "--format",
        "tflite",
        "--labels",
        "imagenet",
    ]
    assert main(argv) == 0, capsys.readouterr().err
    assert (tmp_path / "out" / "labels.txt").read_text().splitlines() == names
    _, files = read_metadata(tmp_path / "out" / "model_fp32.tflite")
    assert files["labels.txt"].splitlines() == names
    assert (tmp_path / "home" / "downloads" / "imagenet_class_index.json").is_file()
    index.unlink()  # the cached copy serves the next export
    assert main([*argv[:2], str(tmp_path / "again"), *argv[3:]]) == 0, capsys.readouterr().err
    monkeypatch.setenv("KERAS_VIT_HOME", str(tmp_path / "empty"))  # nothing cached, nothing served
    assert main([*argv[:2], str(tmp_path / "third"), *argv[3:]]) == 1
    assert "Could not download the ImageNet class names" in capsys.readouterr().err
