"""`python -m keras_vit.convert SRC DEST_DIR`: any supported checkpoint -> a preset folder.

SRC is a path (original or big_vision `.npz`, timm or Hugging Face
`.safetensors` or model folder, `.keras`, preset folder) or a named source
`PRESET:NAME` (e.g. `vit_b16:imagenet21k`, downloaded into `$KERAS_VIT_HOME`).
The folder loads with `keras_vit.ViT.from_preset(DEST_DIR)`.
"""

import argparse
import sys

from keras_vit import checkpoints
from keras_vit.model import ViT
from keras_vit.presets import PRESETS


def convert(source, destination, preset=None, num_heads=None):
    """Converts `source` into a preset folder at `destination`; returns the model."""
    if ":" in source and source.split(":", 1)[0] in PRESETS:
        preset, name = source.split(":", 1)
        model = ViT.from_preset(preset, weights=name)
    elif preset is not None:
        overrides = {} if num_heads is None else {"num_heads": num_heads}
        model = ViT.from_preset(preset, weights=source, **overrides)
    else:
        checkpoint = checkpoints.read_checkpoint(source, num_heads=num_heads)
        model = ViT(**checkpoint.config)
        checkpoints.assign(model, checkpoint)
    model.save_to_preset(destination)
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m keras_vit.convert", description=__doc__.split("\n")[0])
    parser.add_argument("source", help="checkpoint path, or PRESET:NAME for a named source")
    parser.add_argument("destination", help="preset folder to write (config.json + model.weights.h5)")
    parser.add_argument("--preset", choices=list(PRESETS), help="check the checkpoint against this preset")
    parser.add_argument("--num-heads", type=int, help="attention heads (timm/HF files without --preset)")
    args = parser.parse_args(argv)
    try:
        model = convert(args.source, args.destination, args.preset, args.num_heads)
    except (ValueError, FileNotFoundError, ConnectionError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(
        f"Wrote {args.destination}: {model.count_params():,} parameters, image size "
        f"{model.image_size}, {model.num_classes if model.include_top else 'no'} classes."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
