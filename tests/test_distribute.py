"""Distribution strategies and resuming after kill -9, in subprocesses (logical
devices and TF_CONFIG must be set before TensorFlow starts): keras_vit.ViT
fitted by Keras under MirroredStrategy on two logical CPUs against one device;
the training program under the mirrored strategy against one device, as two
multi-worker processes sharing one output (killed, rerun), and rerun after
kill -9. The multi-worker chief rule against TensorFlow's."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import tensorflow as tf
from helpers import (
    CLI_WITH_CHECKSUM,
    ENV,
    LOAD_WITH_CHECKSUM,
    ROOT,
    TINY_RUN,
    check_resumed_by_the_chief_alone,
    free_ports,
    kill_9_at,
    run_python,
)
from tensorflow.python.distribute import multi_worker_util

from keras_vit.training.strategy import is_chief

pytestmark = pytest.mark.e2e
TESTS = os.path.dirname(os.path.abspath(__file__))

# Splits the one CPU into two logical devices; the first lines of each script.
TWO_CPUS = textwrap.dedent("""
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
""")

# keras_vit.ViT compiled and fitted with Keras alone (run from tests/ for helpers).
KERAS_FIT = TWO_CPUS + textwrap.dedent("""
    import numpy as np, keras
    import keras_vit
    from helpers import TINY_VIT, random_images

    def train(strategy):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = keras_vit.ViT(**TINY_VIT)
            model.compile(optimizer=keras.optimizers.SGD(0.1),
                          loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        images, labels = random_images(batch=16), np.arange(16) % 7
        history = model.fit(images, labels, batch_size=8, epochs=3, shuffle=False, verbose=0)
        return history.history["loss"], model.predict(images, verbose=0)

    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert mirrored.num_replicas_in_sync == 2
    loss_2, out_2 = train(mirrored)
    loss_1, out_1 = train(tf.distribute.get_strategy())
    np.testing.assert_allclose(loss_2, loss_1, rtol=1e-4)
    np.testing.assert_allclose(out_2, out_1, atol=1e-4)
    print("losses", loss_2, loss_1)
""")

# The training program's model, recipe and data pipeline. Augmentation is off in
# TINY_RUN: its random draws in parallel tf.data maps are not reproducible from
# run to run, so only the data order is compared.
PROGRAM_FIT = TWO_CPUS + textwrap.dedent("""
    import sys
    from keras_vit.training import train
    from keras_vit.training.__main__ import parse
    import numpy as np
    for recipe in ("deit", "finetune"):  # finetune clips the gradient at global norm 1
        losses = {}
        for kind in ("mirrored", "default"):
            config = parse(sys.argv[1:] + ["--strategy", kind, "--recipe", recipe, "--learning-rate", "0.1",
                                           "--set", "weight_decay=null",
                                           "--output", sys.argv[-1] + kind + recipe])
            run = train.prepare(config)
            assert run.placement.replicas == (2 if kind == "mirrored" else 1)
            history = run.model.fit(run.train, epochs=3, steps_per_epoch=4, verbose=0)
            losses[kind] = history.history["loss"]
        print("LOSSES", recipe, losses)
        np.testing.assert_allclose(losses["mirrored"], losses["default"], rtol=1e-5)
""")


def test_keras_fit_under_mirrored_strategy_matches_one_device():
    result = run_python(
        "-c", KERAS_FIT, env={**ENV, "PYTHONPATH": os.pathsep.join([ROOT, TESTS])}, timeout=600
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "losses" in result.stdout


def test_training_program_under_mirrored_strategy_matches_one_device(tmp_path):
    result = run_python("-c", PROGRAM_FIT, *TINY_RUN, "--output", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "LOSSES" in result.stdout


def test_chief_is_the_chief_task_else_worker_0():
    """strategy.is_chief against TensorFlow's own rule (multi_worker_util, private)."""
    assert is_chief(None)  # one machine
    workers = {"worker": ["a:1", "b:1"]}
    for cluster, chiefs in ((workers, {("worker", 0)}), ({"chief": ["c:1"], **workers}, {("chief", 0)})):
        spec = tf.train.ClusterSpec(cluster)
        for task_type in cluster:
            for task_id in range(len(cluster[task_type])):
                resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
                    spec, task_type=task_type, task_id=task_id
                )
                chief = is_chief(resolver)
                assert chief == ((task_type, task_id) in chiefs)
                assert chief == multi_worker_util.is_chief(spec, task_type, task_id)


def _start_workers(output, epochs):
    """Two MultiWorkerMirrored worker processes on 127.0.0.1 running the training
    program with the shipped `deit` config (jit_compile true, which XLA cannot
    run here) into one `output`; their stdout and stderr in one pipe each."""
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    command = [
        "-c",
        CLI_WITH_CHECKSUM,
        "--config",
        "deit",
        "--data",
        "digits",
        *TINY_RUN,
        "--set",
        "jit_compile=true",
        "--set",
        'export={"formats": ["tflite"], "quantize": ["fp32"], "calibration_images": 8}',
        "--epochs",
        str(epochs),
        "--output",
        str(output),
    ]
    return [
        subprocess.Popen(
            [sys.executable, *command],
            env=dict(
                ENV,
                TF_CONFIG=json.dumps(
                    {"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}
                ),
            ),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]


def test_multi_worker_shares_one_output_and_resumes_after_kill_9(tmp_path):
    """Two worker processes, one --output: killed with -9 after two epochs,
    then rerun. Both resume from the chief's backup; worker 0 (the chief)
    alone leaves files; both end with the weights that the saved files hold."""
    out, epochs = tmp_path / "run", 4
    procs = _start_workers(out, epochs)
    kill_9_at(procs, "Epoch 3/")
    assert (out / "backup").exists() and (out / "workertemp_1").exists()
    chief_pids = {procs[0].pid}

    procs = _start_workers(out, epochs)
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    chief_pids.add(procs[0].pid)
    for p, log in zip(procs, outputs):
        assert p.returncode == 0, log[-3000:]
        assert "multi_worker strategy, 2 replica(s)" in log
        assert "jit_compile: false, not True: multi_worker on CPU has no XLA collectives" in log
    resumed = check_resumed_by_the_chief_alone(outputs, out)
    events = [name for _, _, names in os.walk(out / "logs") for name in names]
    assert events and {int(name.split(".")[-3]) for name in events} <= chief_pids, events
    assert (out / "export" / "model_fp32.tflite").is_file() and (out / "export" / "report.json").is_file()
    results = json.load(open(out / "results.json"))
    assert results["steps"] == epochs * 4  # as many steps as an uninterrupted run
    assert results["resumed_from_epoch"] == resumed - 1
    assert (results["strategy"], results["replicas"], results["output"]) == ("multi_worker", 2, str(out))
    # The workers' final weights agree, and are those of the saved files (in a fresh process).
    checksums = [log.split("WEIGHTS ")[1].split()[0] for log in outputs]
    loaded = run_python("-c", LOAD_WITH_CHECKSUM, str(out / "model.keras"), str(out / "preset"))
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout.split() == ["WEIGHTS", checksums[0], "WEIGHTS", checksums[0]]
    assert checksums[0] == checksums[1]


def test_kill_9_then_rerun_resumes(tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "keras_vit.training", *TINY_RUN, "--epochs", "30", "--output", str(out)]
    proc = subprocess.Popen(
        command, env=ENV, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    seen = ""
    deadline = time.time() + 240
    while "Epoch 4/30" not in seen and time.time() < deadline:
        seen += proc.stdout.readline()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert "Epoch 4/30" in seen, seen[-2000:]
    assert (out / "backup").exists()
    result = run_python(*command[1:])
    assert result.returncode == 0, result.stderr[-3000:]
    logs = result.stdout + result.stderr
    resumed = int(logs.split("Resuming from epoch ")[1].split()[0])
    assert 3 <= resumed <= 30 and f"Epoch {resumed}/30" in logs and "Epoch 1/30" not in logs
    results = json.load(open(out / "results.json"))
    assert results["steps"] == 30 * 4  # as many steps as an uninterrupted run
    assert results["resumed_from_epoch"] == resumed - 1
