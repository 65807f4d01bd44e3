"""The ViT variants of the paper (Table 1) and of the original code, and
DeiT's (Touvron et al., 2021), as data."""

# DeiT's inputs: pixels in [0, 1] normalised with ImageNet's mean and std (timm's IMAGENET_DEFAULT_*).
DEIT = dict(gelu_approximate=False, image_mean=(0.485, 0.456, 0.406), image_std=(0.229, 0.224, 0.225))

PRESETS = {
    "vit_ti16": dict(patch_size=16, hidden_dim=192, mlp_dim=768, num_heads=3, num_layers=12),
    "vit_s16": dict(patch_size=16, hidden_dim=384, mlp_dim=1536, num_heads=6, num_layers=12),
    "vit_s32": dict(patch_size=32, hidden_dim=384, mlp_dim=1536, num_heads=6, num_layers=12),
    "vit_b8": dict(patch_size=8, hidden_dim=768, mlp_dim=3072, num_heads=12, num_layers=12),
    "vit_b16": dict(patch_size=16, hidden_dim=768, mlp_dim=3072, num_heads=12, num_layers=12),
    "vit_b32": dict(patch_size=32, hidden_dim=768, mlp_dim=3072, num_heads=12, num_layers=12),
    "vit_l16": dict(patch_size=16, hidden_dim=1024, mlp_dim=4096, num_heads=16, num_layers=24),
    "vit_l32": dict(patch_size=32, hidden_dim=1024, mlp_dim=4096, num_heads=16, num_layers=24),
    "vit_h14": dict(patch_size=14, hidden_dim=1280, mlp_dim=5120, num_heads=16, num_layers=32),
    # Hybrids (the original R+ViT-Ti_16, R26+ViT-S_32, R50+ViT-B_16): a ResNet
    # stem, then patches of the feature map.
    "r_vit_ti16": dict(
        patch_size=8,
        hidden_dim=192,
        mlp_dim=768,
        num_heads=3,
        num_layers=12,
        resnet_layers=(),
        resnet_width=1,
    ),
    "r26_vit_s32": dict(
        patch_size=1,
        hidden_dim=384,
        mlp_dim=1536,
        num_heads=6,
        num_layers=12,
        resnet_layers=(2, 2, 2, 2),
        resnet_width=1,
    ),
    "r50_vit_b16": dict(
        patch_size=1,
        hidden_dim=768,
        mlp_dim=3072,
        num_heads=12,
        num_layers=12,
        resnet_layers=(3, 4, 9),
        resnet_width=1,
    ),
    # DeiT: the ViT-Ti/S/B 16 architectures with exact GELU and ImageNet normalisation; the
    # distilled ones add the distillation token and its head.
    "deit_ti16": dict(patch_size=16, hidden_dim=192, mlp_dim=768, num_heads=3, num_layers=12, **DEIT),
    "deit_s16": dict(patch_size=16, hidden_dim=384, mlp_dim=1536, num_heads=6, num_layers=12, **DEIT),
    "deit_b16": dict(patch_size=16, hidden_dim=768, mlp_dim=3072, num_heads=12, num_layers=12, **DEIT),
    "deit_ti16_distilled": dict(
        patch_size=16, hidden_dim=192, mlp_dim=768, num_heads=3, num_layers=12, distilled=True, **DEIT
    ),
    "deit_s16_distilled": dict(
        patch_size=16, hidden_dim=384, mlp_dim=1536, num_heads=6, num_layers=12, distilled=True, **DEIT
    ),
    "deit_b16_distilled": dict(
        patch_size=16, hidden_dim=768, mlp_dim=3072, num_heads=12, num_layers=12, distilled=True, **DEIT
    ),
}


def list_presets():
    """The names `ViT.from_preset` accepts: plain ViTs smallest first, the hybrids, then DeiT."""
    return list(PRESETS)


def preset_config(name):
    """The constructor arguments of preset `name` (a new dict)."""
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; expected one of {', '.join(PRESETS)}.")
    return dict(PRESETS[name])
