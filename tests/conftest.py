import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest  # noqa: E402

from helpers import TINY  # noqa: E402


@pytest.fixture
def tiny_config():
    """A ViT small enough for unit tests: 16 patches of 8x8, D=32, 2 blocks."""
    return dict(TINY)
