"""The main job as a newcomer runs it: `python -m keras_vit.training` (config `digits`,
seed 0) in a subprocess reaches >= 94% test accuracy, and every file it writes
loads back in a fresh process with `keras_vit` alone and gives the run's
numbers: `model.keras`, `preset/`, `best.weights.h5`, `results.json` and each
exported file in its own runtime, with its own test accuracy, and each .tflite
file on LiteRT's GPU accelerator; the README's export and few-shot commands
take the preset folder. 2-6 minutes on a 2-core CPU (docs/benchmarks.md)."""

import json
import os

import pytest
from helpers import ROOT, require_gpu_run, run_python

from keras_vit.export.verify import MAX_DIFF

# The main job itself, a few minutes: one worker runs the module, so it is built once.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("test_main_job")]

ENV = dict(os.environ, PYTHONPATH=ROOT)

# Loads every file of the run in a process that has not seen the trainer.
CHECK_FILES = r"""
import json, sys
import keras, numpy as np, onnxruntime, tensorflow as tf
from ai_edge_litert.interpreter import Interpreter
import keras_vit
from keras_vit.training import data

run = sys.argv[1]
results = json.load(open(f"{run}/results.json"))
config = results["config"]
test = data.pipeline(data.load_splits("digits", seed=config["seed"]).test, (24, 24), 10, 64, training=False,
                     resize=config["resize"], drop_remainder=False)
images = np.concatenate([x.numpy() for x, _ in test])
labels = np.concatenate([y.numpy() for _, y in test]).argmax(-1)

model = keras.models.load_model(f"{run}/model.keras", safe_mode=True)
logits = model.predict(images, verbose=0)
accuracy = float(np.mean(logits.argmax(-1) == labels))
assert abs(accuracy - results["test_accuracy"]) <= 1 / len(labels), (accuracy, results["test_accuracy"])

preset = keras_vit.ViT.from_preset(f"{run}/preset")
np.testing.assert_array_equal(preset.predict(images, verbose=0), logits)
preset.load_weights(f"{run}/best.weights.h5")
assert np.isfinite(preset.predict(images[:8], verbose=0)).all()

export = f"{run}/export"
report = json.load(open(f"{export}/report.json"))
assert all(not row["failures"] for row in report["files"]), report
served = tf.saved_model.load(f"{export}/saved_model/1").signatures["serving_default"]
np.testing.assert_allclose(served(images=tf.constant(images[:16]))["logits"], logits[:16], atol=1e-4)
session = onnxruntime.InferenceSession(f"{export}/model.onnx", providers=["CPUExecutionProvider"])
np.testing.assert_allclose(session.run(["logits"], {"images": images[:16]})[0], logits[:16], atol=1e-4)
interpreter = Interpreter(model_path=f"{export}/model_fp32.tflite")
interpreter.allocate_tensors()
(inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
for image, expected in zip(images[:16], logits[:16]):
    interpreter.set_tensor(inp["index"], image[None])
    interpreter.invoke()
    np.testing.assert_allclose(interpreter.get_tensor(out["index"])[0], expected, atol=1e-4)
rows = {row["file"]: row for row in report["files"]}
for name in ("model_fp16.tflite", "model_dynamic.tflite"):  # the report's test accuracy, counted again here
    interpreter = Interpreter(model_path=f"{export}/{name}")
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    scores = []
    for image in images:
        interpreter.set_tensor(inp["index"], image[None])
        interpreter.invoke()
        scores.append(interpreter.get_tensor(out["index"])[0].copy())
    file_accuracy = float(np.mean(np.argmax(scores, -1) == labels))
    assert abs(file_accuracy - rows[name]["test_accuracy"]) <= 1 / len(labels), (name, file_accuracy)
print("all files load")
"""


@pytest.fixture(scope="module")
def main_job(tmp_path_factory):
    """The run folder of `python -m keras_vit.training --output RUN`, and its results."""
    run = tmp_path_factory.mktemp("main_job") / "digits"
    done = run_python("-m", "keras_vit.training", "--output", str(run), env=ENV, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    # stdout is a pipe: one line per epoch, no progress bar
    assert "Traceback" not in done.stderr and "\x1b[" not in done.stdout
    with open(run / "results.json") as f:
        return run, json.load(f)


# The lowest test accuracy a working run may give, on any CPU. A small ViT trained from scratch on 1,257
# images is chaotic: another CPU's rounding moves it as far as another seed does. Measured
# (docs/benchmarks.md, the main job): seed 0 gives 0.9704 (Intel Xeon, oneDNN on) to 0.9852 (AMD EPYC,
# with Keras' CosineDecay since 7ee449f; 0.9963 before it); over seeds 0-9 x oneDNN on/off on the Xeon
# the lowest is 0.9630 (seed 9), 10 of 270 test images wrong. The bound leaves 6 more
# images (2.3%) below that. A broken run is far below it: a learning rate 100x too small gives 0.4185
# (seed 0, the Xeon).
MIN_ACCURACY = 0.94


def test_main_job_learns_the_digits(main_job):
    _, results = main_job
    assert results["test_accuracy"] >= MIN_ACCURACY, results
    rows = {row["file"]: row for row in results["export"]["files"]}  # each one loaded back and checked
    assert set(rows) == {
        "saved_model/1",
        "model_fp32.tflite",
        "model_fp16.tflite",
        "model_dynamic.tflite",
        "model_w8a8.tflite",
        "model.onnx",
    }
    # Seed 0 (AMD EPYC): 0 (SavedModel), 3.5e-6 (TFLite), 3.9e-6 (ONNX); fp16 4.1e-3 against its scaled limit
    # 1e-2 * max |logits|, which export checks; dynamic int8 agrees on all 270 images.
    assert not any(row["failures"] for row in rows.values()), rows
    for name in ("saved_model/1", "model_fp32.tflite", "model.onnx"):
        assert rows[name]["max_abs_diff"] <= 1e-4, rows[name]
    assert rows["model_fp16.tflite"]["max_abs_diff"] <= 5e-2, rows["model_fp16.tflite"]
    assert rows["model_dynamic.tflite"]["top1_agreement"] >= 0.98, rows["model_dynamic.tflite"]
    assert rows["model_w8a8.tflite"]["top1_agreement"] >= 0.96, rows["model_w8a8.tflite"]
    # Each file's own test accuracy, counted in its runtime on the test split Keras was evaluated on.
    one_image = 1 / results["export"]["verify_images"]["count"]
    assert abs(results["export"]["keras_test_accuracy"] - results["test_accuracy"]) <= one_image, results
    for name, row in rows.items():
        if row["quantize"] in ("fp32", "fp16"):
            assert abs(row["test_accuracy"] - results["test_accuracy"]) <= 2 * one_image, row
        else:  # agreeing with Keras on min_top1_agreement of the images, it loses at most the rest
            assert row["test_accuracy"] >= results["test_accuracy"] - (1 - row["min_top1_agreement"]), row
    assert not os.path.exists(main_job[0] / "backup")  # removed on success


def test_gpu_delegate_runs_the_float_files(main_job):
    """fp32 and fp16 run with every op on LiteRT's GPU accelerator, top-1 as on the CPU; the int8 files fail
    to compile there (the GPU delegate's own error, in the row)."""
    _, results = main_job
    rows = {row["file"]: row for row in results["export"]["files"]}
    require_gpu_run(rows["model_fp32.tflite"]["gpu_delegate"])
    scale = rows["model_fp32.tflite"]["tolerance"] / MAX_DIFF["fp32"]  # max(1, max |Keras logits|)
    for name in ("model_fp32.tflite", "model_fp16.tflite"):
        verdict = rows[name]["gpu_delegate"]
        assert verdict["fully_accelerated"] is True and verdict["error"] is None, verdict
        # Seed 0, AMD EPYC: 100% of the 270 test digits, max |GPU - CPU| 0.021 (fp32), 0.023 (fp16); the
        # GPU path computes in half precision (tests/test_tflite.py, GPU_MAX_DIFF: 2% of the logits' scale).
        assert verdict["top1_agreement"] >= 0.99, verdict
        assert verdict["max_abs_diff"] <= 2e-2 * scale, (verdict, scale)
    for name in ("model_dynamic.tflite", "model_w8a8.tflite"):
        verdict = rows[name]["gpu_delegate"]
        assert verdict["fully_accelerated"] is False and verdict["error"].startswith("GPU compilation failed")
    assert all("gpu_delegate" not in rows[name] for name in ("saved_model/1", "model.onnx"))


def test_every_file_loads_in_a_fresh_process(main_job):
    run, _ = main_job
    done = run_python("-c", CHECK_FILES, str(run), env=ENV, timeout=600)
    assert done.returncode == 0 and "all files load" in done.stdout, done.stderr[-3000:]


def test_readme_commands_take_the_preset_folder(main_job, tmp_path):
    run, results = main_job
    exported = run_python(
        "-m",
        "keras_vit.export",
        str(run / "preset"),
        "--out",
        str(tmp_path / "dist"),
        "--format",
        "tflite",
        env=ENV,
        timeout=600,
    )
    assert exported.returncode == 0, exported.stderr[-3000:]
    fewshot = run_python(
        "-m", "keras_vit.training.fewshot", "--model", str(run / "preset"), env=ENV, timeout=600
    )
    assert fewshot.returncode == 0, fewshot.stderr[-3000:]
    # The preset folder sits in the run: few-shot takes the run's data and resize and repeats its numbers.
    for shots, accuracy in results["fewshot"].items():
        assert f"{float(accuracy):.4f}" in fewshot.stdout, (shots, accuracy, fewshot.stdout)
