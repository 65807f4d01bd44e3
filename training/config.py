"""Run configurations: JSON files under `training/configs/`, overridden by flags.

A config is a flat dict: `DEFAULTS`, overridden by a JSON file that says only
what differs (see `configs/digits.json`, the default config); `model` holds
extra `keras_vit.ViT` arguments and `augment` the augmentation options.
`--set key=value` overrides any key; dotted keys reach into `model`,
`augment` and `distill` (`--set augment.mixup=0.8`, `--set distill.teacher=teacher.keras`);
values are parsed as JSON when they can be (`1e-3`, `true`, `[0.08, 1]`), else kept as strings.

`SCHEMA` says what each key takes; `validate` checks a whole config against
it without TensorFlow, so that a mistake is named before anything starts.
`model.*` is checked by `keras_vit.ViT` itself.
"""

import copy
import json
import os

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "configs")
DEFAULT = "digits"

# The choices of the recipes (training/recipes.py), strategies and precisions
# (training/strategy.py), defined here, where no TensorFlow is imported; and
# the values of tf.image.ResizeMethod, written out (tests/test_cli_errors.py
# checks that they agree).
RESIZE_METHODS = (
    "bilinear",
    "nearest",
    "bicubic",
    "area",
    "lanczos3",
    "lanczos5",
    "gaussian",
    "mitchellcubic",
)
RECIPES = ("finetune", "pretrain", "deit")
# tpu, multi_worker and mirrored are tf.distribute's (TensorFlow); data_parallel and model_parallel are
# keras.distribution's (JAX): training/strategy.py and training/jax_strategy.py.
STRATEGIES = ("auto", "tpu", "multi_worker", "mirrored", "data_parallel", "model_parallel", "default")
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")

# Augmentation options and their defaults (training/augment.py applies them).
AUGMENT = dict(
    inception_crop=False,  # random resized crop (Inception style)
    crop_scale=[0.08, 1.0],  # its area range
    translate=0.0,  # random shift, a fraction of the side
    flip=False,  # random horizontal flip
    randaugment=0,  # RandAugment ops per image (0: off)
    randaugment_magnitude=0.5,
    mixup=0.0,  # MixUp alpha (0: off)
    cutmix=0.0,  # CutMix alpha (0: off); with both, each batch picks one
    erasing=0.0,  # probability of random erasing per image
)
EXPORT_KEYS = ("formats", "quantize", "calibration_images")
DISTILL_KEYS = ("teacher",)


def _int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _list_of(test, length=None):
    def check(v):
        return isinstance(v, (list, tuple)) and (length is None or len(v) == length) and all(map(test, v))

    return check


def _is_address(text):
    host, _, port = text.rpartition(":")
    return bool(host) and port.isdigit()


def _one_of(*choices):
    return f"one of {', '.join(map(repr, choices))}", lambda v: not isinstance(v, bool) and v in choices


def _or_null(expected, test):
    return f"null or {expected}", lambda v: v is None or test(v)


BOOL = "true or false", lambda v: isinstance(v, bool)
TEXT = "a string", lambda v: isinstance(v, str) and v != ""
POSITIVE_INT = "a positive int", lambda v: _int(v) and v >= 1
COUNT = "an int >= 0", lambda v: _int(v) and v >= 0
FRACTION = "a number in [0, 1]", lambda v: _number(v) and 0 <= v <= 1
ALPHA = "a number >= 0", lambda v: _number(v) and v >= 0

# Every top-level key's default: the paper's fine-tuning of ViT-B/16 (App. B.1.1), from fresh
# weights unless `weights` names some. `output` defaults to runs/<config name>.
DEFAULTS = dict(
    preset="vit_b16",
    model={},
    weights=None,
    data="cifar10",
    data_dir=None,
    image_size=224,
    resize="bilinear",
    cache=False,
    batch_size=512,
    epochs=100,
    steps_per_epoch=None,
    recipe="finetune",
    learning_rate=0.03,
    warmup_steps=500,
    weight_decay=None,
    layer_decay=None,
    lora_rank=None,
    distill=None,
    label_smoothing=0.0,
    augment={},
    precision="auto",
    strategy="auto",
    model_parallel_size=None,
    coordinator=None,
    num_processes=None,
    process_id=None,
    deterministic=False,
    jit_compile=True,
    steps_per_execution=1,
    fewshot=[],
    seed=0,
    verbose="auto",
    export=None,
)

# Key (dotted inside a group) -> (what it must be, test).
SCHEMA = {
    "preset": TEXT,
    "model": ("a dict of keras_vit.ViT arguments", lambda v: isinstance(v, dict)),
    "weights": _or_null(*TEXT),
    "data": TEXT,
    "data_dir": _or_null(*TEXT),
    "image_size": (
        "an int or (height, width)",
        lambda v: POSITIVE_INT[1](v) or _list_of(POSITIVE_INT[1], 2)(v),
    ),
    "resize": _one_of(*RESIZE_METHODS),
    "cache": BOOL,
    "batch_size": POSITIVE_INT,
    "epochs": POSITIVE_INT,
    "steps_per_epoch": _or_null(*POSITIVE_INT),
    "recipe": _one_of(*RECIPES),
    "learning_rate": ("a positive number", lambda v: _number(v) and v > 0),
    "warmup_steps": COUNT,
    "weight_decay": _or_null(*ALPHA),
    "layer_decay": _or_null("a number in (0, 1]", lambda v: _number(v) and 0 < v <= 1),
    "lora_rank": _or_null(*POSITIVE_INT),
    "label_smoothing": ("a number in [0, 1)", lambda v: _number(v) and 0 <= v < 1),
    "augment": ("a dict of augment options", lambda v: isinstance(v, dict)),
    "augment.inception_crop": BOOL,
    "augment.crop_scale": (
        "[min, max] with 0 < min <= max <= 1",
        lambda v: _list_of(_number, 2)(v) and 0 < v[0] <= v[1] <= 1,
    ),
    "augment.translate": FRACTION,
    "augment.flip": BOOL,
    "augment.randaugment": COUNT,
    "augment.randaugment_magnitude": FRACTION,
    "augment.mixup": ALPHA,
    "augment.cutmix": ALPHA,
    "augment.erasing": FRACTION,
    "precision": _one_of(*PRECISIONS),
    "strategy": _one_of(*STRATEGIES),
    "model_parallel_size": _or_null(*POSITIVE_INT),
    "coordinator": _or_null("host:port", lambda v: isinstance(v, str) and _is_address(v)),
    "num_processes": _or_null(*POSITIVE_INT),
    "process_id": _or_null(*COUNT),
    "deterministic": BOOL,
    "jit_compile": ("true, false or 'auto'", lambda v: isinstance(v, bool) or v == "auto"),
    "steps_per_execution": POSITIVE_INT,
    "fewshot": ("a list of positive ints", _list_of(POSITIVE_INT[1])),
    "output": TEXT,
    "seed": COUNT,
    "verbose": _one_of("auto", 0, 1, 2),
    "export": (f"null or a dict of {', '.join(EXPORT_KEYS)}", lambda v: v is None or isinstance(v, dict)),
    "export.formats": ("a list of format names", _list_of(TEXT[1])),
    "export.quantize": ("a list of quantization names", _list_of(TEXT[1])),
    "export.calibration_images": POSITIVE_INT,
    "distill": (
        "null or a dict of teacher (DeiT hard-label distillation)",
        lambda v: v is None or isinstance(v, dict),
    ),
    "distill.teacher": ("a .keras file or a keras_vit preset folder", TEXT[1]),
}


def list_configs():
    return sorted(f[:-5] for f in os.listdir(CONFIG_DIR) if f.endswith(".json"))


def load_config(name_or_path=DEFAULT, overrides=()):
    """`DEFAULTS` with the config named `name_or_path` (or a JSON file) over
    them, then `overrides` (`"key=value"` strings) applied in order, validated."""
    path = name_or_path
    if not path.endswith(".json"):
        path = os.path.join(CONFIG_DIR, path + ".json")
    if not os.path.isfile(path):
        raise ValueError(
            f"Unknown config {name_or_path!r}: no file {path}; expected one of {', '.join(list_configs())} "
            f"or a path to a .json file."
        )
    with open(path) as f:
        given = json.load(f)
    if not isinstance(given, dict):
        raise ValueError(f"Config {path} must hold a JSON object of config keys, got {type(given).__name__}.")
    name = os.path.splitext(os.path.basename(path))[0]
    config = {**copy.deepcopy(DEFAULTS), "output": os.path.join("runs", name), **given}
    for item in overrides:
        set_value(config, item)
    validate(config)
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
        if target.get(parent) is None:  # a group that is off (null) or not there yet
            target[parent] = {}
        target = target[parent]
        if not isinstance(target, dict):
            raise ValueError(f"Override {item!r}: {parent!r} is not a group of options.")
    target[leaf] = value


def validate(config):
    """Raises a ValueError that names the first key of `config` (a whole
    config) that is unknown, missing or not what SCHEMA says."""
    check_group(config, required=[k for k in SCHEMA if "." not in k])
    check_group(config["augment"], "augment")
    if config["export"] is not None:
        check_group(config["export"], "export", required=EXPORT_KEYS)
    if config["distill"] is not None:
        check_group(config["distill"], "distill", required=DISTILL_KEYS)


def check_group(options, group="", required=()):
    """Checks the keys of `options`, the config (`group=""`) or one of its
    groups (`"augment"`, `"export"`, `"distill"`), against SCHEMA."""
    prefix, kind = (group + ".", f"{group} option") if group else ("", "config key")
    known = [k[len(prefix) :] for k in SCHEMA if k.startswith(prefix) and "." not in k[len(prefix) :]]
    for key, value in options.items():
        if key not in known:
            raise ValueError(f"Unknown {kind} {prefix + key!r}; expected one of {', '.join(known)}.")
        expected, test = SCHEMA[prefix + key]
        if not test(value):
            raise ValueError(f"{prefix + key} must be {expected}, got {value!r}.")
    missing = [prefix + key for key in required if key not in options]
    if missing:
        raise ValueError(f"Missing {kind}(s) {', '.join(missing)}; a config sets every one.")
