"""The training program for keras_vit: `python -m training` (see README)."""
