"""Pytest set-up for every test: quiet TensorFlow on the TensorFlow backend,
the tiny_config fixture, and op determinism reset after each test."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402
from helpers import TINY_VIT  # noqa: E402
from tensorflow.python.framework import config as tf_config  # noqa: E402


@pytest.fixture
def tiny_config():
    """A ViT small enough for unit tests: 16 patches of 8x8, D=32, 2 blocks."""
    return dict(TINY_VIT)


@pytest.fixture(autouse=True)
def op_determinism_stays_in_its_test():
    """A run of the training program turns TF's op determinism on for the
    whole process (and Keras then drops XLA); later tests get it off again.
    tf.config can only enable it, hence the private module."""
    was_on = tf_config.is_op_determinism_enabled()
    yield
    if not was_on and tf_config.is_op_determinism_enabled():
        tf_config.disable_op_determinism()
