"""The tests' shared helpers (test modules import from here, never from each
other): the tiny ViT and hybrid configs, a tiny training run's command line,
the repository's root and the environment for subprocesses, random weights and
images, the weights under the original checkpoints' names, the small
digits model that the export tests train, a .tflite file's logits; for the
programs: free ports, scripts that print a model's weights' checksum, kill -9
at a line of output, and a failed program's one error line."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import digits
import numpy as np

import keras_vit

# The repository's root, and the environment of the programs run in subprocesses.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")


def kill_9_at(procs, text, timeout=240):
    """Reads the first of `procs` (started with stdout=PIPE, text=True) until
    it prints `text`, then kills all of them with SIGKILL; returns what it read."""
    seen, deadline = "", time.time() + timeout
    while text not in seen and time.time() < deadline and procs[0].poll() is None:
        seen += procs[0].stdout.readline()
    for p in procs:
        p.send_signal(signal.SIGKILL)
        p.communicate(timeout=30)
    assert text in seen, seen[-3000:]
    return seen


def check_resumed_by_the_chief_alone(outputs, output):
    """The logs of a run's two processes, rerun into `output` after a kill -9
    in epoch 3: the first is the chief, both resume from the same epoch, and
    `output` holds one run's files (no backup, no workertemp_1). Returns the
    epoch they resumed from (counted from 1, as the log says)."""
    assert "Not the chief" not in outputs[0] and "Not the chief" in outputs[1]
    resumed = [int(log.split("Resuming from epoch ")[1].split()[0]) for log in outputs]
    assert resumed[0] == resumed[1] >= 3, resumed
    assert sorted(os.listdir(output)) == [
        "best.weights.h5",
        "export",
        "logs",
        "model.keras",
        "preset",
        "results.json",
    ]
    return resumed[0]


def free_ports(n):
    """`n` free TCP ports on 127.0.0.1."""
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


# A line "WEIGHTS <sha256>" per model: the training program's final model (the
# command line follows), or each .keras file or preset folder given.
CHECKSUM = textwrap.dedent("""
    import hashlib, sys

    def checksum(model):
        digest = hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest()
        print("WEIGHTS", digest, flush=True)
""")
CLI_WITH_CHECKSUM = CHECKSUM + textwrap.dedent("""
    from keras_vit.training import train
    from keras_vit.training.__main__ import main

    fit = train.fit

    def fit_then_checksum(run):
        results = fit(run)
        checksum(run.model)
        return results

    train.fit = fit_then_checksum
    main(sys.argv[1:])
""")
LOAD_WITH_CHECKSUM = (
    CHECKSUM + "import keras_vit\nfor path in sys.argv[1:]: checksum(keras_vit.load_model(path))\n"
)


def error_line(result):
    """The one line of stderr of a program that failed, without a traceback."""
    assert result.returncode != 0, result.stdout[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    return lines[0]


def run_python(*args, env=ENV, timeout=300, python=sys.executable):
    """`python *args` (e.g. `"-m", "keras_vit.export", ...`) in a fresh process in the
    repository's root; the finished process, its output captured as text. `python`:
    another interpreter (another backend's environment)."""
    return subprocess.run([python, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


# keras_vit.ViT keyword arguments for a ViT small enough for unit tests:
# 16 patches of 8x8, D=32, 2 blocks.
TINY_VIT = dict(
    image_size=32, patch_size=8, hidden_dim=32, num_layers=2, num_heads=4, mlp_dim=64, num_classes=7
)

# Command-line flags of the training program for a tiny run on digits: 16x16
# images, 16 patches, D=16, one block, 3 epochs of 4 steps. Augmentation is off:
# its random draws in parallel tf.data maps are not reproducible from run to run.
TINY_RUN = [
    "--image-size",
    "16",
    "--batch-size",
    "16",
    "--steps-per-epoch",
    "4",
    "--epochs",
    "3",
    "--set",
    'model={"patch_size": 4, "hidden_dim": 16, "num_layers": 1, "num_heads": 2, "mlp_dim": 32}',
    "--set",
    "augment={}",
    "--set",
    "warmup_steps=2",
    "--set",
    "fewshot=[]",
    "--set",
    "jit_compile=false",
    "--set",
    "verbose=2",
    "--set",
    "export=null",
]


def randomize(model, seed=0, scale=0.2):
    """Gives every weight random values (the zero-initialised head too)."""
    rng = np.random.default_rng(seed)
    model.set_weights(
        [
            (1.0 if w.path.endswith("gamma") else 0.0) + scale * rng.standard_normal(w.shape)
            for w in model.weights
        ]
    )
    return model


def random_images(batch=2, size=(32, 32), seed=1):
    return np.random.default_rng(seed).uniform(0, 255, (batch, *size, 3)).astype("float32")


def original_params(model):
    """The model's weights under the original checkpoints' names (read
    through the layers' attributes, not through any converter)."""
    p = {}
    emb = model.get_layer("embedding")
    p["embedding/kernel"], p["embedding/bias"] = emb.kernel.numpy(), emb.bias.numpy()
    names = [layer.name for layer in model.layers]
    if model.pooling == "token":
        p["cls"] = model.get_layer("class_token").token.numpy()
    if "distillation_token" in names:
        p["dist"] = model.get_layer("distillation_token").token.numpy()
    if "registers" in names:
        p["registers"] = model.get_layer("registers").tokens.numpy()
    if model.position_embedding == "learned":
        p["Transformer/posembed_input/pos_embedding"] = model.get_layer(
            "position_embedding"
        ).embeddings.numpy()
    for i in range(model.num_layers):
        block = model.get_layer(f"encoderblock_{i}")
        b = f"Transformer/encoderblock_{i}/"
        p[b + "LayerNorm_0/scale"], p[b + "LayerNorm_0/bias"] = (
            block.attention_norm.gamma.numpy(),
            block.attention_norm.beta.numpy(),
        )
        p[b + "LayerNorm_2/scale"], p[b + "LayerNorm_2/bias"] = (
            block.mlp_norm.gamma.numpy(),
            block.mlp_norm.beta.numpy(),
        )
        a = block.attention
        for name, dense in (
            ("query", a.query_dense),
            ("key", a.key_dense),
            ("value", a.value_dense),
            ("out", a.output_dense),
        ):
            p[f"{b}MultiHeadDotProductAttention_1/{name}/kernel"] = dense.kernel.numpy()
            p[f"{b}MultiHeadDotProductAttention_1/{name}/bias"] = dense.bias.numpy()
        for j, dense in enumerate((block.mlp.dense_0, block.mlp.dense_1)):
            p[f"{b}MlpBlock_3/Dense_{j}/kernel"], p[f"{b}MlpBlock_3/Dense_{j}/bias"] = (
                dense.kernel.numpy(),
                dense.bias.numpy(),
            )
    for layer_name, name in (("encoder_norm", "Transformer/encoder_norm"), ("pooled_norm", "fc_norm")):
        if layer_name in names:
            norm = model.get_layer(layer_name)
            p[f"{name}/scale"], p[f"{name}/bias"] = norm.gamma.numpy(), norm.beta.numpy()
    for layer_name, name in (
        ("pre_logits", "pre_logits"),
        ("head", "head"),
        ("distillation_head", "head_dist"),
    ):
        if layer_name in names:
            layer = model.get_layer(layer_name)
            p[f"{name}/kernel"], p[f"{name}/bias"] = layer.kernel.numpy(), layer.bias.numpy()
    return p


# A hybrid (ResNet stem of two stages, then the Transformer on its 4x4 feature map).
HYBRID = dict(TINY_VIT, patch_size=1, resnet_layers=(2, 1), resnet_width=0.5)


def original_resnet_params(model):
    """The hybrid stem's weights under the original names (`conv_root/kernel`,
    `gn_root/scale`, `block1/unit1/conv1/kernel`, ...), read through the layers."""
    stem = model.get_layer("resnet")
    p = {
        "conv_root/kernel": stem.conv_root.kernel.numpy(),
        "gn_root/scale": stem.gn_root.gamma.numpy(),
        "gn_root/bias": stem.gn_root.beta.numpy(),
    }
    for i, stage in enumerate(stem.stages):
        for j, unit in enumerate(stage.units):
            u = f"block{i + 1}/unit{j + 1}/"
            names = ["1", "2", "3"] + (["_proj"] if unit.needs_projection else [])
            for n in names:
                conv, norm = getattr(unit, f"conv{n}"), getattr(unit, f"gn{n}")
                p[f"{u}conv{n}/kernel"] = conv.kernel.numpy()
                p[f"{u}gn{n}/scale"], p[f"{u}gn{n}/bias"] = norm.gamma.numpy(), norm.beta.numpy()
    return p


def fit_digits_vit(images, labels, epochs, peak_learning_rate):
    """A ViT (16x16 images, patch 4, D=64, 2 blocks, 10 classes) fit on the first
    1,400 of `images` (N, 16, 16, 3) by `digits.fit`. Seed the run (and turn on
    op determinism) before calling."""
    model = keras_vit.ViT(
        image_size=16, patch_size=4, hidden_dim=64, num_layers=2, num_heads=4, mlp_dim=128, num_classes=10
    )
    digits.fit(model, images[:1400], labels[:1400], epochs, peak_learning_rate)
    return model


def tflite_logits(model, images):
    """Logits `(N, classes)` of a `.tflite` file (a path, or its bytes) in
    LiteRT's interpreter, one image at a time (batch 1), on one thread."""
    from ai_edge_litert.interpreter import Interpreter

    if isinstance(model, bytes):
        interpreter = Interpreter(model_content=model, num_threads=1)
    else:
        interpreter = Interpreter(model_path=str(model), num_threads=1)
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    logits = []
    for image in images:
        interpreter.set_tensor(inp["index"], image[None])
        interpreter.invoke()
        logits.append(interpreter.get_tensor(out["index"])[0].copy())
    return np.stack(logits)


def require_gpu_run(verdict):
    """Skips a test whose GPU delegate run (export/gpu_delegate.py, `verdict`)
    found no GPU or Vulkan device, unless KERAS_VIT_REQUIRE_GPU_DELEGATE is set
    (.ci/run installs lavapipe and sets it): there it fails."""
    import pytest

    if verdict["fully_accelerated"] is None and verdict["error"].startswith("no GPU"):
        assert not os.environ.get("KERAS_VIT_REQUIRE_GPU_DELEGATE"), verdict["error"]
        pytest.skip(verdict["error"])
