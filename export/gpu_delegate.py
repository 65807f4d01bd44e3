"""The GPU verdict of a `.tflite` file, run, not guessed: LiteRT's GPU
accelerator (`CompiledModel` with `HardwareAccelerator.GPU`, WebGPU over
Vulkan) compiles and runs the file on the verification images.

The run happens in a child process (this file, run by its path) that imports
LiteRT and NumPy only: the accelerator crashes a process that has imported
TensorFlow (a segfault when it creates its WebGPU device), and a driver's
crash must not end the export. Without a GPU, Mesa's software Vulkan device
(lavapipe, `mesa-vulkan-drivers` >= 25) stands in for one; the accelerator
needs `XDG_RUNTIME_DIR`, which the child gets (a private folder) when the
parent has none.
"""

import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

# What LiteRT writes to stderr when WebGPU finds no device (no GPU, no Vulkan driver).
NO_DEVICE = "No adapters found"
TIMEOUT_SECONDS = 600


def gpu_verdict(path, images, cpu_scores):
    """`{"fully_accelerated", "top1_agreement", "max_abs_diff", "error"}` of
    the `.tflite` file at `path` on LiteRT's GPU accelerator, run on `images`
    `(N, H, W, 3)` and compared with `cpu_scores` `(N, K)`, its outputs on
    LiteRT's CPU interpreter.

    `fully_accelerated`: True when every op runs on the GPU; False when some
    run on the CPU (`error` names them, and the figures are of the GPU+CPU
    run) or the GPU compilation fails (no figures); None when no GPU or
    Vulkan device exists, or the run crashed (`error` says which)."""
    verdict = dict(fully_accelerated=None, top1_agreement=None, max_abs_diff=None, error=None)
    with tempfile.TemporaryDirectory() as folder:
        np.save(os.path.join(folder, "images.npy"), np.asarray(images, "float32"))
        env = dict(os.environ)
        if not env.get("XDG_RUNTIME_DIR"):
            env["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(dir=folder)  # mode 0700: private, as the spec asks
        try:  # -I: isolated, so that this folder's modules (data.py, options.py, ...) shadow nothing
            child = subprocess.run(
                [sys.executable, "-I", os.path.abspath(__file__), os.path.abspath(path), folder],
                env=env,
                capture_output=True,
                text=True,
                timeout=TIMEOUT_SECONDS,
            )
        except subprocess.TimeoutExpired:
            return dict(verdict, error=f"the GPU run took over {TIMEOUT_SECONDS} s and was stopped")
        result = _last_json_line(child.stdout)
        if result is None:
            reason = f"signal {-child.returncode}" if child.returncode < 0 else f"exit {child.returncode}"
            return dict(verdict, error=f"the GPU run crashed ({reason}): {_last_line(child.stderr)}")
        if result["status"] == "failed":
            if NO_DEVICE in child.stderr:
                return dict(verdict, error="no GPU or Vulkan device (LiteRT's WebGPU found no adapter)")
            reason = _delegate_error(child.stderr) or result["error"]
            return dict(verdict, fully_accelerated=False, error=f"GPU compilation failed: {reason}")
        scores = np.load(os.path.join(folder, "scores.npy"))
    diff = float(np.max(np.abs(scores - cpu_scores)))
    verdict.update(
        fully_accelerated=result["status"] == "gpu",
        top1_agreement=float(np.mean(scores.argmax(-1) == cpu_scores.argmax(-1))),
        max_abs_diff=diff,
    )
    if result["status"] == "gpu+cpu":
        verdict["error"] = "ops not on the GPU: " + "; ".join(_unsupported_ops(child.stderr))
    return verdict


def _unsupported_ops(log):
    """The GPU delegate's lines naming the ops it left to the CPU, e.g.
    `"STRIDED_SLICE: Slice does not support shrink_axis_mask parameter."`."""
    match = re.search(r"not supported by GPU delegate:\n(.*?)\n\d+ operations will run on the GPU", log, re.S)
    lines = match.group(1).splitlines() if match else []
    return [line.strip() for line in lines if line.strip()] or ["(the delegate named none)"]


def _delegate_error(log):
    """The GPU delegate's own error in `log`, e.g. `"Failed to create
    ...DelegateKernelLiteRt: INVALID_ARGUMENT: Unable to parse bc coord for
    BATCH axis. ..."`; None where it logged none."""
    match = re.search(r"^E\d+ [^\]]*delegate\w*\.cc:\d+\] (.+)$", log, re.M)
    if match:
        return match.group(1).strip()
    if "only supports static-sized tensors" in log:  # a `--dynamic-batch` file
        return "the GPU delegate takes static shapes only, and the file has a dynamic batch"
    return None


def _last_json_line(text):
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return None


def _last_line(text):
    return next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "no message")


def _run(path, folder):
    """In the child: compiles `path` for the GPU alone, or where some ops are
    not supported, for the GPU with the CPU; runs it on `folder/images.npy`
    one image at a time; writes `folder/scores.npy`. Prints one JSON line:
    `{"status": "gpu" | "gpu+cpu" | "failed", "error": ...}`."""
    from ai_edge_litert.compiled_model import CompiledModel, HardwareAccelerator

    gpu, cpu = HardwareAccelerator.GPU, HardwareAccelerator.CPU
    status = "gpu"
    try:
        model = CompiledModel.from_file(path, hardware_accel=gpu)
    except RuntimeError as error:
        if "Some ops are not accelerated" not in str(error):
            print(json.dumps(dict(status="failed", error=_last_line(str(error)).lstrip("└ "))), flush=True)
            return
        status = "gpu+cpu"
        model = CompiledModel.from_file(path, hardware_accel=gpu | cpu)
    if status == "gpu" and not model.is_fully_accelerated():
        status = "gpu+cpu"
    signature = model.get_signature_by_index(0)["key"]
    (output,) = model.get_output_tensor_details(signature).values()
    size = int(np.prod(output["shape"]))
    inputs, outputs = model.create_input_buffers(0), model.create_output_buffers(0)
    scores = []
    for image in np.load(os.path.join(folder, "images.npy")):
        inputs[0].write(image[None])
        model.run_by_index(0, inputs, outputs)
        scores.append(outputs[0].read(size, np.float32))
    np.save(os.path.join(folder, "scores.npy"), np.stack(scores))
    print(json.dumps(dict(status=status, error=None)), flush=True)


if __name__ == "__main__":
    _run(*sys.argv[1:])
