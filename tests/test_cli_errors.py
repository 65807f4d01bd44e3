"""The command-line programs as a user meets them (issue 13): a mistake is one
line on stderr that names the value and what is expected, never a traceback;
start-up is quiet; output sent to a file is one line per epoch; every flag
has help; the few-shot program evaluates as the run did."""

import json
import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import ROOT, error_line, run_python

import keras_vit
from keras_vit import startup
from keras_vit.training import (
    __main__ as cli,
)
from keras_vit.training import (
    augment,
    callbacks,
    data,
    fewshot,
)
from keras_vit.training import (
    config as configs,
)

ENV = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # the programs' own default
ENV["PYTHONPATH"] = ROOT
# A tiny run on digits; verbose stays "auto".
TINY_CLI_RUN = [
    "--image-size",
    "16",
    "--batch-size",
    "16",
    "--steps-per-epoch",
    "2",
    "--epochs",
    "2",
    "--set",
    'model={"patch_size": 4, "hidden_dim": 16, "num_layers": 1, "num_heads": 2, "mlp_dim": 32}',
    "--set",
    "augment={}",
    "--set",
    "warmup_steps=1",
    "--set",
    "fewshot=[]",
    "--set",
    "jit_compile=false",
    "--set",
    "export=null",
]


def run(*args, module="keras_vit.training"):
    return run_python("-m", module, *args, env=ENV, timeout=300)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "learning_rate=abc"], "learning_rate must be a positive number, got 'abc'."),
        (["--learning-rate", "abc"], "learning_rate must be a positive number, got 'abc'."),
        (["--set", "augment.mixup=abc"], "augment.mixup must be a number >= 0, got 'abc'."),
        (["--set", "resize=bogus"], "resize must be one of 'bilinear', 'nearest', 'bicubic', "),
        (["--epochs", "0"], "epochs must be a positive int, got 0."),
        (["--set", "label_smoothing=1.5"], "label_smoothing must be a number in [0, 1), got 1.5."),
    ],
)
def test_config_mistake_is_one_line_before_any_work(tmp_path, args, message):
    line = error_line(run(*TINY_CLI_RUN, *args, "--output", str(tmp_path / "run")))
    assert message in line
    assert not (tmp_path / "run").exists()  # stopped before the run's first step


def test_output_that_cannot_hold_files_is_one_line(tmp_path):
    (tmp_path / "file.txt").write_text("not a folder")
    output = tmp_path / "file.txt" / "run"
    line = error_line(run(*TINY_CLI_RUN, "--output", str(output)))
    assert f"output must be a folder that can be written, got {str(output)!r} (Not a directory)" in line


def test_folder_data_needs_two_classes_with_images(tmp_path):
    for name in ("cat", "dog"):
        (tmp_path / "pets" / name).mkdir(parents=True)
    tf.io.write_file(str(tmp_path / "pets" / "cat" / "0.png"), tf.io.encode_png(np.zeros((8, 8, 3), "uint8")))
    with pytest.raises(ValueError) as error:
        data.load_splits(str(tmp_path / "pets"))
    assert str(error.value).startswith(f"Class folder {str(tmp_path / 'pets' / 'dog')!r} has no images")
    (tmp_path / "pets" / "dog").rmdir()
    line = error_line(run(*TINY_CLI_RUN, "--data", str(tmp_path / "pets"), "--output", str(tmp_path / "run")))
    assert f"{str(tmp_path / 'pets')!r} has one class folder ('cat'); a classifier needs two or more" in line


@pytest.mark.e2e
def test_damaged_backup_is_one_line_that_says_what_to_delete(tmp_path):
    backup = tmp_path / "run" / "backup"
    backup.mkdir(parents=True)
    (backup / "latest.weights.h5").write_bytes(b"half a file")
    (backup / "training_metadata.json").write_text('{"epoch": 1, "batch": 0}')
    line = error_line(run(*TINY_CLI_RUN, "--output", str(tmp_path / "run")))
    assert f"Cannot resume from {backup / 'latest.weights.h5'} (" in line
    assert f"Delete {backup} to restart the run from epoch 1." in line


def test_backup_interrupted_mid_write_keeps_the_previous_one(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile("adam", "mse")
    model.optimizer.build(model.trainable_variables)
    backup = callbacks.Backup(str(tmp_path / "backup"))
    backup.set_model(model)
    backup.on_epoch_end(0)
    saved = [w.numpy() for w in model.weights]

    def crash(path, overwrite=True):
        with open(path, "wb") as f:
            f.write(b"half a file")
        raise KeyboardInterrupt

    model.save_weights = crash
    for w in model.weights:
        w.assign(w + 1.0)
    with pytest.raises(KeyboardInterrupt):
        backup.on_epoch_end(1)
    restored = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    restored.compile("adam", "mse")
    resume = callbacks.Backup(str(tmp_path / "backup"))
    resume.set_model(restored)
    resume.on_train_begin()
    assert restored._initial_epoch == 1
    for got, want in zip(restored.weights, saved):
        np.testing.assert_array_equal(got.numpy(), want)


def test_backup_overrides_what_keras_calls(tmp_path):
    """callbacks.Backup overrides private members of keras.callbacks.BackupAndRestore. If a Keras
    upgrade renames or stops calling them, this fails and names them, rather than resuming wrongly."""
    calls = []

    class Spy(callbacks.Backup):
        def _load_model(self):
            calls.append("_load_model")
            super()._load_model()

        def _save_model(self):
            calls.append(("_save_model", self._current_epoch, self._last_batch_seen))
            super()._save_model()

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile("sgd", "mse")
    x, y = np.ones((4, 3), "float32"), np.zeros((4, 2), "float32")
    changed = f"Keras {keras.__version__} changed private members of BackupAndRestore (training/callbacks.py)"
    spy = Spy(str(tmp_path / "backup"))
    assert spy._weights_path == str(tmp_path / "backup" / "latest.weights.h5"), changed
    assert spy._training_metadata_path == str(tmp_path / "backup" / "training_metadata.json"), changed
    model.fit(x, y, epochs=2, callbacks=[spy], verbose=0)
    assert calls == ["_load_model", ("_save_model", 1, 0), ("_save_model", 2, 0)], changed
    interrupted = callbacks.Backup(str(tmp_path / "backup"))  # a run killed after its first epoch
    interrupted.set_model(model)
    interrupted.on_epoch_end(0)
    history = model.fit(x, y, epochs=3, callbacks=[callbacks.Backup(str(tmp_path / "backup"))], verbose=0)
    assert history.epoch == [1, 2], changed  # fit starts at the model's _initial_epoch


@pytest.mark.e2e
def test_run_output_is_quiet_and_one_line_per_epoch(tmp_path):
    result = run(*TINY_CLI_RUN, "--output", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr == ""  # no oneDNN/CUDA start-up lines, no cuInit error, no Keras warnings
    assert "\x1b[" not in result.stdout and "\r" not in result.stdout  # stdout is a pipe: no progress bar
    assert len(re.findall(r"^2/2 - .* - loss: ", result.stdout, re.M)) == 2, result.stdout
    assert "Compiling the first step ..." in result.stdout.split("Epoch 1/2")[0]


def test_start_up_lines_follow_the_log_level():
    lines = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
        "I0000 00:00:17.3 4024 port.cc:153] oneDNN custom operations are on.\n",
        "I0000 00:00:17.3 4024 cudart_stub.cc:31] Could not find cuda drivers on your machine.\n",
        "E0000 00:00:17.4 4024 cuda_platform.cc:52] failed call to cuInit: INTERNAL: (303)\n",
        "E0000 00:00:17.4 4024 some.cc:1] a real error\n",
        "a line of Python's\n",
    ]
    assert list(startup.shown(lines, 0)) == lines
    assert list(startup.shown(lines, 2)) == lines[4:]
    assert list(startup.shown(lines, 3)) == lines[5:]
    with_driver = lines[:2] + lines[3:]  # then a failed cuInit is an error
    assert list(startup.shown(with_driver, 2)) == with_driver[2:]


def test_help_describes_every_flag_with_its_default():
    result = run("--help")
    assert result.returncode == 0, result.stderr
    entries = re.split(r"\n  (?=-)", result.stdout.split("options:\n")[1])
    assert len(entries) == len(cli.FLAGS) + 3  # and -h, --config, --set
    defaults = configs.load_config(configs.DEFAULT)
    for entry in entries:
        invocation, _, text = " ".join(entry.split()).partition(" ")
        flag = invocation.rstrip(",").lstrip("-").replace("-", "_")
        if flag in cli.FLAGS:
            text = text.split(" ", 1)[1]  # after the metavar
            default = defaults[flag] if isinstance(defaults[flag], str) else json.dumps(defaults[flag])
            assert text.endswith(f"(default: {default})"), entry
        assert len(text) > 20, entry


def test_fewshot_takes_resize_and_data_from_the_run(tmp_path, monkeypatch):
    model = keras_vit.ViT(
        image_size=16, patch_size=4, hidden_dim=16, num_layers=1, num_heads=2, mlp_dim=32, num_classes=10
    )
    model.save(tmp_path / "model.keras")
    calls = []

    def evaluate(model, splits, image_size, resize, *args):
        calls.append((splits.num_classes, tuple(image_size), resize))
        return {1: 0.5}

    monkeypatch.setattr(fewshot, "evaluate", evaluate)
    fewshot.main(["--model", str(tmp_path / "model.keras")])
    (tmp_path / "results.json").write_text(json.dumps({"config": {"data": "digits", "resize": "nearest"}}))
    fewshot.main(["--model", str(tmp_path / "model.keras")])
    fewshot.main(["--model", str(tmp_path / "model.keras"), "--resize", "bilinear"])
    assert calls == [(10, (16, 16), "bilinear"), (10, (16, 16), "nearest"), (10, (16, 16), "bilinear")]


def test_fewshot_error_is_one_line(tmp_path):
    line = error_line(run("--model", str(tmp_path / "missing.keras"), module="keras_vit.training.fewshot"))
    assert str(tmp_path / "missing.keras") in line


def test_schema_choices_are_the_modules_own():
    methods = {v for k, v in vars(tf.image.ResizeMethod).items() if k.isupper()}
    assert set(configs.RESIZE_METHODS) == methods
    augment_keys = [k for k in configs.SCHEMA if k.startswith("augment.")]
    assert augment_keys == [f"augment.{k}" for k in augment.DEFAULTS]


def test_configs_say_only_what_differs_from_the_defaults(tmp_path):
    assert {*configs.DEFAULTS, "output"} == {key for key in configs.SCHEMA if "." not in key}
    (tmp_path / "empty.json").write_text("{}")
    assert configs.load_config(str(tmp_path / "empty.json")) == {
        **configs.DEFAULTS,
        "output": os.path.join("runs", "empty"),
    }
    given = {}
    for name in configs.list_configs():
        with open(os.path.join(configs.CONFIG_DIR, name + ".json")) as f:
            given[name] = json.load(f)
    for key in configs.DEFAULTS:
        values = [json.dumps(config[key]) for config in given.values() if key in config]
        assert json.dumps(configs.DEFAULTS[key]) not in values, f"a config repeats the default of {key}"
        assert not (len(values) == len(given) and len(set(values)) == 1), f"{key}: one value in every config"


@pytest.mark.e2e
def test_finetune_config_fetches_pretrained_weights_before_any_work(tmp_path):
    """Offline, --config finetune stops in one line that names the file to place by hand,
    before it loads the data or builds the model."""
    env = {**ENV, "KERAS_VIT_HOME": str(tmp_path / "home")}
    result = run_python(
        "-m", "keras_vit.training", "--config", "finetune", "--set", f"output={tmp_path / 'run'}", env=env
    )
    line = error_line(result)
    assert "ViT-B_16.npz" in line and str(tmp_path / "home" / "downloads" / "ViT-B_16.npz") in line, line
