"""Published checkpoints, registered per preset: where they live, and their sha256 where known.

URLs are those of google-research/vision_transformer (`imagenet21k`,
`imagenet21k+imagenet2012`), of "How to train your ViT?" (AugReg,
Steiner et al. 2021, the same files timm and big_vision load), and of timm's
Hugging Face hub copies of the DeiT weights (Touvron et al. 2021, `fb_in1k`).
No sha256 is published for these files; `sha256=None` means the download is
not verified. Each URL is written out in full, so that grep finds it.
Downloads are cached under their file name: timm's hub files are all called
`model.safetensors`, so their sources name the cached file after the timm model.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    url: str
    sha256: str | None = None
    cache_name: str | None = None  # the downloaded file's name, where the URL's last part is not unique

    @property
    def filename(self):
        """The name of the downloaded file in the cache."""
        return self.cache_name or self.url.rsplit("/", 1)[-1]


# The names of `weights=`:
#   imagenet21k                   original, 224 px, ImageNet-21k head (21843 classes) after a pre_logits layer
#   imagenet21k+imagenet2012      original, fine-tuned on ImageNet-1k at 384 px
#   imagenet21k+imagenet2012_224  original, fine-tuned on ImageNet-1k at 224 px
#   augreg_in21k                  AugReg, ImageNet-21k: the upstream of timm's `augreg_in21k_ft_in1k` files
#   augreg_in21k_ft_in1k[_384]    AugReg, ImageNet-21k, fine-tuned on ImageNet-1k at 224 [384] px
#   augreg_in1k[_384]             AugReg, ImageNet-1k only, fine-tuned at 224 [384] px
#   fb_in1k                       DeiT (timm's `deit_*_patch16_224.fb_in1k`), ImageNet-1k at 224 px
# Hybrids: R50+ViT-B/16 has the original files; R26+S/32 and R+Ti/16 the AugReg
# files, as timm's `vit_small_r26_s32_*` and `vit_tiny_r_s16_p8_*` load them.
SOURCES = {
    "vit_ti16": {
        "augreg_in21k": Source(
            "https://storage.googleapis.com/vit_models/augreg/Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-do_0.0-sd_0.0.npz"
        ),
        "augreg_in21k_ft_in1k": Source(
            "https://storage.googleapis.com/vit_models/augreg/Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.03-res_224.npz"
        ),
        "augreg_in21k_ft_in1k_384": Source(
            "https://storage.googleapis.com/vit_models/augreg/Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.03-res_384.npz"
        ),
    },
    "vit_s16": {
        "augreg_in21k": Source(
            "https://storage.googleapis.com/vit_models/augreg/S_16-i21k-300ep-lr_0.001-aug_light1-wd_0.03-do_0.0-sd_0.0.npz"
        ),
        "augreg_in21k_ft_in1k": Source(
            "https://storage.googleapis.com/vit_models/augreg/S_16-i21k-300ep-lr_0.001-aug_light1-wd_0.03-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.03-res_224.npz"
        ),
        "augreg_in21k_ft_in1k_384": Source(
            "https://storage.googleapis.com/vit_models/augreg/S_16-i21k-300ep-lr_0.001-aug_light1-wd_0.03-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.03-res_384.npz"
        ),
        "augreg_in1k": Source(
            "https://storage.googleapis.com/vit_models/augreg/S_16-i1k-300ep-lr_0.001-aug_medium2-wd_0.1-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.01-res_224.npz"
        ),
        "augreg_in1k_384": Source(
            "https://storage.googleapis.com/vit_models/augreg/S_16-i1k-300ep-lr_0.001-aug_medium2-wd_0.1-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.01-res_384.npz"
        ),
    },
    "vit_s32": {
        "augreg_in21k": Source(
            "https://storage.googleapis.com/vit_models/augreg/S_32-i21k-300ep-lr_0.001-aug_light1-wd_0.03-do_0.0-sd_0.0.npz"
        ),
        "augreg_in21k_ft_in1k": Source(
            "https://storage.googleapis.com/vit_models/augreg/S_32-i21k-300ep-lr_0.001-aug_light1-wd_0.03-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.03-res_224.npz"
        ),
        "augreg_in21k_ft_in1k_384": Source(
            "https://storage.googleapis.com/vit_models/augreg/S_32-i21k-300ep-lr_0.001-aug_light1-wd_0.03-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.03-res_384.npz"
        ),
    },
    "vit_b8": {
        "augreg_in21k": Source(
            "https://storage.googleapis.com/vit_models/augreg/B_8-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0.npz"
        ),
        "augreg_in21k_ft_in1k": Source(
            "https://storage.googleapis.com/vit_models/augreg/B_8-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.01-res_224.npz"
        ),
    },
    "vit_b16": {
        "imagenet21k": Source("https://storage.googleapis.com/vit_models/imagenet21k/ViT-B_16.npz"),
        "imagenet21k+imagenet2012": Source(
            "https://storage.googleapis.com/vit_models/imagenet21k+imagenet2012/ViT-B_16.npz"
        ),
        "imagenet21k+imagenet2012_224": Source(
            "https://storage.googleapis.com/vit_models/imagenet21k+imagenet2012/ViT-B_16-224.npz"
        ),
        "augreg_in21k": Source(
            "https://storage.googleapis.com/vit_models/augreg/B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0.npz"
        ),
        "augreg_in21k_ft_in1k": Source(
            "https://storage.googleapis.com/vit_models/augreg/B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.01-res_224.npz"
        ),
        "augreg_in21k_ft_in1k_384": Source(
            "https://storage.googleapis.com/vit_models/augreg/B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.01-res_384.npz"
        ),
        "augreg_in1k": Source(
            "https://storage.googleapis.com/vit_models/augreg/B_16-i1k-300ep-lr_0.001-aug_strong2-wd_0.1-do_0.1-sd_0.1--imagenet2012-steps_20k-lr_0.01-res_224.npz"
        ),
        "augreg_in1k_384": Source(
            "https://storage.googleapis.com/vit_models/augreg/B_16-i1k-300ep-lr_0.001-aug_strong2-wd_0.1-do_0.1-sd_0.1--imagenet2012-steps_20k-lr_0.01-res_384.npz"
        ),
    },
    "vit_b32": {
        "imagenet21k": Source("https://storage.googleapis.com/vit_models/imagenet21k/ViT-B_32.npz"),
        "imagenet21k+imagenet2012": Source(
            "https://storage.googleapis.com/vit_models/imagenet21k+imagenet2012/ViT-B_32.npz"
        ),
        "augreg_in21k": Source(
            "https://storage.googleapis.com/vit_models/augreg/B_32-i21k-300ep-lr_0.001-aug_medium1-wd_0.03-do_0.0-sd_0.0.npz"
        ),
        "augreg_in21k_ft_in1k": Source(
            "https://storage.googleapis.com/vit_models/augreg/B_32-i21k-300ep-lr_0.001-aug_medium1-wd_0.03-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.03-res_224.npz"
        ),
        # timm's B/32 384 px fine-tune starts from another upstream run than the 224 px one.
        "augreg_in21k_ft_in1k_384": Source(
            "https://storage.googleapis.com/vit_models/augreg/B_32-i21k-300ep-lr_0.001-aug_light1-wd_0.1-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.03-res_384.npz"
        ),
        "augreg_in1k": Source(
            "https://storage.googleapis.com/vit_models/augreg/B_32-i1k-300ep-lr_0.001-aug_medium2-wd_0.1-do_0.1-sd_0.1--imagenet2012-steps_20k-lr_0.01-res_224.npz"
        ),
        "augreg_in1k_384": Source(
            "https://storage.googleapis.com/vit_models/augreg/B_32-i1k-300ep-lr_0.001-aug_medium2-wd_0.1-do_0.1-sd_0.1--imagenet2012-steps_20k-lr_0.01-res_384.npz"
        ),
    },
    "vit_l16": {
        "imagenet21k": Source("https://storage.googleapis.com/vit_models/imagenet21k/ViT-L_16.npz"),
        "imagenet21k+imagenet2012": Source(
            "https://storage.googleapis.com/vit_models/imagenet21k+imagenet2012/ViT-L_16.npz"
        ),
        "imagenet21k+imagenet2012_224": Source(
            "https://storage.googleapis.com/vit_models/imagenet21k+imagenet2012/ViT-L_16-224.npz"
        ),
        "augreg_in21k": Source(
            "https://storage.googleapis.com/vit_models/augreg/L_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.1-sd_0.1.npz"
        ),
        "augreg_in21k_ft_in1k": Source(
            "https://storage.googleapis.com/vit_models/augreg/L_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.1-sd_0.1--imagenet2012-steps_20k-lr_0.01-res_224.npz"
        ),
        "augreg_in21k_ft_in1k_384": Source(
            "https://storage.googleapis.com/vit_models/augreg/L_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.1-sd_0.1--imagenet2012-steps_20k-lr_0.01-res_384.npz"
        ),
    },
    "vit_l32": {
        "imagenet21k": Source("https://storage.googleapis.com/vit_models/imagenet21k/ViT-L_32.npz"),
        "imagenet21k+imagenet2012": Source(
            "https://storage.googleapis.com/vit_models/imagenet21k+imagenet2012/ViT-L_32.npz"
        ),
    },
    "vit_h14": {
        "imagenet21k": Source("https://storage.googleapis.com/vit_models/imagenet21k/ViT-H_14.npz"),
    },
    "r_vit_ti16": {
        "augreg_in21k": Source(
            "https://storage.googleapis.com/vit_models/augreg/R_Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-do_0.0-sd_0.0.npz"
        ),
        "augreg_in21k_ft_in1k": Source(
            "https://storage.googleapis.com/vit_models/augreg/R_Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.03-res_224.npz"
        ),
        "augreg_in21k_ft_in1k_384": Source(
            "https://storage.googleapis.com/vit_models/augreg/R_Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.03-res_384.npz"
        ),
    },
    "r26_vit_s32": {
        "augreg_in21k": Source(
            "https://storage.googleapis.com/vit_models/augreg/R26_S_32-i21k-300ep-lr_0.001-aug_light0-wd_0.03-do_0.1-sd_0.1.npz"
        ),
        "augreg_in21k_ft_in1k": Source(
            "https://storage.googleapis.com/vit_models/augreg/R26_S_32-i21k-300ep-lr_0.001-aug_light0-wd_0.03-do_0.1-sd_0.1--imagenet2012-steps_20k-lr_0.03-res_224.npz"
        ),
        # Another upstream run than the 224 px fine-tune, as for B/32.
        "augreg_in21k_ft_in1k_384": Source(
            "https://storage.googleapis.com/vit_models/augreg/R26_S_32-i21k-300ep-lr_0.001-aug_medium2-wd_0.03-do_0.0-sd_0.0--imagenet2012-steps_20k-lr_0.03-res_384.npz"
        ),
    },
    "r50_vit_b16": {
        "imagenet21k": Source("https://storage.googleapis.com/vit_models/imagenet21k/R50+ViT-B_16.npz"),
        "imagenet21k+imagenet2012": Source(
            "https://storage.googleapis.com/vit_models/imagenet21k+imagenet2012/R50+ViT-B_16.npz"
        ),
    },
    "deit_ti16": {
        "fb_in1k": Source(
            "https://huggingface.co/timm/deit_tiny_patch16_224.fb_in1k/resolve/main/model.safetensors",
            cache_name="deit_tiny_patch16_224.fb_in1k.safetensors",
        ),
    },
    "deit_s16": {
        "fb_in1k": Source(
            "https://huggingface.co/timm/deit_small_patch16_224.fb_in1k/resolve/main/model.safetensors",
            cache_name="deit_small_patch16_224.fb_in1k.safetensors",
        ),
    },
    "deit_b16": {
        "fb_in1k": Source(
            "https://huggingface.co/timm/deit_base_patch16_224.fb_in1k/resolve/main/model.safetensors",
            cache_name="deit_base_patch16_224.fb_in1k.safetensors",
        ),
    },
    "deit_ti16_distilled": {
        "fb_in1k": Source(
            "https://huggingface.co/timm/deit_tiny_distilled_patch16_224.fb_in1k/resolve/main/model.safetensors",
            cache_name="deit_tiny_distilled_patch16_224.fb_in1k.safetensors",
        ),
    },
    "deit_s16_distilled": {
        "fb_in1k": Source(
            "https://huggingface.co/timm/deit_small_distilled_patch16_224.fb_in1k/resolve/main/model.safetensors",
            cache_name="deit_small_distilled_patch16_224.fb_in1k.safetensors",
        ),
    },
    "deit_b16_distilled": {
        "fb_in1k": Source(
            "https://huggingface.co/timm/deit_base_distilled_patch16_224.fb_in1k/resolve/main/model.safetensors",
            cache_name="deit_base_distilled_patch16_224.fb_in1k.safetensors",
        ),
    },
}


def list_sources(preset):
    """The named `weights=` of a preset."""
    return list(SOURCES.get(preset, {}))


def get_source(preset, name):
    sources = SOURCES.get(preset, {})
    if name not in sources:
        known = ", ".join(sources) or "none"
        raise ValueError(
            f"Unknown weights {name!r} for preset {preset!r}; named weights for it: {known}. "
            f"Or pass a path to a checkpoint file or preset folder."
        )
    return sources[name]
