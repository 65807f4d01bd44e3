"""The keras.distribution of a run on JAX (`KERAS_BACKEND=jax`), the
counterpart of strategy.py's tf.distribute strategies on TensorFlow.

- `data_parallel`: `keras.distribution.DataParallel` over every device of
  every process; each device takes an equal share of the global batch.
- `model_parallel`: `keras.distribution.ModelParallel` over a
  `(devices / K, K)` mesh `("batch", "model")`, `K = model_parallel_size`:
  `keras_vit.ViT.get_layout_map` splits each block's heads and MLP units over
  the model axis, the batch is split over the other.
- `default`: one device, no distribution.
- `auto`: data_parallel where JAX sees more than one device (a TPU host's
  chips, several GPUs, all the processes' devices), else default.

Several processes (hosts) are joined by `jax.distributed.initialize` before
JAX starts, through `keras.distribution.initialize`: `coordinator`,
`num_processes` and `process_id` of the config, else Keras' variables
`KERAS_DISTRIBUTION_JOB_ADDRESSES`, `_NUM_PROCESSES` and `_PROCESS_ID`, with
what is missing filled in by JAX's own cluster detection (Cloud TPU, SLURM,
Open MPI). Process 0 writes the run's files.
"""

import os

import jax
import keras

import keras_vit

STRATEGIES = ("auto", "data_parallel", "model_parallel", "default")
# Environment variables that say a run is one process of several: Keras', and the ones JAX's cluster
# detection reads that count the processes (SLURM, Open MPI) or name a TPU pod's hosts.
SEVERAL_PROCESSES = {
    "KERAS_DISTRIBUTION_JOB_ADDRESSES": lambda v: bool(v),
    "SLURM_NTASKS": lambda v: v.isdigit() and int(v) > 1,
    "OMPI_COMM_WORLD_SIZE": lambda v: v.isdigit() and int(v) > 1,
    "TPU_WORKER_HOSTNAMES": lambda v: "," in v,
}


def check(config):
    """Raises a ValueError for JAX strategy options that cannot run; starts nothing."""
    name, size = config["strategy"], config["model_parallel_size"]
    if config["distill"]:
        raise ValueError(
            "distill trains with a tf.GradientTape step, on TensorFlow only; set KERAS_BACKEND=tensorflow."
        )
    if name not in STRATEGIES:
        raise ValueError(
            f"strategy {name!r} is TensorFlow's (tf.distribute), and KERAS_BACKEND is 'jax'; on JAX use "
            f"one of {', '.join(STRATEGIES)}, or set KERAS_BACKEND=tensorflow."
        )
    if name == "model_parallel" and size is None:
        raise ValueError(
            "strategy 'model_parallel' needs the size of its model axis: --set model_parallel_size=K "
            "(a mesh of devices / K by K)."
        )
    if size is not None and name != "model_parallel":
        raise ValueError(f"model_parallel_size={size} needs --strategy model_parallel, not {name!r}.")
    given = [config[key] is not None for key in ("coordinator", "num_processes", "process_id")]
    if any(given) and not all(given):
        raise ValueError(
            "Several processes need coordinator, num_processes and process_id together, e.g. "
            "--set coordinator=10.0.0.1:1234 --set num_processes=2 --set process_id=0."
        )
    if all(given) and not config["process_id"] < config["num_processes"]:
        raise ValueError(
            f"process_id {config['process_id']} is out of range for {config['num_processes']} processes; "
            f"expected 0..{config['num_processes'] - 1}."
        )


def initialize(config):
    """Joins the other processes of the run (jax.distributed.initialize),
    where the config or the environment says there are several; call before
    anything asks JAX for its devices."""
    if config["coordinator"] is not None:
        keras.distribution.initialize(config["coordinator"], config["num_processes"], config["process_id"])
    elif any(test(os.environ[name]) for name, test in SEVERAL_PROCESSES.items() if name in os.environ):
        keras.distribution.initialize()


def resolve(name, model_parallel_size):
    """Returns `(distribution, name, replicas)`: the keras.distribution
    (None for one device) that `name` means, the name `auto` chose, and how
    many ways the batch is split. `check` has checked the name and size."""
    devices = jax.devices()
    if name == "auto":
        name = "data_parallel" if len(devices) > 1 else "default"
    if name == "default":
        return None, name, 1
    if name == "data_parallel":
        return keras.distribution.DataParallel(), name, len(devices)
    if len(devices) % model_parallel_size:
        raise ValueError(
            f"model_parallel_size {model_parallel_size} does not divide the {len(devices)} devices; "
            f"use one of {', '.join(str(k) for k in range(1, len(devices) + 1) if len(devices) % k == 0)}."
        )
    mesh = keras.distribution.DeviceMesh(
        (len(devices) // model_parallel_size, model_parallel_size), ("batch", "model"), devices
    )
    layout_map = keras_vit.ViT.get_layout_map(mesh, "model", "batch")
    return (
        keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch"),
        name,
        mesh.shape[0],
    )


def describe(distribution):
    """The device mesh of `distribution` in words, e.g. "batch 2 x model 4 over 8 cpu devices, 1 process"."""
    platform, processes = jax.devices()[0].platform, jax.process_count()
    if distribution is None:
        return f"one {platform} device"
    mesh = distribution.device_mesh
    axes = " x ".join(f"{axis} {size}" for axis, size in zip(mesh.axis_names, mesh.shape))
    return f"{axes} over {mesh.devices.size} {platform} devices, {processes} process{'es' * (processes > 1)}"


def process_index():
    """This process's index among the run's; process 0 writes the run's files."""
    return jax.process_index()


def precision_policy(precision):
    """The Keras dtype policy for `precision`: `auto` is mixed_bfloat16 on
    TPU, mixed_float16 on GPU, float32 on CPU (strategy.precision_policy's rule)."""
    if precision != "auto":
        return precision
    platform = jax.devices()[0].platform
    return {"tpu": "mixed_bfloat16", "gpu": "mixed_float16"}.get(platform, "float32")
