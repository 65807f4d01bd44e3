"""Class names for the labels file: a text file, or ImageNet-1k's names."""

import json

from keras_vit.checkpoints.download import download_file
from keras_vit.export.errors import ExportError

# The ImageNet-1k class index that keras.applications' decode_predictions reads, {"0": ["n01440764",
# "tench"], ...}: the standard class order, which the original checkpoints' 1,000-class heads use.
IMAGENET_CLASS_INDEX_URL = (
    "https://storage.googleapis.com/download.tensorflow.org/data/imagenet_class_index.json"
)
IMAGENET_CLASS_INDEX_MD5 = "c2c37ea517e94d9795004a39431a14cb"


def imagenet_labels():
    """The 1,000 ImageNet-1k class names ("tench", "goldfish", ...) in the
    heads' order: downloaded once into `$KERAS_VIT_HOME/downloads/`."""
    try:
        path = download_file(
            IMAGENET_CLASS_INDEX_URL, "imagenet_class_index.json", IMAGENET_CLASS_INDEX_MD5, "md5"
        )
    except (ValueError, ConnectionError) as error:  # no network, a corrupt file
        raise ExportError(
            f"Could not download the ImageNet class names: {error} Or pass --labels FILE, "
            "one class name a line."
        ) from None
    with open(path) as f:
        index = json.load(f)
    return [index[str(i)][1] for i in range(1000)]


def read_labels(source):
    """The class names of `--labels`: `"imagenet"` for `imagenet_labels()`, else
    a text file with one class name a line (blank lines skipped)."""
    if source == "imagenet":
        return imagenet_labels()
    with open(source) as f:
        return [line.strip() for line in f if line.strip()]
