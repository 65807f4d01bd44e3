"""Every keras_vit model reaches builtin-only TFLite, through the project's
export (`convert_tflite`) and through Keras' own `model.export(format="litert")`:
both GELU forms, plain and hybrid, token and gap pooling, with and without
pre-logits, and the kinds beyond the paper (DeiT's distillation token,
registers with timm's norm after pooling, a size chosen at call time, fixed
for export). Ops are read from the flatbuffer; logits are compared with Keras.
A conversion that fails is one line that names the op. Every kind's fp32 and
fp16 files run fully on LiteRT's GPU accelerator (on lavapipe, Mesa's
software Vulkan device, where there is no GPU), and TensorFlow's static GPU
check agrees."""

import contextlib
import io
import itertools
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert import schema_py_generated as schema
from helpers import TINY_VIT, random_images, randomize, require_gpu_run, run_python, tflite_logits
from keras import ops

import keras_vit
from keras_vit import export
from keras_vit.export import ExportError
from keras_vit.export.gpu_delegate import gpu_verdict
from keras_vit.export.tflite import convert_tflite, tflite_ops
from keras_vit.export.verify import MAX_DIFF

pytestmark = pytest.mark.e2e  # every kind converted, run in LiteRT and on its GPU accelerator

HYBRID = dict(patch_size=1, image_size=16, resnet_layers=(), resnet_width=0.5)  # stem stride 4: 4x4 tokens
MATRIX = [
    dict(gelu_approximate=gelu, **(HYBRID if hybrid else {}), pooling=pooling, representation_size=pre_logits)
    for gelu, hybrid, pooling, pre_logits in itertools.product(
        (True, False), (False, True), ("token", "gap"), (None, 24)
    )
] + [
    dict(
        gelu_approximate=False,
        distilled=True,
        image_mean=(0.485, 0.456, 0.406),
        image_std=(0.229, 0.224, 0.225),
    ),
    dict(gelu_approximate=False, pooling="gap", num_registers=4, final_norm="pooled"),
]


def gelu_flags(content):
    """The `approximate` flag of every GELU op of a `.tflite` flatbuffer."""
    model = schema.Model.GetRootAsModel(content, 0)
    codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
    flags = []
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        for i in range(graph.OperatorsLength()):
            op = graph.Operators(i)
            code = codes[op.OpcodeIndex()]
            if max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) == schema.BuiltinOperator.GELU:
                options = schema.GeluOptions()
                table = op.BuiltinOptions()
                options.Init(table.Bytes, table.Pos)
                flags.append(bool(options.Approximate()))
    return flags


@pytest.mark.parametrize("config", MATRIX, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_builtin_only_tflite_both_paths(config, tmp_path):
    model = randomize(keras_vit.ViT(**{**TINY_VIT, **config}))  # the head too: zero logits prove nothing
    images = random_images(batch=3, size=model.image_size)
    expected = keras.ops.convert_to_numpy(model(images))
    assert np.ptp(expected) > 0.1
    path = tmp_path / "litert.tflite"
    model.export(str(path), format="litert", verbose=False)
    for content in (convert_tflite(model, "fp32"), path.read_bytes()):
        found = tflite_ops(content)
        assert all(found.values()), f"non-builtin ops: {[op for op, builtin in found.items() if not builtin]}"
        assert gelu_flags(content) == [config["gelu_approximate"]] * model.num_layers
        got = tflite_logits(content, images)
        diff = float(np.max(np.abs(got - expected)))
        assert diff <= MAX_DIFF["fp32"] * max(1.0, float(np.max(np.abs(expected)))), diff


def test_conversion_failure_is_one_line(monkeypatch, capfd):
    """A GELU written as x (0.5 + 0.5 erf(x/√2)) leaves a tf.Erf, which has no builtin."""
    monkeypatch.setattr(
        keras_vit.layers.mlp, "gelu", lambda x, approximate: x * (0.5 + 0.5 * ops.erf(x * 0.7071067811865476))
    )
    model = keras_vit.ViT(**TINY_VIT)
    capfd.readouterr()
    with pytest.raises(ExportError) as error:
        convert_tflite(model, "fp32")
    message = str(error.value)
    assert "\n" not in message and "Erf" in message and "keras_vit.layers.gelu" in message, message
    assert "loc(" not in capfd.readouterr().err  # no MLIR dump


def test_exact_gelu_model_exports_in_the_cli(tmp_path):
    model = randomize(keras_vit.ViT(**{**TINY_VIT, "gelu_approximate": False}))
    model.save(tmp_path / "m.keras")
    result = run_python(
        "-m",
        "keras_vit.export",
        str(tmp_path / "m.keras"),
        "--out",
        str(tmp_path / "out"),
        "--format",
        "tflite",
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert os.path.isfile(tmp_path / "out" / "model_fp32.tflite")


def test_mixed_precision_model_exports_as_float32(tmp_path):
    """TFLite has no bfloat16 kernels: a mixed_bfloat16 model (precision auto on TPU) exports its float32
    copy, checked against that copy's logits; the model itself stays as it was."""
    model = randomize(keras_vit.ViT(**{**TINY_VIT, "dtype": "mixed_bfloat16"}))
    report = export.export_model(
        model, str(tmp_path), formats=("tflite", "onnx"), quantize=("fp32", "dynamic")
    )
    assert [row["file"] for row in report["files"]] == [
        "model_fp32.tflite",
        "model_dynamic.tflite",
        "model.onnx",
    ]
    assert not any(row["failures"] for row in report["files"]), report["files"]
    assert model.dtype_policy.name == "mixed_bfloat16"
    images = random_images(batch=4)
    bf16 = keras.ops.convert_to_numpy(keras.ops.cast(model(images), "float32"))
    fp32 = tflite_logits((tmp_path / "model_fp32.tflite").read_bytes(), images)
    # bfloat16 keeps 8 bits of mantissa: 0.034 apart here, logits up to 3.6.
    assert float(np.max(np.abs(bf16 - fp32))) <= 0.05 * max(1.0, float(np.max(np.abs(fp32))))


def test_new_kinds_export_verified_to_tflite_and_onnx(tmp_path):
    model = randomize(
        keras_vit.ViT(**{**TINY_VIT, "gelu_approximate": False, "distilled": True, "num_registers": 2})
    )
    report = export.export_model(model, str(tmp_path), formats=("tflite", "onnx"))
    assert [row["file"] for row in report["files"]] == ["model_fp32.tflite", "model.onnx"]
    for row in report["files"]:
        assert row["failures"] == [] and row["max_abs_diff"] <= 1e-4, row


def test_call_time_size_model_exports_at_the_size_given(tmp_path):
    model = randomize(keras_vit.ViT(**{**TINY_VIT, "image_size": None, "position_grid_size": (4, 4)}))
    model.save(tmp_path / "any_size.keras")
    command = ["-m", "keras_vit.export", str(tmp_path / "any_size.keras"), "--format", "tflite", "onnx"]
    refused = run_python(*command, "--out", str(tmp_path / "refused"))
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    (line,) = refused.stderr.strip().splitlines()
    assert (
        "error: vit takes any image size (image_size=None)" in line and "--image-size HEIGHT [WIDTH]" in line
    )
    assert not os.path.exists(tmp_path / "refused" / "model_fp32.tflite")
    result = run_python(*command, "--out", str(tmp_path / "out"), "--image-size", "40", "24")
    assert result.returncode == 0, result.stderr[-3000:]
    images = random_images(batch=3, size=(40, 24))
    expected = keras.ops.convert_to_numpy(model(images))
    assert np.ptp(expected) > 0.1
    content = (tmp_path / "out" / "model_fp32.tflite").read_bytes()
    assert all(tflite_ops(content).values())
    np.testing.assert_allclose(tflite_logits(content, images), expected, atol=1e-4)
    bad = run_python(*command, "--out", str(tmp_path / "bad"), "--image-size", "36")
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "image size (36, 36): image_size 36 (height) is not divisible by patch_size 8" in bad.stderr


def static_gpu_check(path):
    """TensorFlow's static verdict on a `.tflite` file for the GPU delegate: True for "looks compatible"."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        tf.lite.experimental.Analyzer.analyze(model_path=str(path), gpu_compatibility=True)
    return "looks compatible with GPU delegate" in out.getvalue()


# The GPU path computes in half precision: max |GPU - CPU| over this matrix (36 files, 8 images each, AMD
# EPYC, lavapipe) was 0.0020-0.0199, 0.11-0.80% of max(1, max |logits|) (logits up to 3.6); the trained
# digits model's 0.045-0.053, 0.6-0.7% (tests/test_export.py). 2% leaves 2.5x the worst; a file the GPU
# computes wrongly is far above it (a dynamic-range int8 file that compiled: 0.96 for logits up to 1.76, 54%).
GPU_MAX_DIFF = 2e-2


@pytest.mark.parametrize("config", MATRIX, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_every_kind_runs_fully_on_the_gpu_delegate(config, tmp_path):
    """Run, not guessed: each kind's fp32 and fp16 files compiled and run by LiteRT's GPU accelerator; every
    op on the GPU, top-1 as on the CPU for all 8 images. TensorFlow's static check says the same (it also
    called the token-pooled files compatible when the delegate left their class-token slice to the CPU)."""
    model = randomize(keras_vit.ViT(**{**TINY_VIT, **config}))
    images = random_images(batch=8, size=model.image_size)
    for quantize in ("fp32", "fp16"):
        path = tmp_path / f"model_{quantize}.tflite"
        path.write_bytes(convert_tflite(model, quantize))
        cpu = tflite_logits(str(path), images)
        verdict = gpu_verdict(str(path), images, cpu)
        require_gpu_run(verdict)
        print(quantize, verdict, float(np.max(np.abs(cpu))))
        assert verdict["fully_accelerated"] is True and verdict["error"] is None, verdict
        assert verdict["top1_agreement"] >= 0.99, verdict
        assert verdict["max_abs_diff"] <= GPU_MAX_DIFF * max(1.0, float(np.max(np.abs(cpu)))), verdict
        assert static_gpu_check(path), quantize


def test_gpu_verdict_without_a_vulkan_device(tmp_path, monkeypatch):
    """No GPU and no Vulkan driver: the verdict is null with the reason, and the export still succeeds."""
    monkeypatch.setenv("VK_DRIVER_FILES", str(tmp_path / "none.json"))  # the Vulkan loader finds no driver
    monkeypatch.setenv("VK_ICD_FILENAMES", str(tmp_path / "none.json"))  # its older name
    model = randomize(keras_vit.ViT(**TINY_VIT))
    report = export.export_model(model, str(tmp_path / "out"), formats=("tflite",), quantize=("fp16",))
    (row,) = report["files"]
    assert row["failures"] == [], row
    assert row["gpu_delegate"] == dict(
        fully_accelerated=None,
        top1_agreement=None,
        max_abs_diff=None,
        error="no GPU or Vulkan device (LiteRT's WebGPU found no adapter)",
    )
