"""One training run from a config: checks, strategy, data, model, fit,
evaluation, saved files. `python -m keras_vit.training` calls `prepare`
(where every mistake in the config is found), then `fit`; `run` does both."""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

import keras_vit
from keras_vit import checkpoints, startup
from keras_vit.files import check_writable
from keras_vit.layers.patch_embedding import grid_size, image_size_pair
from keras_vit.presets import preset_config
from keras_vit.training import callbacks, data, distill, fewshot, recipes
from keras_vit.training import config as configs
from keras_vit.training import strategy as strategies


def check(config):
    """Raises a ValueError for a config that cannot run, before any work
    (TensorFlow builds nothing here). Creates the output folder, and proves
    that it takes files."""
    configs.validate(config)
    preset = preset_config(config["preset"])  # names the known presets
    patch = config["model"].get("patch_size", preset["patch_size"])
    grid_size(image_size_pair(config["image_size"]), patch)
    if keras.config.backend() == "jax":
        from keras_vit.training import jax_strategy

        jax_strategy.check(config)
    else:
        check_tensorflow_strategy(config)
    if config["deterministic"] and config["jit_compile"] is True and keras.config.backend() == "tensorflow":
        raise ValueError(
            "deterministic=true turns TensorFlow's op determinism on, under which Keras runs without XLA; "
            "set jit_compile=false (or 'auto'), or deterministic=false."
        )
    if config["distill"]:
        distill.check_teacher_path(config["distill"]["teacher"])
        pooling = config["model"].get("pooling", preset.get("pooling", "token"))
        if pooling != "token":
            raise ValueError(
                f"distill needs the class token beside the distillation token (DeiT); the model has "
                f"pooling={pooling!r}: add --set model.pooling=token."
            )
    if config["export"]:  # the export stack (tf2onnx, LiteRT, ...) is imported only by a run that exports
        from keras_vit import export

        try:
            export.check_formats(config["export"]["formats"], config["export"]["quantize"])
        except export.ExportError as error:
            raise ValueError(f"export: {error}") from None
    try:
        check_writable(config["output"])
    except OSError as e:
        raise ValueError(
            f"output must be a folder that can be written, got {config['output']!r} ({e.strerror or e})."
        ) from None
    if config["weights"] is not None:  # a named source is fetched before the data: offline, one line
        try:
            checkpoints.weights_path(config["preset"], config["weights"])
        except ConnectionError as error:
            raise ValueError(str(error)) from None


def check_tensorflow_strategy(config):
    """The strategy options of a run on TensorFlow: tf.distribute's strategies, and TF_CONFIG."""
    keys = ("model_parallel_size", "coordinator", "num_processes", "process_id")
    jax_only = [key for key in keys if config[key] is not None]
    if config["strategy"] in ("data_parallel", "model_parallel") or jax_only:
        what = f"strategy {config['strategy']!r}" if not jax_only else ", ".join(jax_only)
        raise ValueError(
            f"{what} is for keras.distribution on JAX; set KERAS_BACKEND=jax, or use one of "
            f"{', '.join(s for s in configs.STRATEGIES if s not in ('data_parallel', 'model_parallel'))} "
            f"on TensorFlow."
        )
    if os.environ.get("TF_CONFIG"):
        strategies.parse_tf_config(os.environ["TF_CONFIG"])


@dataclass
class PreparedRun:
    """A run ready to train: its config, strategy and compiled model, and the data."""

    config: dict
    start: float  # time.perf_counter() when preparing began
    placement: "Placement"  # strategy, replicas, precision, and whether this process is the chief
    output: str  # where it writes: config["output"], or a non-chief's workertemp_<worker> in it
    model: keras.Model
    teacher: keras.Model | None  # with distill: DeiT's teacher, frozen
    splits: data.Splits  # unbatched examples, for few-shot and export
    train: tf.data.Dataset  # batched, augmented
    validation: tf.data.Dataset
    test: tf.data.Dataset
    steps_per_epoch: int


@dataclass
class Placement:
    """Where a run trains: its strategy (tf.distribute on TensorFlow,
    keras.distribution on JAX) and what follows from it."""

    scope: contextlib.AbstractContextManager  # the model, optimizer and metrics are made in it
    name: str  # the strategy, one of config.STRATEGIES but "auto"
    replicas: int  # how many ways the batch is split
    chief: bool  # whether this process writes config["output"]
    worker: int  # this process's index among the run's workers (the others' workertemp_<worker>)
    policy: str  # the Keras dtype policy
    jit_compile: bool | str
    whole_batches: bool  # evaluation batches are padded to the batch size (padding weighs 0)
    mesh: str | None  # on JAX: the device mesh in words


def place(config):
    """The Placement of a run on this machine (and, on JAX, the others of
    the run, which it joins first)."""
    if keras.config.backend() == "jax":
        from keras_vit.training import jax_strategy

        jax_strategy.initialize(config)
        distribution, name, replicas = jax_strategy.resolve(config["strategy"], config["model_parallel_size"])
        keras.distribution.set_distribution(distribution)  # fit, evaluate and predict follow it
        return Placement(
            scope=contextlib.nullcontext(),
            name=name,
            replicas=replicas,
            chief=jax_strategy.process_index() == 0,
            worker=jax_strategy.process_index(),
            policy=jax_strategy.precision_policy(config["precision"]),
            jit_compile=config["jit_compile"],
            whole_batches=replicas > 1,  # each device takes an equal share of every batch
            mesh=jax_strategy.describe(distribution),
        )
    strategy, name = strategies.resolve(config["strategy"])
    resolver = strategy.cluster_resolver if name == "multi_worker" else None
    return Placement(
        scope=strategy.scope(),
        name=name,
        replicas=strategy.num_replicas_in_sync,
        chief=strategies.is_chief(resolver),
        worker=resolver.task_id if resolver else 0,
        policy=strategies.precision_policy(config["precision"], name),
        jit_compile=strategies.jit_compile(config["jit_compile"], name),
        whole_batches=False,
        mesh=None,
    )


def run(config):
    """Trains and evaluates; returns the results dict (also written to
    `output/results.json`)."""
    return fit(prepare(config))


def prepare(config):
    """Everything before training: checks, strategy, data, compiled model.
    A user's mistake raises a ValueError here, never during `fit`."""
    start = time.perf_counter()
    check(config)
    out = config["output"]
    os.makedirs(out, exist_ok=True)
    placed = place(config)
    policy = placed.policy
    output = out if placed.chief else os.path.join(out, f"workertemp_{placed.worker}")
    batch = config["batch_size"]
    strategies.check_batch_size(batch, placed.replicas)
    keras.utils.set_random_seed(config["seed"])
    if config["deterministic"]:  # the same seed gives the same model, on the same machine
        tf.config.experimental.enable_op_determinism()
    splits = data.load_splits(config["data"], config.get("data_dir"), config["seed"])
    image_size = image_size_pair(config["image_size"])
    n_train = data.count(splits.train)
    steps_per_epoch = config.get("steps_per_epoch") or n_train // batch
    if steps_per_epoch < 1:
        raise ValueError(f"batch_size {batch} is larger than the {n_train} training images; lower it.")
    total_steps = steps_per_epoch * config["epochs"]
    make = lambda ds, training: data.pipeline(  # noqa: E731
        ds,
        image_size,
        splits.num_classes,
        batch,
        training,
        config["augment"],
        resize=config["resize"],
        drop_remainder=placed.name == "tpu",
        pad_to_batch=placed.whole_batches,
        seed=config["seed"],
        cache=config["cache"],
    )
    train_ds, val_ds, test_ds = (
        make(splits.train, True),
        make(splits.validation, False),
        make(splits.test, False),
    )

    with placed.scope:
        model = keras_vit.ViT.from_preset(
            config["preset"],
            weights=config.get("weights"),
            image_size=image_size,
            num_classes=splits.num_classes,
            dtype=policy,
            **{**config["model"], **({"distilled": True} if config["distill"] else {})},
        )
        teacher = None
        if config["distill"]:  # the teacher runs in the same scope as the student
            teacher = distill.load_teacher(config["distill"]["teacher"], splits.num_classes)
            print(f"DeiT hard-label distillation from {config['distill']['teacher']}", flush=True)
        if config["lora_rank"]:  # the adapters are variables: made in the strategy's scope
            model.enable_lora(config["lora_rank"])
            print(
                f"LoRA rank {config['lora_rank']}: {trainable_params(model):,} of {model.count_params():,} "
                f"parameters trainable",
                flush=True,
            )
        optimizer = recipes.optimizer(
            config["recipe"],
            config["learning_rate"],
            total_steps,
            config["warmup_steps"],
            config.get("weight_decay"),
            recipes.layer_decay_multipliers(model, config["layer_decay"]) if config["layer_decay"] else None,
        )
        if policy == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        metrics = [
            keras.metrics.CategoricalAccuracy(name="accuracy"),
            keras.metrics.TopKCategoricalAccuracy(5, name="top5"),
        ]
        model.compile(
            optimizer=optimizer,
            loss=keras.losses.CategoricalCrossentropy(
                from_logits=True, label_smoothing=config["label_smoothing"]
            ),
            # Weighted where evaluation batches carry padding that weighs 0 (`metrics` take no weights).
            **{"weighted_metrics" if placed.whole_batches else "metrics": metrics},
            jit_compile=placed.jit_compile,
            steps_per_execution=config["steps_per_execution"],
        )
        if teacher is not None:
            distill.use_hard_distillation(model, teacher)
    return PreparedRun(
        config=config,
        start=start,
        placement=placed,
        output=output,
        model=model,
        teacher=teacher,
        splits=splits,
        train=train_ds,
        validation=val_ds,
        test=test_ds,
        steps_per_epoch=steps_per_epoch,
    )


def fit(run):
    """Trains a `PreparedRun`, evaluates it, saves the files; returns the results.

    Under multi-worker every worker runs all of it (evaluation and prediction
    are collective), and only the chief writes into `output`: the others
    write the same files into `output/workertemp_<id>` (as TensorFlow's
    multi-worker Keras guide does), removed at the end. Every worker resumes
    from the chief's backup."""
    if not run.placement.chief:
        shutil.rmtree(run.output, ignore_errors=True)  # left by a killed run
        os.makedirs(run.output)
        print(
            f"Not the chief: writing into {run.output} (removed at the end); "
            f"the chief writes {run.config['output']}",
            flush=True,
        )
    try:
        return _train_evaluate_save(run)
    finally:
        if not run.placement.chief:
            shutil.rmtree(run.output, ignore_errors=True)


def _train_evaluate_save(run):
    config, model = run.config, run.model
    out, batch, steps_per_epoch = run.output, config["batch_size"], run.steps_per_epoch
    progress, cbs = callbacks.standard(
        out, batch, steps_per_epoch, restore_dir=os.path.join(config["output"], "backup")
    )
    placed = run.placement
    mesh = f" (mesh {placed.mesh})" if placed.mesh else ""
    print(
        f"{placed.name} strategy{mesh}, {placed.replicas} replica(s), {placed.policy}, global batch {batch}, "
        f"{steps_per_epoch} steps x {config['epochs']} epochs",
        flush=True,
    )
    # Padded evaluation batches: their count, which Keras cannot infer once it shards them over processes.
    steps = (
        (lambda split: data.padded_count(data.count(split), batch) // batch) if placed.whole_batches else None
    )
    if placed.whole_batches:
        cbs = [
            callbacks.UnpadValidationLoss(data.padding_ratio(data.count(run.splits.validation), batch)),
            *cbs,
        ]
    fit_start = time.perf_counter()
    history = model.fit(
        run.train,
        validation_data=run.validation,
        validation_steps=steps and steps(run.splits.validation),
        epochs=config["epochs"],
        steps_per_epoch=steps_per_epoch,
        callbacks=cbs,
        verbose=config["verbose"],
        shuffle=False,  # the stream is shuffled in tf.data
    )
    train_seconds = time.perf_counter() - fit_start
    test = model.evaluate(run.test, steps=steps and steps(run.splits.test), return_dict=True, verbose=0)
    if placed.whole_batches:  # Keras divides the summed loss by the padded count; the padding weighs 0
        test["loss"] *= data.padding_ratio(data.count(run.splits.test), batch)
    save_without_optimizer(model, os.path.join(out, "model.keras"))
    model.save_to_preset(os.path.join(out, "preset"))
    results = dict(
        test_accuracy=test["accuracy"],
        test_top5=test["top5"],
        test_loss=test["loss"],
        final_train_loss=history.history["loss"][-1] if history.history.get("loss") else None,
        final_val_loss=history.history["val_loss"][-1] if history.history.get("val_loss") else None,
        steps=int(model.optimizer.iterations.numpy()),
        resumed_from_epoch=progress.initial_epoch,
        images_per_second=progress.images_per_second(),
        train_seconds=train_seconds,
        strategy=placed.name,
        replicas=placed.replicas,
        mesh=placed.mesh,
        precision=placed.policy,
        params=model.count_params(),
        trainable_params=trainable_params(model),
        output=config["output"],
    )
    if run.teacher is not None:
        results["distill"] = distill.evaluate(model, run.teacher, run.test)
    if config["fewshot"]:
        results["fewshot"] = fewshot.evaluate(
            model, run.splits, model.image_size, config["resize"], config["fewshot"]
        )
    if config["export"] and keras.config.backend() == "tensorflow":
        results["export"] = export_files(model, config, run.splits, out)
    elif config["export"] and placed.chief:  # TensorFlow's converters: from the saved model.keras
        results["export"] = export_on_tensorflow(config, out)
    results["wall_seconds"] = time.perf_counter() - run.start
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(dict(results, config=config), f, indent=2)
    print(summary(results), flush=True)
    return results


def save_without_optimizer(model, path):
    """Saves `model` as an uncompiled `.keras` file, so that a plain
    `keras.models.load_model(path)` reads it without this program's
    optimizer and schedule classes."""
    checkpoints.copy_with(model).save(path)  # with LoRA on, its adapters merged into the kernels


def trainable_params(model):
    """How many weights of `model` the optimizer updates."""
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def export_files(model, config, splits, output):
    """Exports the trained `model` with the export program (`export/`) into
    `output/export/` and verifies every file against the model on the test
    split; int8 is calibrated on up to `calibration_images` training images
    (`config["export"]`). The data set's class names go into `labels.txt`
    and each `.tflite` file's metadata; the test labels give each file's own
    test accuracy. Returns the export report. On TensorFlow only."""
    from keras_vit import export
    from keras_vit.export.metadata import default_info

    options = config["export"]
    data_name = os.path.basename(os.path.normpath(config["data"]))  # digits, a TFDS name or a folder
    description = f"{default_info(model)['description']} Trained on {data_name}."

    def images(ds, limit=None):
        """`(images (N, H, W, 3), labels (N,))` of `ds`."""
        batches = data.pipeline(
            ds if limit is None else ds.take(limit),
            model.image_size,
            splits.num_classes,
            config["batch_size"],
            training=False,
            resize=config["resize"],
            drop_remainder=False,
        )
        pairs = [(x.numpy(), y.numpy().argmax(-1)) for x, y in batches]  # labels are one-hot
        return np.concatenate([x for x, _ in pairs]), np.concatenate([y for _, y in pairs])

    test_images, test_labels = images(splits.test)
    return export.export_model(
        model,
        os.path.join(output, "export"),
        formats=options["formats"],
        quantize=options["quantize"],
        calibration_images=images(splits.train, options["calibration_images"])[0],
        verify_images=test_images,
        verify_labels=test_labels,
        class_names=splits.class_names,
        metadata=dict(description=description),
    )


def export_on_tensorflow(config, output):
    """A run on another backend exports as `export_files` does, in a child
    process on TensorFlow, from `output/model.keras` and the run's data;
    returns the export report."""
    print("Exporting on TensorFlow from model.keras (a child process) ...", flush=True)
    child = (
        "import json, sys; from keras_vit.training import train; train.export_saved(json.loads(sys.argv[1]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", child, json.dumps(dict(config, output=output))],
        env=dict(os.environ, KERAS_BACKEND="tensorflow"),
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = done.stderr.splitlines(keepends=True)
    if done.returncode:
        reason = lines[-1].strip().removeprefix("error: ") if lines else f"exit code {done.returncode}"
        raise callbacks.RunError(f"The export on TensorFlow from {output}/model.keras failed: {reason}")
    sys.stderr.writelines(startup.shown(lines, int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))))
    with open(os.path.join(output, "export", "report.json")) as f:
        return json.load(f)


def export_saved(config):
    """The child process of `export_on_tensorflow`: `export_files` of
    `config["output"]/model.keras`; a failure is one line on stderr, exit code 1."""
    from keras_vit import export

    model = keras_vit.load_model(os.path.join(config["output"], "model.keras"))
    splits = data.load_splits(config["data"], config.get("data_dir"), config["seed"])
    try:
        export_files(model, config, splits, config["output"])
    except (export.ExportError, export.VerificationError, ValueError) as error:
        sys.exit(f"error: {error}")


def exported_accuracy(r):
    """Summary rows of each exported file's own test top-1 and, for a
    `.tflite` file, its GPU delegate verdict (export/verify.py)."""
    if "export" not in r:
        return []
    from keras_vit.export.verify import format_gpu

    return [
        (
            f"  {row['file']}",
            f"{row['test_accuracy']:.4f}"
            + (f" (GPU delegate: {format_gpu(row['gpu_delegate'])})" if "gpu_delegate" in row else ""),
        )
        for row in r["export"]["files"]
    ]


def summary(r):
    rows = [
        ("test accuracy (top-1)", f"{r['test_accuracy']:.4f}"),
        *exported_accuracy(r),
        ("test accuracy (top-5)", f"{r['test_top5']:.4f}"),
        ("test loss", f"{r['test_loss']:.4f}"),
        ("training steps", r["steps"]),
        ("train images/s", f"{r['images_per_second']:.0f}"),
        ("training time", f"{r['train_seconds']:.1f} s"),
        ("wall time", f"{r['wall_seconds']:.1f} s"),
        ("strategy", f"{r['strategy']} ({r['replicas']} replica(s), {r['precision']})"),
        *([("device mesh", r["mesh"])] if r["mesh"] else []),
    ]
    rows += [(f"few-shot {k}-shot", f"{v:.4f}") for k, v in r.get("fewshot", {}).items()]
    out = r["output"]
    rows += [
        ("model", os.path.join(out, "model.keras")),
        ("preset", os.path.join(out, "preset")),
        ("best weights", os.path.join(out, "best.weights.h5")),
        ("TensorBoard", f"tensorboard --logdir {os.path.join(out, 'logs')}"),
    ]
    if "export" in r:
        rows.append(("exported, verified", os.path.join(out, "export", "report.json")))
    return callbacks.summary_table(rows)
