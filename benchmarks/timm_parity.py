"""timm against keras_vit: timm models with random weights, loaded from their safetensors files.

timm and TensorFlow live in different environments, so this runs in two steps.

1. With timm, torch and safetensors installed (none of them keras_vit's dependencies):

       python benchmarks/timm_parity.py export OUT_DIR

   builds each timm model below with random weights, heads included (every
   tensor redrawn: N(0, 0.05), LayerNorm scales 1 + N(0, 0.1); timm's own init
   leaves biases at zero and the tokens near zero), saves its state dict as
   `OUT_DIR/MODEL.safetensors`, and two random images in [0, 255] with
   timm's logits (eval mode, inputs normalised by the model's mean and std) as
   `OUT_DIR/MODEL.npz`.

2. In keras_vit's environment:

       python benchmarks/timm_parity.py compare OUT_DIR

   loads each file with `keras_vit.ViT.from_preset(PRESET, weights=path)`
   (image size, distillation, registers, pooling and final norm read from the
   checkpoint; the image normalisation from the preset, checked against
   timm's) and prints the max |Δ| of the logits against timm's.

Models (timm name: keras_vit preset):
- `deit_tiny_patch16_224`: `deit_ti16`
- `deit_tiny_distilled_patch16_224`: `deit_ti16_distilled` (class and distillation token, two heads)
- `vit_base_patch16_reg4_gap_256`: `vit_b16` (4 registers, GAP, `fc_norm`, 256 px; timm's
  smaller `*_reg4_gap_*` models use LayerScale, which keras_vit does not have)
"""

import argparse
import os

MODELS = {
    "deit_tiny_patch16_224": "deit_ti16",
    "deit_tiny_distilled_patch16_224": "deit_ti16_distilled",
    "vit_base_patch16_reg4_gap_256": "vit_b16",
}
BATCH = 2


def export(out_dir):
    """Step 1: timm's random-weight models, their state dicts and logits."""
    import numpy as np
    import timm
    import torch
    from safetensors.torch import save_file

    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(0)
    for name in MODELS:
        model = timm.create_model(name, pretrained=False).eval()
        with torch.no_grad():
            for key, tensor in model.state_dict().items():
                is_norm_scale = tensor.ndim == 1 and "norm" in key and key.endswith(".weight")
                tensor.copy_(
                    1 + 0.1 * torch.randn_like(tensor) if is_norm_scale else 0.05 * torch.randn_like(tensor)
                )
        size = model.pretrained_cfg["input_size"][1:]
        mean, std = np.array(model.pretrained_cfg["mean"]), np.array(model.pretrained_cfg["std"])
        images = np.random.default_rng(0).uniform(0, 255, (BATCH, *size, 3)).astype(np.float32)
        inputs = torch.from_numpy(((images / 255 - mean) / std).astype(np.float32)).permute(0, 3, 1, 2)
        with torch.no_grad():
            logits = model(inputs).numpy()
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, f"{out_dir}/{name}.safetensors")
        np.savez(f"{out_dir}/{name}.npz", images=images, logits=logits, mean=mean, std=std)
        print(f"{name}: {sum(p.numel() for p in model.parameters()):,} parameters, logits {logits.shape}")


def compare(out_dir):
    """Step 2: the same files through keras_vit; max |Δ| of the logits."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np

    import keras_vit

    print(f"{'timm model':<34} {'preset':<20} {'max |logit|':>11} {'max |Δ|':>9}")
    for name, preset in MODELS.items():
        data = np.load(f"{out_dir}/{name}.npz", allow_pickle=False)
        model = keras_vit.ViT.from_preset(preset, weights=f"{out_dir}/{name}.safetensors")
        if not (np.allclose(model.image_mean, data["mean"]) and np.allclose(model.image_std, data["std"])):
            raise ValueError(
                f"{preset} normalises with mean {model.image_mean}, std {model.image_std}; timm's "
                f"{name} with {tuple(data['mean'])}, {tuple(data['std'])}."
            )
        logits = np.asarray(model.predict(data["images"], verbose=0), np.float64)
        diff = np.max(np.abs(logits - data["logits"]))
        print(f"{name:<34} {preset:<20} {np.max(np.abs(data['logits'])):>11.3f} {diff:>9.2e}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("export", "compare"))
    parser.add_argument("out_dir")
    args = parser.parse_args()
    if args.step == "export":
        export(args.out_dir)
    else:
        compare(args.out_dir)


if __name__ == "__main__":
    main()
