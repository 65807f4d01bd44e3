"""Published checkpoints, registered per preset: where they live, and their sha256 where known.

URLs are those of google-research/vision_transformer (`imagenet21k`,
`imagenet21k+imagenet2012`) and of "How to train your ViT?" (AugReg,
Steiner et al. 2021, the same files timm and big_vision load). No sha256 is
published for these files; `sha256=None` means the download is not verified.
"""

from dataclasses import dataclass

BASE_URL = "https://storage.googleapis.com/vit_models/"


@dataclass(frozen=True)
class Source:
    url: str
    sha256: str | None = None

    @property
    def filename(self):
        return self.url.rsplit("/", 1)[-1]


def _original(folder, name):
    return Source(f"{BASE_URL}{folder}/{name}.npz")


def _augreg(name):
    return Source(f"{BASE_URL}augreg/{name}.npz")


_FT = "--imagenet2012-steps_20k-lr_{lr}-res_{res}"
_I21K = {  # the upstream of timm's `augreg_in21k_ft_in1k` files
    "vit_ti16": ("Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-do_0.0-sd_0.0", "0.03"),
    "vit_s32": ("S_32-i21k-300ep-lr_0.001-aug_light1-wd_0.03-do_0.0-sd_0.0", "0.03"),
    "vit_s16": ("S_16-i21k-300ep-lr_0.001-aug_light1-wd_0.03-do_0.0-sd_0.0", "0.03"),
    "vit_b32": ("B_32-i21k-300ep-lr_0.001-aug_medium1-wd_0.03-do_0.0-sd_0.0", "0.03"),
    "vit_b16": ("B_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0", "0.01"),
    "vit_b8": ("B_8-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.0-sd_0.0", "0.01"),
    "vit_l16": ("L_16-i21k-300ep-lr_0.001-aug_medium1-wd_0.1-do_0.1-sd_0.1", "0.01"),
}
# timm's B/32 384 fine-tune starts from another upstream run.
_I21K_384 = {**_I21K, "vit_b32": ("B_32-i21k-300ep-lr_0.001-aug_light1-wd_0.1-do_0.0-sd_0.0", "0.03")}
_I1K = {
    "vit_s16": "S_16-i1k-300ep-lr_0.001-aug_medium2-wd_0.1-do_0.0-sd_0.0",
    "vit_b32": "B_32-i1k-300ep-lr_0.001-aug_medium2-wd_0.1-do_0.1-sd_0.1",
    "vit_b16": "B_16-i1k-300ep-lr_0.001-aug_strong2-wd_0.1-do_0.1-sd_0.1",
}
_ORIGINAL_NAMES = {"vit_b16": "ViT-B_16", "vit_b32": "ViT-B_32", "vit_l16": "ViT-L_16", "vit_l32": "ViT-L_32"}

SOURCES = {preset: {} for preset in (
    "vit_ti16", "vit_s16", "vit_s32", "vit_b8", "vit_b16", "vit_b32", "vit_l16", "vit_l32", "vit_h14",
    "r_vit_ti16", "r26_vit_s32", "r50_vit_b16",
)}
for _preset, _name in {**_ORIGINAL_NAMES, "vit_h14": "ViT-H_14"}.items():
    # 224 px, ImageNet-21k head (21843 classes) after a pre_logits layer.
    SOURCES[_preset]["imagenet21k"] = _original("imagenet21k", _name)
for _preset, _name in _ORIGINAL_NAMES.items():
    # Fine-tuned on ImageNet-1k at 384 px.
    SOURCES[_preset]["imagenet21k+imagenet2012"] = _original("imagenet21k+imagenet2012", _name)
for _preset in ("vit_b16", "vit_l16"):
    SOURCES[_preset]["imagenet21k+imagenet2012_224"] = _original(
        "imagenet21k+imagenet2012", _ORIGINAL_NAMES[_preset] + "-224"
    )
for _preset, (_name, _lr) in _I21K.items():
    SOURCES[_preset]["augreg_in21k"] = _augreg(_name)
    SOURCES[_preset]["augreg_in21k_ft_in1k"] = _augreg(_name + _FT.format(lr=_lr, res=224))
for _preset, (_name, _lr) in _I21K_384.items():
    if _preset != "vit_b8":
        SOURCES[_preset]["augreg_in21k_ft_in1k_384"] = _augreg(_name + _FT.format(lr=_lr, res=384))
for _preset, _name in _I1K.items():
    SOURCES[_preset]["augreg_in1k"] = _augreg(_name + _FT.format(lr="0.01", res=224))
    SOURCES[_preset]["augreg_in1k_384"] = _augreg(_name + _FT.format(lr="0.01", res=384))


# Hybrids. R50+ViT-B/16: the original files (224 px 21k pre-training with
# pre_logits; the 384 px ImageNet-1k fine-tune). R26+S/32 and R+Ti/16: AugReg
# files, as timm's `vit_small_r26_s32_*` and `vit_tiny_r_s16_p8_*` load them.
SOURCES["r50_vit_b16"]["imagenet21k"] = _original("imagenet21k", "R50+ViT-B_16")
SOURCES["r50_vit_b16"]["imagenet21k+imagenet2012"] = _original("imagenet21k+imagenet2012", "R50+ViT-B_16")
_R_TI = "R_Ti_16-i21k-300ep-lr_0.001-aug_none-wd_0.03-do_0.0-sd_0.0"
SOURCES["r_vit_ti16"]["augreg_in21k"] = _augreg(_R_TI)
SOURCES["r_vit_ti16"]["augreg_in21k_ft_in1k"] = _augreg(_R_TI + _FT.format(lr="0.03", res=224))
SOURCES["r_vit_ti16"]["augreg_in21k_ft_in1k_384"] = _augreg(_R_TI + _FT.format(lr="0.03", res=384))
_R26 = "R26_S_32-i21k-300ep-lr_0.001-aug_light0-wd_0.03-do_0.1-sd_0.1"  # upstream of the 224 fine-tune
SOURCES["r26_vit_s32"]["augreg_in21k"] = _augreg(_R26)
SOURCES["r26_vit_s32"]["augreg_in21k_ft_in1k"] = _augreg(_R26 + _FT.format(lr="0.03", res=224))
SOURCES["r26_vit_s32"]["augreg_in21k_ft_in1k_384"] = _augreg(
    "R26_S_32-i21k-300ep-lr_0.001-aug_medium2-wd_0.03-do_0.0-sd_0.0" + _FT.format(lr="0.03", res=384)
)


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
