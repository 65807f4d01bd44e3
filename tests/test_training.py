"""The training program in one process: learning-rate schedules and recipes,
few-shot evaluation, data sets and the input pipeline, augmentation, config
and CLI errors, a NaN loss, the export at a run's end (and none of the export
stack imported by a run without it), mixed bfloat16, and the
same seed giving the same model. Strategies and resuming after kill -9 are in
test_distribute.py."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import ENV, TINY_RUN, TINY_VIT, random_images, randomize, run_python

import keras_vit
from keras_vit.training import augment, data, fewshot, recipes, strategy, train
from keras_vit.training.__main__ import parse


@pytest.mark.parametrize("warmup", [0, 10])
def test_schedules_match_the_formula(warmup):
    """The cosine schedule is Keras' CosineDecay with warmup; it and our linear
    one equal the paper's formula (float32 rounding: 1e-7 of a peak of 0.1)."""
    cosine = recipes.warmup_cosine(0.1, warmup, 110)
    linear = recipes.WarmupLinearDecay(0.1, warmup, 110)
    assert isinstance(cosine, keras.optimizers.schedules.CosineDecay)
    for step in (0, 5, 10, 35, 60, 109, 110, 200):
        progress = min(max((step - warmup) / (110 - warmup), 0), 1)
        warming = step < warmup
        want_cos = 0.1 * step / warmup if warming else 0.05 * (1 + np.cos(np.pi * progress))
        want_lin = 0.1 * step / warmup if warming else 0.1 * (1 - progress)
        np.testing.assert_allclose(float(cosine(step)), want_cos, atol=1e-7)
        np.testing.assert_allclose(float(linear(step)), want_lin, atol=1e-7)
    with pytest.raises(ValueError, match="warmup_steps 110 must be in"):
        recipes.warmup_cosine(0.1, 110, 110)


def test_recipes_follow_the_paper():
    sgd = recipes.optimizer("finetune", 0.03, 100, 10)
    assert isinstance(sgd, keras.optimizers.SGD) and sgd.momentum == 0.9 and sgd.global_clipnorm == 1.0
    adam = recipes.optimizer("pretrain", 1e-3, 100, 10)
    assert isinstance(adam, keras.optimizers.AdamW)
    assert (adam.beta_1, adam.beta_2, adam.weight_decay, adam.global_clipnorm) == (0.9, 0.999, 0.1, 1.0)
    assert isinstance(adam._learning_rate, recipes.WarmupLinearDecay)
    deit = recipes.optimizer("deit", 1e-3, 100, 10)
    assert deit.weight_decay == 0.05
    assert isinstance(deit._learning_rate, keras.optimizers.schedules.CosineDecay)
    with pytest.raises(ValueError, match="no weight decay"):
        recipes.optimizer("finetune", 0.03, 100, 10, weight_decay=0.1)


@pytest.mark.parametrize("recipe", ["finetune", "deit"])
def test_layer_decay_scales_each_variables_rate(recipe):
    """One step from zero state with equal gradients: SGD (momentum 0) moves each variable by lr * g,
    Adam by lr * sign(g); the ratio to the head's step is the variable's multiplier."""
    model = keras_vit.ViT(image_size=16, patch_size=4, hidden_dim=8, num_layers=3, num_heads=2, mlp_dim=16)
    multipliers = recipes.layer_decay_multipliers(model, 0.5)
    expected = {}
    for v in model.trainable_variables:
        layer = v.path.split("/")[0]
        if layer.startswith("encoderblock_"):
            expected[v.path] = 0.5 ** (3 - int(layer[-1]))  # block 2 gets 0.5, block 0 0.125
        elif layer in ("embedding", "class_token", "position_embedding"):
            expected[v.path] = 0.5**4
    assert multipliers == expected and 0.5**4 in multipliers.values()
    opt = recipes.optimizer(
        recipe, 0.1, 10, 0, weight_decay=0.0 if recipe == "deit" else None, lr_multipliers=multipliers
    )
    before = [v.numpy().copy() for v in model.trainable_variables]
    opt.apply([tf.ones_like(v) for v in model.trainable_variables], model.trainable_variables)
    steps = {v.path: np.abs(v.numpy() - b).max() for v, b in zip(model.trainable_variables, before)}
    for path, step in steps.items():
        np.testing.assert_allclose(
            step / steps["head/kernel"], expected.get(path, 1.0), rtol=1e-3, err_msg=path
        )


def test_fewshot_matches_scikit_learn_ridge():
    from sklearn.linear_model import RidgeClassifier

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(5, 12))
    y_train, y_test = np.repeat(np.arange(5), 4), np.repeat(np.arange(5), 30)
    x_train = centers[y_train] + rng.normal(size=(20, 12))
    x_test = centers[y_test] + rng.normal(size=(150, 12))
    for l2 in (0.1, 1.0, 100.0):
        reference = RidgeClassifier(alpha=l2).fit(x_train, y_train).score(x_test, y_test)
        assert fewshot.fewshot_accuracy(x_train, y_train, x_test, y_test, 5, l2) == pytest.approx(reference)
    idx = fewshot.sample_shots(y_test, 3)
    assert np.bincount(y_test[idx]).tolist() == [3] * 5


def test_fewshot_features_are_the_pooled_outputs_with_their_labels():
    splits = data.load_splits("digits")
    ds = splits.test.take(40)
    model = keras_vit.ViT(
        image_size=16, patch_size=4, hidden_dim=16, num_layers=1, num_heads=2, mlp_dim=32, include_top=False
    )
    pooled, labels = fewshot.features(model, ds, (16, 16), splits.num_classes, "bilinear", batch_size=16)
    np.testing.assert_array_equal(labels, [int(y) for _, y in ds.as_numpy_iterator()])
    ((images, _),) = data.pipeline(ds, (16, 16), splits.num_classes, 40, training=False, drop_remainder=False)
    np.testing.assert_allclose(pooled, model.predict(images, verbose=0), atol=1e-5)


def test_mixup_cutmix_erasing_keep_shapes_and_label_mass():
    opts = augment.options(
        dict(
            inception_crop=True,
            translate=0.1,
            flip=True,
            randaugment=2,
            mixup=0.8,
            cutmix=1.0,
            erasing=0.5,
        )
    )
    ds = tf.data.Dataset.from_tensor_slices((np.full((8, 12, 12, 3), 200, "uint8"), np.arange(8) % 4))
    batches = data.pipeline(ds, (16, 16), 4, 4, training=True, augment_options=opts)
    images, labels = next(iter(batches))
    assert images.shape == (4, 16, 16, 3) and labels.shape == (4, 4)
    np.testing.assert_allclose(labels.numpy().sum(1), 1.0, atol=1e-5)
    assert 0 <= images.numpy().min() and images.numpy().max() <= 255
    crop = augment.inception_crop(tf.zeros((40, 30, 3)), (16, 16))
    assert crop.shape == (16, 16, 3)


def test_training_stream_replays_from_its_start():
    # Every iterator (a distributed one, a rerun) sees the same batches;
    # the stream is still shuffled, and differs from one batch to the next.
    ds = tf.data.Dataset.from_tensor_slices((np.zeros((12, 4, 4, 3), "uint8"), np.arange(12)))
    batches = data.pipeline(ds, (4, 4), 12, 12, training=True, seed=3)
    first, second = ([y.numpy().argmax(-1) for _, y in batches.take(2)] for _ in range(2))
    np.testing.assert_array_equal(first, second)
    assert list(first[0]) != list(range(12)) and list(first[0]) != list(first[1])


def test_evaluation_padded_to_whole_batches_weighs_the_padding_0():
    # 10 examples in batches of 4: the third batch holds 2 and 2 copies of the first, weighing 0.
    images = np.arange(10, dtype="uint8")[:, None, None, None] * np.ones((1, 2, 2, 3), "uint8")
    ds = tf.data.Dataset.from_tensor_slices((images, np.arange(10) % 3))
    batches = list(data.pipeline(ds, (2, 2), 3, 4, training=False, resize="nearest", pad_to_batch=True))
    assert [b[0].shape[0] for b in batches] == [4, 4, 4] and data.padded_count(10, 4) == 12
    pixels = np.concatenate([x.numpy()[:, 0, 0, 0] for x, _, _ in batches])
    weights = np.concatenate([w.numpy() for _, _, w in batches])
    np.testing.assert_array_equal(pixels, [*range(10), 0, 0])
    np.testing.assert_array_equal(weights, [1] * 10 + [0, 0])
    labels = np.concatenate([y.numpy().argmax(-1) for _, y, _ in batches])
    np.testing.assert_array_equal(labels, [*(np.arange(10) % 3), 0, 0])
    assert data.padded_count(12, 4) == 12  # no padding where the batches are whole


def test_digits_splits():
    splits = data.load_splits("digits")
    sizes = [data.count(s) for s in splits[:3]]
    assert sum(sizes) == 1797 and sizes[0] == 1257 and splits.num_classes == 10
    image, _ = next(iter(splits.train))
    assert image.shape == (8, 8, 3) and image.dtype == tf.uint8 and int(tf.reduce_max(image)) == 255


def test_tfds_by_name(monkeypatch):
    import tensorflow_datasets as tfds

    calls = {}

    def fake_load(name, split, data_dir, as_supervised, with_info):
        calls.update(name=name, split=split, data_dir=data_dir)
        label = type("L", (), {"num_classes": 10, "names": [f"class_{i}" for i in range(10)]})()
        info = type("Info", (), {"features": {"label": label}})()

        def make(n):
            images = np.zeros((n, 32, 32, 3), "uint8")
            return tf.data.Dataset.from_tensor_slices((images, np.zeros(n, "int64")))

        return [make(9), make(1), make(2)], info

    monkeypatch.setattr(tfds, "load", fake_load)
    splits = data.load_splits("cifar10", data_dir="/data/tfds")
    assert calls == dict(name="cifar10", split=["train[:90%]", "train[90%:]", "test"], data_dir="/data/tfds")
    assert splits.num_classes == 10 and data.count(splits.train) == 9
    assert splits.class_names == [f"class_{i}" for i in range(10)]


def test_image_folder(tmp_path):
    for c, name in enumerate(["cat", "dog"]):
        (tmp_path / name).mkdir()
        for i in range(5):
            pixels = np.full((6, 7, 3), 40 * c + i, "uint8")
            tf.io.write_file(str(tmp_path / name / f"{i}.png"), tf.io.encode_png(pixels))
    splits = data.load_splits(str(tmp_path))
    assert splits.num_classes == 2 and [data.count(s) for s in splits[:3]] == [8, 1, 1]
    image, label = next(iter(splits.test))
    assert image.shape == (6, 7, 3) and int(image[0, 0, 0]) // 40 == int(label)
    (tmp_path / "dog" / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="broken.jpg"):
        data.load_splits(str(tmp_path))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data", "mnist_typo"], "Unknown data set 'mnist_typo'"),
        (["--preset", "vit_z16"], "Unknown preset 'vit_z16'"),
        (["--image-size", "18"], "not divisible"),
        (["--set", 'image_size="abc"'], "image_size must be an int or \\(height, width\\), got 'abc'"),
        (["--set", "recipe=adam"], "recipe must be one of 'finetune', 'pretrain', 'deit', got 'adam'"),
        (["--set", "augment.mixups=1"], "Unknown augment option"),
        (["--set", "epoch=3"], "Unknown config key 'epoch'"),
    ],
)
def test_bad_config_is_reported_before_training(args, message):
    with pytest.raises(ValueError, match=message):
        train.prepare(parse(args))


def test_empty_folder_and_bad_batch_and_tf_config(tmp_path):
    with pytest.raises(ValueError, match="No images"):
        data.load_splits(str(tmp_path))
    with pytest.raises(ValueError, match="batch_size 30 .* not divisible by the 4 replicas"):
        strategy.check_batch_size(30, 4)
    for text, message in [
        ("{not json", "not valid JSON"),
        ('{"cluster": {"worker": ["a:1"]}}', "'task'"),
        ('{"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}', "not host:port"),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}', "out of range"),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}', "not a job"),
    ]:
        with pytest.raises(ValueError, match=message):
            strategy.parse_tf_config(text)


@pytest.mark.e2e
def test_cli_reports_errors_without_traceback(tmp_path):
    env = dict(ENV, TF_CONFIG='{"cluster": {"worker": ["127.0.0.1"]}}')
    result = run_python("-m", "keras_vit.training", "--output", str(tmp_path), env=env, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: TF_CONFIG")
    assert "Traceback" not in result.stderr


# A training run without export, then the names of the export stack's modules it imported; then the same
# check after importing export, which shows the check sees them.
EXPORT_STACK_SCRIPT = """
import sys
from keras_vit.training.__main__ import main

main(sys.argv[2:] + ["--output", sys.argv[1]])
STACK = ("keras_vit.export", "tf2onnx", "onnx", "onnxruntime", "ai_edge_litert", "mediapipe")
loaded = lambda: sorted(m for m in sys.modules if any(m == s or m.startswith(s + ".") for s in STACK))
print("after training:", loaded())
import keras_vit.export
print("after import:", len(loaded()))
"""


@pytest.mark.e2e
def test_training_without_export_imports_no_export_stack(tmp_path):
    done = run_python("-c", EXPORT_STACK_SCRIPT, str(tmp_path), *TINY_RUN, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "after training: []" in done.stdout, done.stdout
    imported = int(done.stdout.split("after import:")[1])
    assert imported >= 3, done.stdout  # keras_vit.export, tf2onnx, onnx, LiteRT, ... once export is imported


@pytest.mark.e2e
def test_run_exports_and_verifies(tmp_path):
    """The main job's last step: the export program writes and checks each file."""
    config = parse(
        [
            *TINY_RUN,
            "--output",
            str(tmp_path),
            "--set",
            'export={"formats": ["tflite", "onnx"], "quantize": ["fp32", "dynamic"], '
            '"calibration_images": 32}',
        ]
    )
    results = train.run(config)
    files = {row["file"]: row for row in results["export"]["files"]}
    assert set(files) == {"model_fp32.tflite", "model_dynamic.tflite", "model.onnx"}
    assert files["model_fp32.tflite"]["max_abs_diff"] <= 1e-4
    assert files["model.onnx"]["max_abs_diff"] <= 1e-4
    assert not any(row["failures"] for row in files.values())
    assert (tmp_path / "export" / "report.json").is_file()


def test_unknown_export_format_is_rejected_before_training(tmp_path):
    config = parse(
        [
            *TINY_RUN,
            "--output",
            str(tmp_path),
            "--set",
            'export={"formats": ["coreml"], "quantize": ["fp32"], "calibration_images": 8}',
        ]
    )
    with pytest.raises(ValueError, match="export: Unknown format 'coreml'"):
        train.check(config)


@pytest.mark.e2e
def test_nan_loss_stops_the_run_with_a_message(tmp_path):
    result = run_python(
        "-m",
        "keras_vit.training",
        *TINY_RUN,
        "--learning-rate",
        "1e30",
        "--output",
        str(tmp_path),
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: The training loss became nan at step")
    assert "Traceback" not in result.stderr and not (tmp_path / "results.json").exists()


@pytest.mark.e2e
def test_mixed_bfloat16_with_steps_per_execution(tmp_path):
    config = parse(
        [
            *TINY_RUN,
            "--precision",
            "mixed_bfloat16",
            "--output",
            str(tmp_path),
            "--set",
            "steps_per_execution=2",
        ]
    )
    results = train.run(config)
    assert results["precision"] == "mixed_bfloat16" and results["steps"] == 12
    assert np.isfinite(results["test_loss"])
    model = keras.models.load_model(tmp_path / "model.keras")
    assert model.get_layer("encoderblock_0").compute_dtype == "bfloat16"
    assert model.predict(np.zeros((2, 16, 16, 3)), verbose=0).dtype == np.float32
    # model.keras loads in a process that never imported the training program.
    load = "import sys, keras, keras_vit; print(type(keras.models.load_model(sys.argv[1])).__name__)"
    result = run_python("-c", load, str(tmp_path / "model.keras"), timeout=120)
    assert result.stdout.strip() == "ViT", result.stderr[-2000:]


@pytest.mark.e2e
def test_xla_train_step_in_mixed_bfloat16_matches_the_uncompiled_step():
    """TPU readiness on the CPU: TPUStrategy runs the train step compiled by
    XLA in bfloat16. From the same random weights (the head too) and batch,
    the XLA step's losses (before and after one pretrain-recipe update) match
    the step run op by op to rtol 1e-2; measured here at most 2.1e-3 (oneDNN
    on or off), which bfloat16's 8-bit mantissa (2^-8 = 3.9e-3) explains."""
    images = random_images(batch=8)
    labels = keras.utils.to_categorical(np.arange(8) % 7, 7)
    losses = {}
    for jit_compile in (False, True):
        model = randomize(keras_vit.ViT(**TINY_VIT, dtype="mixed_bfloat16"), seed=0)
        model.compile(
            optimizer=recipes.optimizer("pretrain", 1e-3, 10, 0),  # Adam, global-norm clip
            loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
            jit_compile=jit_compile,
        )
        assert model.jit_compile is jit_compile
        losses[jit_compile] = [float(model.train_on_batch(images, labels)) for _ in range(2)]
    print("losses op by op, XLA:", losses[False], losses[True])
    np.testing.assert_allclose(losses[True], losses[False], rtol=1e-2)
    first, second = losses[False]
    assert abs(first - np.log(7)) > 0.3  # not the constant logits of a zero head
    assert first - second > 0.3  # the gradient moved the weights


@pytest.mark.e2e
def test_same_seed_same_model(tmp_path):
    """The main job's recipe (augmentation, drop-path, XLA), shortened: two runs
    of one seed give identical weights; another seed does not."""

    def weights(name, seed):
        config = parse(
            [
                "--steps-per-epoch",
                "6",
                "--epochs",
                "2",
                "--seed",
                str(seed),
                "--output",
                str(tmp_path / name),
                "--set",
                "fewshot=[]",
                "--set",
                "export=null",
                "--set",
                "verbose=0",
                "--set",
                "warmup_steps=2",
            ]
        )
        return train.run(config), keras.models.load_model(tmp_path / name / "model.keras").get_weights()

    (first, a), (second, b), (_, c) = weights("a", 0), weights("b", 0), weights("c", 1)
    assert first["test_loss"] == second["test_loss"]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
