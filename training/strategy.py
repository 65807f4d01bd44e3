"""The tf.distribute strategy and precision of a run, from the machine and flags.

`auto` picks, in order: TPUStrategy when a TPU is named (`TPU_NAME`) or
attached (`/dev/accel*`), MultiWorkerMirroredStrategy when `TF_CONFIG` lists
more than one worker (the chief counted), MirroredStrategy with several GPUs,
else the default one-device strategy.
"""

import glob
import json
import os

import tensorflow as tf


def resolve(name="auto"):
    """Returns `(strategy, name)` for `name`, one of STRATEGIES (`config.validate`
    checks it); the name returned is the one `auto` chose."""
    tf_config = os.environ.get("TF_CONFIG")
    cluster = parse_tf_config(tf_config)["cluster"] if tf_config else {}
    workers = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
    if name == "auto":
        if os.environ.get("TPU_NAME") or glob.glob("/dev/accel*"):
            name = "tpu"
        elif workers > 1:
            name = "multi_worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=os.environ.get("TPU_NAME", ""))
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver), name
    if name == "multi_worker":
        if not workers:
            raise ValueError(
                "strategy 'multi_worker' needs TF_CONFIG with a cluster of workers, e.g. "
                '{"cluster": {"worker": ["host1:2222", "host2:2222"]}, '
                '"task": {"type": "worker", "index": 0}}.'
            )
        return _reduce_nests(tf.distribute.MultiWorkerMirroredStrategy()), name
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(), name
    return tf.distribute.get_strategy(), name


def is_chief(resolver):
    """Whether this process writes the run's files: `resolver` is the
    strategy's `cluster_resolver` (None on one machine). The rule of
    MultiWorkerMirroredStrategy: the task of type "chief", else worker 0 of a
    cluster without a chief; a process without a task type is alone."""
    if resolver is None or resolver.task_type in (None, "chief"):
        return True
    cluster = resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in cluster


def _reduce_nests(strategy):
    """Works around two bugs of Keras 3.15's `fit` under
    MultiWorkerMirroredStrategy (keras-team/keras#20585): it reduces a whole
    `(images, labels)` batch in one `strategy.reduce` call, which the strategy
    refuses ("Attempt to convert a value (PerReplica ...)"), and it averages
    scalar metrics with `axis=0`. Here `reduce` takes a nest, one reduce per
    leaf, and a scalar is averaged over the replicas only."""
    reduce = strategy.reduce

    def reduce_each(op, value, axis=None):
        def one(v):
            rank = strategy.experimental_local_results(v)[0].shape.rank
            return reduce(op, v, axis=axis if rank else None)

        return tf.nest.map_structure(one, value)

    strategy.reduce = reduce_each
    return strategy


def parse_tf_config(text):
    """Checks a TF_CONFIG string; returns it parsed, or raises a ValueError
    that says what is wrong."""
    example = (
        '{"cluster": {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]}, "task": {"type": "worker", "index": 0}}'
    )
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON ({e}): {text!r}. Expected e.g. {example}.") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise ValueError(
            f"TF_CONFIG needs a 'cluster' and a 'task' object, got {text!r}. Expected e.g. {example}."
        )
    workers = cluster.get("worker")
    if not isinstance(workers, list) or not workers:
        raise ValueError(f"TF_CONFIG cluster needs a non-empty 'worker' list of host:port, got {workers!r}.")
    for jobs in cluster.values():
        for address in jobs if isinstance(jobs, list) else [jobs]:
            host, _, port = str(address).rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"TF_CONFIG address {address!r} is not host:port, e.g. '10.0.0.1:2222'.")
    task_type, index = task.get("type"), task.get("index")
    if task_type not in cluster:
        raise ValueError(
            f"TF_CONFIG task type {task_type!r} is not a job of the cluster ({', '.join(cluster)})."
        )
    if not isinstance(index, int) or not 0 <= index < len(cluster[task_type]):
        raise ValueError(
            f"TF_CONFIG task index {index!r} is out of range for {len(cluster[task_type])} {task_type}(s); "
            f"expected 0..{len(cluster[task_type]) - 1}."
        )
    return config


def check_batch_size(global_batch_size, replicas):
    if global_batch_size % replicas:
        raise ValueError(
            f"batch_size {global_batch_size} (global) is not divisible by the {replicas} replicas; "
            f"use a multiple of {replicas}, e.g. {replicas * max(1, global_batch_size // replicas)}."
        )


def jit_compile(requested, strategy_name):
    """The `jit_compile` to compile with: `requested` (true, false or "auto"),
    except under multi_worker without a GPU, where XLA has no
    collectives ("Collectives are not yet implemented for CPU devices") and
    the run would crash: then false, and the choice is printed."""
    if (
        strategy_name == "multi_worker"
        and requested is not False
        and not tf.config.list_logical_devices("GPU")
    ):
        print(
            f"jit_compile: false, not {requested!r}: multi_worker on CPU has no XLA collectives", flush=True
        )
        return False
    return requested


def precision_policy(precision, strategy_name):
    """The Keras dtype policy name for `precision`, one of PRECISIONS
    (`config.validate` checks it): `auto` is mixed_bfloat16 on TPU,
    mixed_float16 on GPU (Keras adds loss scaling), float32 on CPU."""
    if precision != "auto":
        return precision
    if strategy_name == "tpu":
        return "mixed_bfloat16"
    return "mixed_float16" if tf.config.list_logical_devices("GPU") else "float32"
