"""The pictures, with matplotlib (imported here only): each `plot_*` makes a
`matplotlib.figure.Figure`, saves it as PNG when given `path`, and returns it."""

import numpy as np

from keras_vit.analysis.attention import (
    attention_distance,
    attention_rollout,
    mean_attention_distance,
    upsample,
)
from keras_vit.analysis.embeddings import patch_embedding_filters, position_embedding_similarity
from keras_vit.analysis.permutation import position_embedding_effect
from keras_vit.images import display_pixels


def _figure(width, height):
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError(
            "keras_vit's plots need matplotlib: pip install 'keras-vision-transformer[plots]'."
        ) from error
    return Figure(figsize=(width, height), layout="constrained")


def _finish(figure, path):
    if path is not None:
        figure.savefig(path, dpi=120)
    return figure


def plot_patch_embedding_filters(model, path=None, num_components=28):
    """The top principal components of the patch-embedding filters, as RGB patches."""
    components, explained = patch_embedding_filters(model, num_components)
    cols = min(7, len(components))
    rows = -(-len(components) // cols)
    figure = _figure(1.3 * cols, 1.45 * rows + 0.5)
    figure.suptitle(
        f"{model.name}: top {len(components)} principal components of the "
        f"{model.patch_size}x{model.patch_size} patch-embedding filters"
    )
    axes = figure.subplots(rows, cols, squeeze=False)
    for k, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if k < len(components):
            c = components[k]
            ax.imshow((c - c.min()) / max(c.max() - c.min(), 1e-12), interpolation="nearest")
            ax.set_title(f"PC {k + 1}: {100 * explained[k]:.1f}%", fontsize=8)
    return _finish(figure, path)


def plot_position_embedding_similarity(model, path=None):
    """For each patch, the cosine similarity of its position embedding to every other patch's."""
    similarity = position_embedding_similarity(model)
    grid_h, grid_w = similarity.shape[:2]
    figure = _figure(1.1 * grid_w + 1.2, 1.1 * grid_h + 0.8)
    figure.suptitle(f"{model.name}: position embedding similarity")
    axes = figure.subplots(grid_h, grid_w, squeeze=False)
    image = None
    for i in range(grid_h):
        for j in range(grid_w):
            ax = axes[i, j]
            image = ax.imshow(similarity[i, j], vmin=-1, vmax=1, cmap="viridis", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == grid_h - 1:
                ax.set_xlabel(str(j + 1), fontsize=8)
            if j == 0:
                ax.set_ylabel(str(i + 1), fontsize=8)
    figure.supxlabel("input patch column")
    figure.supylabel("input patch row")
    figure.colorbar(image, ax=axes, shrink=0.6, label="cosine similarity")
    return _finish(figure, path)


def plot_mean_attention_distance(model, images, path=None):
    """Mean attention distance of every head against the block's depth."""
    distance = mean_attention_distance(model, images)
    num_layers, heads = distance.shape
    figure = _figure(6, 4.5)
    ax = figure.subplots()
    for h in range(heads):
        ax.scatter(np.arange(1, num_layers + 1), distance[:, h], label=f"head {h + 1}", s=25)
    tokens = model.grid_size[0] * model.grid_size[1]
    uniform = attention_distance(
        np.full((1, 1, 1, tokens, tokens), 1 / tokens), model.grid_size, model.token_stride
    )
    ax.axhline(uniform[0, 0], color="gray", linestyle="--", label="uniform attention")
    ax.set_ylim(0, 1.25 * max(uniform.max(), distance.max()))
    ax.set_xticks(np.arange(1, num_layers + 1))
    ax.set_xlabel("network depth (block)")
    ax.set_ylabel("mean attention distance (pixels)")
    ax.set_title(f"{model.name}: mean attention distance per head, {len(images)} image(s)")
    if heads <= 16:
        ax.legend(fontsize=7, ncol=2, loc="lower right")
    return _finish(figure, path)


def plot_attention_rollout(model, images, path=None):
    """Each image beside its attention rollout, upsampled and overlaid."""
    maps = upsample(attention_rollout(model, images), model.image_size)
    pixels = display_pixels(model, images)
    figure = _figure(5.4, 2.5 * len(pixels) + 0.4)
    figure.suptitle(f"{model.name}: attention rollout to the output")
    axes = figure.subplots(len(pixels), 2, squeeze=False)
    for ax_image, ax_overlay, image, weights in zip(axes[:, 0], axes[:, 1], pixels, maps):
        ax_image.imshow(image)
        ax_image.set_title("input", fontsize=9)
        ax_overlay.imshow(image)
        overlay = ax_overlay.imshow(weights, cmap="inferno", alpha=0.6)
        ax_overlay.set_title("rollout overlaid", fontsize=9)
        figure.colorbar(overlay, ax=ax_overlay, shrink=0.8, label="share of attention")
        for ax in (ax_image, ax_overlay):
            ax.set_axis_off()
    return _finish(figure, path)


def plot_position_embedding_effect(model, images, path=None, seed=0):
    """An image, the same image with its patches shuffled, and what the model
    and its copy without position embeddings output for each."""
    effect = position_embedding_effect(model, images[:1], seed)
    pixels = display_pixels(model, np.concatenate([images[:1], effect["shuffled"]]))
    figure = _figure(11, 3.2)
    axes = figure.subplots(1, 4)
    for ax, image, title in zip(axes[:2], pixels, ("input", "patches shuffled")):
        ax.imshow(image)
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    titles = (f"{model.position_embedding} position embeddings", "position embeddings removed")
    for ax, key, title in zip(axes[2:], ("with", "without"), titles):
        original, shuffled = (o[0] for o in effect[key])
        if model.include_top:
            original, shuffled = (
                np.exp(o - o.max()) / np.exp(o - o.max()).sum() for o in (original, shuffled)
            )
        change = np.abs(original - shuffled).max()
        index = np.arange(len(original))
        ax.bar(index - 0.2, original, width=0.4, label="input")
        ax.bar(index + 0.2, shuffled, width=0.4, label="shuffled")
        if len(index) <= 20:
            ax.set_xticks(index)
        ax.set_xlabel("class" if model.include_top else "feature")
        ax.set_ylabel("probability" if model.include_top else "value")
        ax.set_title(f"{title}\nmax |change| = {change:.2g}", fontsize=9)
        ax.legend(fontsize=7)
    figure.suptitle(f"{model.name}: the effect of position embeddings")
    return _finish(figure, path)
