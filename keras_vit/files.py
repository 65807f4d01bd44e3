"""Writes that never leave a half-written file under the final name, and a check
that a folder takes files: shared by the training and export programs."""

import os
import shutil
import tempfile


def write_bytes(path, data):
    """Writes `data` to a temporary file beside `path`, then renames it."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_directory(path, write):
    """Calls `write(tmp_dir)` on a fresh folder beside `path`, then swaps it in.

    An existing `path` is moved aside first and removed only once the new
    folder is in place, so a failed write leaves the old one untouched.
    """
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-", dir=parent)
    try:
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if os.path.exists(path):
        old = tempfile.mkdtemp(prefix=".old-", dir=parent)
        os.rename(path, os.path.join(old, "content"))
    os.rename(tmp, path)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def check_writable(directory):
    """Creates `directory` if needed; raises `OSError` with the reason if it
    cannot hold files."""
    os.makedirs(directory, exist_ok=True)
    fd, probe = tempfile.mkstemp(prefix=".probe-", dir=directory)
    os.close(fd)
    os.remove(probe)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
