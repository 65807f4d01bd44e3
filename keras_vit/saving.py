"""Saved keras_vit models: the preset folder's format, its writer, and the one
loader of any saved model (a `.keras` file or a preset folder), in Keras'
safe mode."""

import json
import os

import keras

PRESET_CONFIG = "config.json"
PRESET_WEIGHTS = "model.weights.h5"


def is_preset_folder(path):
    """Whether `path` is a folder written by `ViT.save_to_preset`."""
    return os.path.isfile(os.path.join(os.fspath(path), PRESET_CONFIG))


def save_preset_folder(model, directory):
    """Writes `model` as a preset folder (`ViT.save_to_preset`): `config.json`,
    its class and `get_config()` without the compile config (the optimizer is
    the trainer's, not the preset's), and `model.weights.h5`."""
    os.makedirs(directory, exist_ok=True)
    config = keras.saving.serialize_keras_object(model)
    config.pop("compile_config", None)
    with open(os.path.join(directory, PRESET_CONFIG), "w") as f:
        json.dump(config, f, indent=2)
    model.save_weights(os.path.join(directory, PRESET_WEIGHTS))


def load_preset_folder(directory):
    """The model of a preset folder (`config.json` + `model.weights.h5`), safely."""
    try:
        with open(os.path.join(directory, PRESET_CONFIG)) as f:
            config = json.load(f)
        model = keras.saving.deserialize_keras_object(config, safe_mode=True)
    except (OSError, ValueError, TypeError) as error:
        raise ValueError(f"Could not read {PRESET_CONFIG} of preset folder {directory}: {error}.") from None
    try:
        model.load_weights(os.path.join(directory, PRESET_WEIGHTS))
    except (OSError, ValueError) as error:
        raise ValueError(f"Could not load {PRESET_WEIGHTS} of preset folder {directory}: {error}.") from None
    return model


def load_model(path):
    """A keras_vit model from a `.keras` file (`model.save`) or a preset folder
    (`model.save_to_preset`), uncompiled. Raises a ValueError naming `path`
    when it is neither, or does not load."""
    path = os.fspath(path)
    if is_preset_folder(path):
        model = load_preset_folder(path)
    elif path.endswith(".keras") and os.path.isfile(path):
        try:
            model = keras.saving.load_model(path, safe_mode=True, compile=False)
        except Exception as error:  # Keras raises many kinds for a damaged or foreign file
            raise ValueError(f"{path} does not load as a Keras model: {error}") from None
    else:
        raise ValueError(
            f"{path!r} is neither a .keras file nor a preset folder ({PRESET_CONFIG} + {PRESET_WEIGHTS}); "
            f"save the model with model.save('model.keras') or model.save_to_preset(folder) and pass that."
        )
    if not isinstance(model, keras.saving.get_registered_object("keras_vit>ViT")):
        raise ValueError(f"{path} holds a {type(model).__name__}, not a keras_vit.ViT.")
    return model
