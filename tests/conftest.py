"""Pytest set-up for every test: Keras' backend (TensorFlow unless
KERAS_BACKEND says otherwise) and TF's log level, the tiny_config fixture, the
`tensorflow` marker (skipped on another backend), gradients off on torch but in
tests marked `trains` (so that outputs compare as NumPy arrays), tests marked
`slow` left out unless `-m` names them, and TF's op determinism reset after
each test."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402
from helpers import TINY_VIT  # noqa: E402

ON_TENSORFLOW = os.environ["KERAS_BACKEND"] == "tensorflow"


def pytest_collection_modifyitems(config, items):
    if "slow" not in config.option.markexpr:  # large models: only with -m slow (or another -m naming them)
        slow = [item for item in items if "slow" in item.keywords]
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if "slow" not in item.keywords]
    if not ON_TENSORFLOW:
        skip = pytest.mark.skip(reason=f"needs TensorFlow; KERAS_BACKEND={os.environ['KERAS_BACKEND']}")
        for item in items:
            if "tensorflow" in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def tiny_config():
    """A ViT small enough for unit tests: 16 patches of 8x8, D=32, 2 blocks."""
    return dict(TINY_VIT)


@pytest.fixture(autouse=True)
def torch_gradients_only_to_train(request):
    """On torch, a tensor that needs its gradient does not convert to NumPy:
    outside fit (tests marked `trains`), tests run as inference does, without them."""
    if os.environ["KERAS_BACKEND"] != "torch" or "trains" in request.keywords:
        yield
        return
    import torch

    with torch.no_grad():
        yield


@pytest.fixture(autouse=True)
def op_determinism_stays_in_its_test():
    """A run of the training program turns TF's op determinism on for the
    whole process (and Keras then drops XLA); later tests get it off again.
    tf.config can only enable it, hence the private module."""
    if not ON_TENSORFLOW:
        yield
        return
    from tensorflow.python.framework import config as tf_config

    was_on = tf_config.is_op_determinism_enabled()
    yield
    if not was_on and tf_config.is_op_determinism_enabled():
        tf_config.disable_op_determinism()
