"""Downloads a named checkpoint once, into `$KERAS_VIT_HOME/downloads/`."""

import os

import keras

from keras_vit.checkpoints import sources


def cache_dir():
    """`$KERAS_VIT_HOME`, default `~/.keras/keras_vit`."""
    return os.environ.get("KERAS_VIT_HOME") or os.path.join(os.path.expanduser("~"), ".keras", "keras_vit")


def fetch(preset, name):
    """The local path of the file of named weights `name` of `preset`
    (`list_sources(preset)`): downloaded on first use, then read from
    `cache_dir()/downloads/`. `ViT.from_preset` converts it as it loads it."""
    return download(sources.get_source(preset, name))


def download(source):
    """`source`'s file in `cache_dir()/downloads/`, fetched with a progress
    bar unless already there; checked against its sha256 where known."""
    return download_file(source.url, source.filename, source.sha256, "sha256")


def download_file(url, filename, file_hash=None, hash_algorithm="sha256"):
    """`url`'s file as `cache_dir()/downloads/filename`, fetched with a
    progress bar unless already there; checked against `file_hash` (a
    `hash_algorithm` digest) where given. A ValueError for a corrupt file
    (deleted), a ConnectionError that says where to put the file by hand."""
    downloads = os.path.join(cache_dir(), "downloads")
    target = os.path.join(downloads, filename)
    os.makedirs(downloads, exist_ok=True)  # get_file falls back to /tmp for a missing folder
    try:
        return keras.utils.get_file(
            filename,
            origin=url,
            file_hash=file_hash,
            hash_algorithm=hash_algorithm,
            cache_dir=cache_dir(),
            cache_subdir="downloads",
        )
    except ValueError as error:
        if file_hash is None or "hash" not in str(error):
            raise
        if os.path.exists(target):
            os.remove(target)
        raise ValueError(
            f"Download of {url} is corrupt or incomplete: its {hash_algorithm} does not match "
            f"{file_hash}. The file was deleted; try again."
        ) from None
    except Exception as error:
        raise ConnectionError(
            f"Could not download {url} ({error}). Without network access, fetch the file "
            f"elsewhere and put it at {target}" + (f" ({hash_algorithm} {file_hash})." if file_hash else ".")
        ) from None
