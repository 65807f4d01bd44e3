"""Run configurations: JSON files under `training/configs/`, overridden by flags.

A config is a flat dict (see `configs/digits.json`, the default); `model`
holds extra `keras_vit.ViT` arguments and `augment` the augmentation options.
`--set key=value` overrides any key; dotted keys reach into `model` and
`augment` (`--set augment.mixup=0.8`); values are parsed as JSON when they
can be (`1e-3`, `true`, `[0.08, 1]`), else kept as strings.
"""

import json
import os

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "configs")
DEFAULT = "digits"


def list_configs():
    return sorted(f[:-5] for f in os.listdir(CONFIG_DIR) if f.endswith(".json"))


def load_config(name_or_path=DEFAULT, overrides=()):
    """The config named `name_or_path` (or a JSON file), with `overrides`
    (`"key=value"` strings) applied in order."""
    path = name_or_path if name_or_path.endswith(".json") else os.path.join(CONFIG_DIR, name_or_path + ".json")
    if not os.path.isfile(path):
        raise ValueError(
            f"Unknown config {name_or_path!r}: no file {path}; expected one of {', '.join(list_configs())} "
            f"or a path to a .json file."
        )
    with open(path) as f:
        config = json.load(f)
    for item in overrides:
        set_value(config, item)
    return config


def set_value(config, item):
    """Applies one `"key=value"` override to `config` in place."""
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise ValueError(f"Override {item!r} is not of the form key=value, e.g. --set epochs=10.")
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = text
    *parents, leaf = key.split(".")
    target = config
    for parent in parents:
        target = target.setdefault(parent, {})
        if not isinstance(target, dict):
            raise ValueError(f"Override {item!r}: {parent!r} is not a group of options.")
    if not parents and leaf not in config:
        raise ValueError(f"Unknown config key {leaf!r}; expected one of {', '.join(sorted(config))}.")
    target[leaf] = value
