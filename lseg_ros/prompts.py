"""Prompt template sets for turning a label into text-encoder inputs."""
from __future__ import annotations

from typing import Dict, List

# The 80 ImageNet prompt templates of Radford et al. (CLIP), used by the training-free
# dense CLIP methods (MaskCLIP, SCLIP, ClearCLIP, NACLIP) for their zero-shot results.
IMAGENET_TEMPLATES: List[str] = [
    "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.",
    "a photo of the hard to see {}.", "a low resolution photo of the {}.", "a rendering of a {}.",
    "graffiti of a {}.", "a bad photo of the {}.", "a cropped photo of the {}.",
    "a tattoo of a {}.", "the embroidered {}.", "a photo of a hard to see {}.",
    "a bright photo of a {}.", "a photo of a clean {}.", "a photo of a dirty {}.",
    "a dark photo of the {}.", "a drawing of a {}.", "a photo of my {}.", "the plastic {}.",
    "a photo of the cool {}.", "a close-up photo of a {}.", "a black and white photo of the {}.",
    "a painting of the {}.", "a painting of a {}.", "a pixelated photo of the {}.",
    "a sculpture of the {}.", "a bright photo of the {}.", "a cropped photo of a {}.",
    "a plastic {}.", "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.", "a photo of the {}.", "a good photo of the {}.",
    "a rendering of the {}.", "a {} in a video game.", "a photo of one {}.", "a doodle of a {}.",
    "a close-up photo of the {}.", "a photo of a {}.", "the origami {}.", "the {} in a video game.",
    "a sketch of a {}.", "a doodle of the {}.", "a origami {}.", "a low resolution photo of a {}.",
    "the toy {}.", "a rendition of the {}.", "a photo of the clean {}.", "a photo of a large {}.",
    "a rendition of a {}.", "a photo of a nice {}.", "a photo of a weird {}.",
    "a blurry photo of a {}.", "a cartoon {}.", "art of a {}.", "a sketch of the {}.",
    "a embroidered {}.", "a pixelated photo of a {}.", "itap of the {}.",
    "a jpeg corrupted photo of the {}.", "a good photo of a {}.", "a plushie {}.",
    "a photo of the nice {}.", "a photo of the small {}.", "a photo of the weird {}.",
    "the cartoon {}.", "art of the {}.", "a drawing of the {}.", "a photo of the large {}.",
    "a black and white photo of a {}.", "the plushie {}.", "a dark photo of a {}.", "itap of a {}.",
    "graffiti of the {}.", "a toy {}.", "itap of my {}.", "a photo of a cool {}.",
    "a photo of a small {}.", "a tattoo of the {}.",
]

# MaskCLIP's prompt engineering (tools/maskclip_utils/prompt_engineering.py of
# chongzhou96/MaskCLIP@245d31f): the 80 above plus five scene templates, 85 in all.
MASKCLIP_SCENE_TEMPLATES: List[str] = [
    "there is a {} in the scene.", "there is the {} in the scene.", "this is a {} in the scene.",
    "this is the {} in the scene.", "this is one {} in the scene.",
]

TEMPLATE_SETS: Dict[str, List[str]] = {
    "none": ["{}"],
    "single": ["a photo of a {}."],
    "imagenet": IMAGENET_TEMPLATES,
    "maskclip": IMAGENET_TEMPLATES + MASKCLIP_SCENE_TEMPLATES,
    # CAT-Seg's released models (PROMPT_ENSEMBLE_TYPE single, cat_seg_predictor.py)
    "catseg": ["A photo of a {} in the scene"],
}


def get_templates(name: str) -> List[str]:
    try:
        return TEMPLATE_SETS[name]
    except KeyError:
        raise ValueError(f"unknown prompt template set {name!r}; accepted: {sorted(TEMPLATE_SETS)}") from None
