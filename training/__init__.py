"""The training program for keras_vit: `python -m keras_vit.training` (see README)."""

if __name__ != "keras_vit.training":  # e.g. `import training` from the repository's root
    raise ImportError(
        f"This folder is installed as the package keras_vit.training; import it under that name "
        f"(python -m keras_vit.training), not as {__name__!r}."
    )
