"""A ViT's intermediates by name: `ViT.feature_extractor`."""

import keras

FEATURES = ("tokens", "pooled", "hidden_states", "attention", "logits")
DISTILLED_FEATURES = ("class_logits", "distillation_logits")


class FeatureExtractor(keras.Model):
    """Runs a ViT's own layers (no copy of the weights) and returns a dict of
    the named intermediates (`ViT.feature_extractor` lists them).

    A subclassed model rather than a second functional graph: Keras' graph
    check takes a layer's output structure from its first call, and the blocks
    return attention probabilities only here.
    """

    def __init__(self, vit, feature_names):
        allowed = FEATURES if vit.include_top else FEATURES[:-1]
        if vit.include_top and vit.distilled:
            allowed += DISTILLED_FEATURES
        unknown = [name for name in feature_names if name not in allowed]
        if unknown or not feature_names:
            raise ValueError(f"Unknown feature output(s) {unknown}; expected some of {allowed}.")
        super().__init__(dtype=vit.dtype_policy, name=f"{vit.name}_features")
        self.vit = vit
        self.feature_names = feature_names

    def call(self, images):
        features = self.vit._intermediates(images, return_attention="attention" in self.feature_names)
        return {name: features[name] for name in self.feature_names}
