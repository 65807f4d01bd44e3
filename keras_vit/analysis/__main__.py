"""Writes the analysis pictures for a model and a folder of images.

    python -m keras_vit.analysis MODEL IMAGES_DIR --out DIR [--max-images 4]

MODEL: a `.keras` file or a preset folder (`ViT.save_to_preset`). IMAGES_DIR:
PNG/JPEG/BMP/GIF files (the first `--max-images` by path), resized bilinearly to
the model's image size. Writes
`patch_embedding_filters.png`, `position_embedding_similarity.png` (learned or
sin-cos position embeddings only), `mean_attention_distance.png`,
`attention_rollout.png` and `position_embedding_effect.png` into DIR.
"""

import argparse
import os
import sys

from keras_vit import analysis
from keras_vit.images import load_image_folder, model_inputs
from keras_vit.saving import load_model


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m keras_vit.analysis", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("model", help="a .keras file or a preset folder")
    parser.add_argument("images", help="a folder of images")
    parser.add_argument("--out", required=True, help="folder for the PNG files")
    parser.add_argument("--max-images", type=int, default=4, help="images to use (default 4)")
    args = parser.parse_args(argv)
    try:
        model = load_model(args.model)
        images = load_image_folder(args.images, model.image_size, args.max_images)
    except ValueError as error:
        parser.exit(2, f"error: {error}\n")
    images = model_inputs(model, images)
    os.makedirs(args.out, exist_ok=True)
    pictures = [
        ("patch_embedding_filters", lambda p: analysis.plot_patch_embedding_filters(model, p)),
        ("mean_attention_distance", lambda p: analysis.plot_mean_attention_distance(model, images, p)),
        ("attention_rollout", lambda p: analysis.plot_attention_rollout(model, images, p)),
        ("position_embedding_effect", lambda p: analysis.plot_position_embedding_effect(model, images, p)),
    ]
    if model.position_embedding != "none":
        pictures.insert(
            1,
            (
                "position_embedding_similarity",
                lambda p: analysis.plot_position_embedding_similarity(model, p),
            ),
        )
    for name, plot in pictures:
        path = os.path.join(args.out, f"{name}.png")
        plot(path)
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
