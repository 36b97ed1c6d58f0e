"""The facial-emotion classifier: MobileViT-XXS with an 8-class AffectNet head, and its image processor."""

from __future__ import annotations

import torch
from transformers import (
    AutoImageProcessor,
    MobileViTConfig,
    MobileViTForImageClassification,
    MobileViTImageProcessorPil,
)
from transformers.image_utils import PILImageResampling

from evoxtral.configs import FER_PRETRAINED_BACKBONE
from evoxtral.utils.logging import get_logger

logger = get_logger(__name__)

# AffectNet's eight expression classes, in the order of the classifier's logits.
FER_LABELS = ("Anger", "Contempt", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise")


# apple/mobilevit-xx-small's architecture, written out so that an offline run builds the same network.
MOBILEVIT_XXS_CONFIG = {
    "num_channels": 3,
    "image_size": 256,
    "patch_size": 2,
    "hidden_sizes": [64, 80, 96],
    "neck_hidden_sizes": [16, 16, 24, 48, 64, 80, 320],
    "num_attention_heads": 4,
    "mlp_ratio": 2.0,
    "expand_ratio": 2.0,
    "hidden_act": "silu",
    "conv_kernel_size": 3,
    "output_stride": 32,
    "hidden_dropout_prob": 0.05,
    "attention_probs_dropout_prob": 0.0,
    "classifier_dropout_prob": 0.1,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-5,
    "qkv_bias": True,
}

# apple/mobilevit-xx-small's preprocessing: bilinear resize of the short side to 288, 256 centre crop,
# pixels scaled to [0, 1] and given to the network in BGR order, no mean/std normalisation.
MOBILEVIT_XXS_PREPROCESSING = {
    "do_resize": True,
    "size": {"shortest_edge": 288},
    "resample": PILImageResampling.BILINEAR,
    "do_center_crop": True,
    "crop_size": {"height": 256, "width": 256},
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_flip_channel_order": True,
}


def label_maps(labels: tuple[str, ...] = FER_LABELS) -> dict:
    return {"id2label": dict(enumerate(labels)), "label2id": {label: i for i, label in enumerate(labels)}}


def mobilevit_xxs_config(labels: tuple[str, ...] = FER_LABELS) -> MobileViTConfig:
    return MobileViTConfig(**MOBILEVIT_XXS_CONFIG, **label_maps(labels))


def build_image_processor(model_name_or_path: str | None = None):
    """The image processor saved with `model_name_or_path`, else apple/mobilevit-xx-small's preprocessing."""
    if model_name_or_path:
        try:
            return AutoImageProcessor.from_pretrained(model_name_or_path)
        except OSError:
            logger.warning("No image processor at %s; using MobileViT-XXS's preprocessing.", model_name_or_path)
    # The PIL backend: the torchvision one would need torchvision, whose wheel does not sit beside this torch.
    return MobileViTImageProcessorPil(**MOBILEVIT_XXS_PREPROCESSING)


def build_fer_model(
    model_name_or_path: str | None = FER_PRETRAINED_BACKBONE,
    labels: tuple[str, ...] = FER_LABELS,
    require_pretrained: bool = False,
) -> MobileViTForImageClassification:
    """The ImageNet-pretrained XXS backbone with a fresh head for `labels`; a random-init XXS when the weights
    cannot be had (offline) unless `require_pretrained`. `model_name_or_path=None` asks for random init."""
    if model_name_or_path:
        try:
            return MobileViTForImageClassification.from_pretrained(
                model_name_or_path, ignore_mismatched_sizes=True, **label_maps(labels)
            )
        except OSError as error:
            if require_pretrained:
                raise
            logger.warning(
                "Could not load %s (%s); training the same XXS architecture from random init instead.",
                model_name_or_path,
                error.__class__.__name__,
            )
    return MobileViTForImageClassification(mobilevit_xxs_config(labels))


@torch.no_grad()
def calibrate_batchnorm(model: torch.nn.Module, batches) -> None:
    """Replaces every BatchNorm's running statistics by their average over `batches` of pixel values.

    A random-init MobileViT in eval mode uses the initial statistics (mean 0, variance 1), which shrink the
    activations layer after layer until the logits underflow (~1e-43); calibrated statistics give it a working
    eval-mode forward, which is what an export check needs."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved_momenta = [norm.momentum for norm in norms]
    was_training = model.training
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over all batches
    model.train()
    for pixel_values in batches:
        model(pixel_values=pixel_values)
    for norm, momentum in zip(norms, saved_momenta):
        norm.momentum = momentum
    model.train(was_training)
