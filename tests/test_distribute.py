"""Distribution strategies and resuming after kill -9, in subprocesses (logical
devices and TF_CONFIG must be set before TensorFlow starts): keras_vit.ViT
fitted by Keras under MirroredStrategy on two logical CPUs against one device;
the training program under the mirrored strategy against one device, as two
multi-worker processes, and rerun after kill -9."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
from helpers import ENV, ROOT, TINY_RUN, run_python

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
            assert run.replicas == (2 if kind == "mirrored" else 1)
            history = run.model.fit(run.train, epochs=3, steps_per_epoch=4, verbose=0)
            losses[kind] = history.history["loss"]
        print("LOSSES", recipe, losses)
        np.testing.assert_allclose(losses["mirrored"], losses["default"], rtol=1e-5)
""")


def test_keras_fit_under_mirrored_strategy_matches_one_device():
    result = subprocess.run(
        [sys.executable, "-c", KERAS_FIT], env=ENV, cwd=TESTS, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "losses" in result.stdout


def test_training_program_under_mirrored_strategy_matches_one_device(tmp_path):
    result = run_python("-c", PROGRAM_FIT, *TINY_RUN, "--output", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "LOSSES" in result.stdout


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_multi_worker_two_processes_end_with_identical_weights(tmp_path):
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    procs = []
    for i in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}})
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "keras_vit.training",
                    "--config",  # a shipped config; with jit_compile true, as it has, XLA cannot run here
                    "deit",
                    "--data",
                    "digits",
                    *TINY_RUN,
                    "--set",
                    "jit_compile=true",
                    "--epochs",
                    "2",
                    "--output",
                    str(tmp_path / f"w{i}"),
                ],
                env=dict(ENV, TF_CONFIG=tf_config),
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
        assert "multi_worker strategy, 2 replica(s)" in out
        assert "jit_compile: false, not True: multi_worker on CPU has no XLA collectives" in out
    import h5py

    weights = []
    for i in range(2):
        with h5py.File(tmp_path / f"w{i}" / "preset" / "model.weights.h5") as f:
            arrays = []
            f.visititems(lambda name, obj: arrays.append(obj[()]) if isinstance(obj, h5py.Dataset) else None)
            weights.append(arrays)
    assert len(weights[0]) > 10
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)
    results = [json.load(open(tmp_path / f"w{i}" / "results.json")) for i in range(2)]
    assert results[0]["steps"] == results[1]["steps"] == 8


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
