"""Named profiles: every setting a paper's evaluation used, one switch away.

``profile: naclip`` (config key, ``--profile`` option, node parameter) starts the
configuration from that paper's settings; fields given explicitly still override them.
``lseg-eval --profile naclip --dataset voc`` adds the paper's per-dataset settings and its
evaluation protocol. The values below were read from the papers' public code at the commits
named in each profile's ``source``; the comments name the file each value comes from.

``robot`` (the default) is the node's real-time setting, not a paper's: see its ``why``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

#: mmseg ``Resize(scale=(2048, S), keep_ratio=True)`` as the training-free papers' configs write it
_MMSEG_336 = {"input_resize": "mmseg", "short_side": 336, "max_long_side": 2048}
#: OpenAI's ViT-B/16 as trained (QuickGELU), whatever the weights' source: the open_clip name
#: ``ViT-B-16`` runs GELU unless the weights come from the ``openai`` tag, so a local copy of
#: OpenAI's weights given with ``pretrained:=FILE`` would run silently wrong under it
_OPENAI_VIT_B16 = "ViT-B-16-quickgelu"


@dataclass(frozen=True)
class PaperFigure:
    """A published figure the profile should reproduce with the paper's weights."""

    dataset: str  # lseg_ros dataset kind
    miou: float  # percent
    where: str  # table or page it is taken from


@dataclass(frozen=True)
class Profile:
    name: str
    summary: str
    #: dotted SegmenterConfig overrides (every use of the profile)
    settings: Mapping[str, Any]
    #: dataset kind -> further overrides used by lseg-eval for that benchmark
    per_dataset: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: lseg-eval protocol: "single" (Segmenter.segment at the image size) or "lseg_multiscale"
    evaluation: str = "single"
    #: class-name files (lseg_ros/data/class_names/<names>/) lseg-eval uses
    names: str = "sclip"
    source: str = ""
    why: str = ""
    figures: Tuple[PaperFigure, ...] = ()
    #: what still differs from the reference code, honestly stated
    deviations: str = ""


PROFILES: Dict[str, Profile] = {}


def _register(profile: Profile) -> None:
    PROFILES[profile.name] = profile


_register(Profile(
    name="robot",
    summary="The node's default: NACLIP's last block, one forward per frame.",
    settings={},  # the SegmenterConfig defaults are this profile
    names="sclip",
    why=("One forward of ViT-B/16 at a 448-pixel short side (capped at 896) per frame: the resolution "
         "the patch grid needs for small objects at robot distances, without the 2-6x cost of sliding "
         "windows or the CPU/Jetson cost of PAMR; NACLIP's block (no training, best of the four on the "
         "papers' benchmarks); CLIP's own temperature 100 so that thresholds read as CLIP confidences; "
         "inputs snapped to the patch multiple and antialiased (no partial patches are dropped)."),
))

_register(Profile(
    name="naclip",
    summary="NACLIP (Hajimiri et al., WACV 2025) as its repository evaluates it, PAMR on.",
    settings={
        "backend": "dense_clip", "model": _OPENAI_VIT_B16, "pretrained": "openai",  # configs/base_config.py: 'ViT-B/16'
        "dense_clip.mode": "naclip", "dense_clip.gaussian_std": 5.0,  # test_all.sh: reduced naclip 5
        "dense_clip.positional_resize": "scale_factor",  # clip/model.py interpolate_pos_encoding
        "dense_clip.window": 224, "dense_clip.stride": 112,  # naclip.py: slide_crop=224, slide_stride=112
        "dense_clip.window_merge": "logits",  # naclip.py forward_slide
        **_MMSEG_336,  # configs/cfg_*.py: Resize(scale=(2048, 336), keep_ratio=True)
        "logit_scale": 40.0,  # naclip.py: logit_scale=40
        "prompt_templates": "imagenet",  # prompts/imagenet_template.py (the 80 CLIP templates)
        "threshold": 0.0, "threshold_label": -1, "area_threshold": 0.0,  # naclip.py: prob_thd=0.0
        "postprocess.pamr_iters": 10, "postprocess.pamr_dilations": [8, 16],  # naclip.py: pamr_steps=10, (8, 16)
        "postprocess.pamr_on": "output_logits",  # naclip.py predict: PAMR on logits at ori_shape
    },
    per_dataset={
        "voc": {"dense_clip.window": 0, "threshold": 0.1, "threshold_label": 0},  # cfg_voc21.py
        "voc20": {"dense_clip.window": 0},  # cfg_voc20.py: slide_crop=0
        "pascal_context60": {"threshold": 0.1, "threshold_label": 0},  # cfg_context60.py
        "coco_object": {"threshold": 0.1, "threshold_label": 0},  # cfg_coco_object.py
        "cityscapes": {"short_side": 560},  # cfg_city_scapes.py: scale=(2048, 560)
    },
    names="sclip",  # configs/cls_*.txt (identical to SCLIP's)
    source="sinahmr/NACLIP@0cac3a651f753b11315ea799cfbfabf79da1bd76",
    figures=tuple(PaperFigure(kind, miou, "NACLIP README 'Results' (default setup, PAMR on)") for kind, miou in (
        ("voc", 64.07), ("pascal_context60", 34.99), ("coco_object", 36.19), ("voc20", 83.03),
        ("cityscapes", 38.27), ("pascal_context59", 38.35), ("ade20k", 19.05), ("coco_stuff164k", 25.69))),
    deviations=("The image is resized with PyTorch's bilinear filter rounded to 8 bits, not OpenCV's "
                "fixed-point one (mmcv), so a few pixels differ by one grey level."),
))

_register(Profile(
    name="sclip",
    summary="SCLIP (Wang et al., ECCV 2024) as its repository evaluates it.",
    settings={
        "backend": "dense_clip", "model": _OPENAI_VIT_B16, "pretrained": "openai",  # configs/base_config.py
        "dense_clip.mode": "sclip",  # clip/model.py custom_attn(csa=True)
        "dense_clip.positional_resize": "scale_factor",  # clip/model.py interpolate_pos_encoding
        "dense_clip.window": 224, "dense_clip.stride": 112,  # clip_segmentor.py: slide_crop=224, slide_stride=112
        "dense_clip.window_merge": "logits",  # clip_segmentor.py forward_slide
        **_MMSEG_336,  # configs/cfg_*.py
        "logit_scale": 40.0,  # clip_segmentor.py: logit_scale=40
        "prompt_templates": "imagenet",
        "threshold": 0.0, "threshold_label": -1, "area_threshold": 0.0,
        "postprocess.pamr_iters": 0,  # clip_segmentor.py: pamr_steps=0
    },
    per_dataset={
        "voc": {"logit_scale": 65.0, "threshold": 0.1, "threshold_label": 0, "area_threshold": 0.1},  # cfg_voc21.py
        "pascal_context60": {"logit_scale": 50.0, "threshold": 0.1, "threshold_label": 0},  # cfg_context60.py
        "coco_object": {"logit_scale": 50.0, "threshold": 0.1, "threshold_label": 0},  # cfg_coco_object.py
        "coco_stuff164k": {"short_side": 448},  # cfg_coco_stuff164k.py: scale=(2048, 448)
        "cityscapes": {"short_side": 560},  # cfg_city_scapes.py
    },
    names="sclip",
    source="wangf3014/SCLIP@b56bd3014b9e8a3ee3450bcfc53700a67d627b7a",
    figures=tuple(PaperFigure(kind, miou, "SCLIP README 'Results' (default setup)") for kind, miou in (
        ("voc", 59.63), ("pascal_context60", 31.74), ("coco_object", 33.52), ("voc20", 81.54),
        ("cityscapes", 32.34), ("pascal_context59", 34.46), ("ade20k", 16.45), ("coco_stuff164k", 22.77))),
    deviations="As naclip (image resize filter).",
))

_register(Profile(
    name="clearclip",
    summary="ClearCLIP (Lan et al., ECCV 2024) as its repository evaluates it.",
    settings={
        "backend": "dense_clip", "model": _OPENAI_VIT_B16, "pretrained": "openai",  # base_config.py: CLIP ViT-B/16
        "dense_clip.mode": "clearclip",  # open_clip/transformer.py custom_attn 'ClearCLIP', ignore_residual
        "dense_clip.positional_resize": "scale_factor",  # open_clip/transformer.py interpolate_pos_encoding
        "dense_clip.window": 448, "dense_clip.stride": 224,  # clearclip_segmentor.py: slide_crop=448, slide_stride=224
        "dense_clip.window_merge": "logits",
        "input_resize": "mmseg", "short_side": 448, "max_long_side": 2048,  # configs/cfg_*.py: scale=(2048, 448)
        "logit_scale": 50.0,  # clearclip_segmentor.py: logit_scale=50
        "prompt_templates": "imagenet",
        "threshold": 0.0, "threshold_label": -1, "area_threshold": 0.0,
        "postprocess.pamr_iters": 0,
    },
    per_dataset={
        "voc": {"threshold": 0.5, "threshold_label": 0},  # cfg_voc21.py: prob_thd=0.5
        "pascal_context60": {"threshold": 0.15, "threshold_label": 0},  # cfg_context60.py
        "coco_object": {"threshold": 0.4, "threshold_label": 0},  # cfg_coco_object.py
        "cityscapes": {"dense_clip.window": 224, "dense_clip.stride": 224},  # cfg_city_scapes.py: slide_crop=224
    },
    names="clearclip",  # configs/cls_*.txt (VOC21, VOC20, COCO-Object differ from SCLIP's)
    source="mc-lan/ClearCLIP@ad68a404d55d48d27330b93554eb64a234ff717f",
    figures=tuple(PaperFigure(kind, miou, "ClearCLIP paper Table 2, CLIP ViT-B/16 + ClearCLIP (the "
                                          "repository's assets/results.png)") for kind, miou in (
        ("voc20", 80.9), ("pascal_context59", 35.9), ("coco_stuff164k", 23.9), ("cityscapes", 30.0),
        ("ade20k", 16.7))),
    deviations=("ClearCLIP runs the model in fp16 (add precision:=fp16 on CUDA for its numerics); its "
                "repository's base config says model_type='vanilla', the profile runs the paper's "
                "ClearCLIP attention; image resize filter as naclip."),
))

_register(Profile(
    name="maskclip",
    summary="MaskCLIP (Zhou et al., ECCV 2022), ViT-B/16, annotation-free, as its configs evaluate it.",
    settings={
        "backend": "dense_clip", "model": _OPENAI_VIT_B16, "pretrained": "openai",  # _base_/models/maskclip_vit16.py
        "dense_clip.mode": "maskclip",  # mmseg/models/backbones/vit.py (return_qkv) + maskclip_head.py
        "dense_clip.positional_resize": "size",  # mmseg/models/backbones/vit.py resize_pos_embed
        "dense_clip.partial_patches": "pad",  # vit.py PatchEmbed(padding='corner'): mmseg/models/utils/embed.py
        "dense_clip.normalization": "imagenet",  # configs/_base_/datasets/*.py img_norm_cfg
        "dense_clip.image_tower": "mmseg",  # maskclip_vit16.py: act_cfg GELU, norm_cfg LN eps 1e-6
        "dense_clip.window": 0,  # test_cfg=dict(mode='whole')
        "input_resize": "mmseg", "short_side": 512, "max_long_side": 2048,  # datasets/*: img_scale=(2048, 512)
        "logit_scale": 1.0,  # maskclip_head.py cls_seg: raw cosine similarity
        "prompt_templates": "maskclip",  # tools/maskclip_utils/prompt_engineering.py: the 80 + 5 "... in the scene."
        "threshold": 0.0, "threshold_label": -1, "area_threshold": 0.0,
        "postprocess.pamr_iters": 0,
    },
    per_dataset={
        "pascal_context59": {"short_side": 520, "max_long_side": 520},  # datasets/pascal_context_59.py: (520, 520)
    },
    names="maskclip",  # tools/maskclip_utils/prompt_engineering.py class lists
    source="chongzhou96/MaskCLIP@245d31f809be9c1938f8f30561b6bf9ed033d746",
    figures=tuple(PaperFigure(kind, miou, "MaskCLIP configs/maskclip/README.md, ViT-B/16 rows") for kind, miou in (
        ("voc20", 49.5), ("pascal_context59", 21.7), ("coco_stuff164k", 12.5))),
    deviations=("Image resize filter as naclip (99.62 % of pixels agree with MaskCLIP's OpenCV resize where "
                "the image is resized) and text embeddings in fp32 where MaskCLIP's were computed in fp16 on CUDA "
                "(99.6-99.8 % with both); on the same resized image 100 % of pixels agree with MaskCLIP's code "
                "on random ViT-B/16 weights (scripts/compare_with_references.py)."),
))

_register(Profile(
    name="lseg",
    summary="LSeg (Li et al., ICLR 2022) with its multi-scale evaluation.",
    settings={
        "backend": "lseg", "model": "lseg_vitl16_384",  # test.sh: --backbone clip_vitl16_384
        "lseg.arch_option": 0, "lseg.block_depth": 0,  # README test commands: --arch_option 0
        "prompt_templates": "none", "logit_scale": 0.0,  # the label itself; 1/0.07 (lseg_net.py)
        "short_side": 520, "max_long_side": 520,  # test_lseg.py --base-size 520 (single-scale use)
        "dense_clip.window": 0,
        "threshold": 0.0, "threshold_label": -1, "area_threshold": 0.0,
        "postprocess.pamr_iters": 0,
    },
    evaluation="lseg_multiscale",  # additional_utils/encoding_models.py MultiEvalModule
    names="plain",
    source="isl-org/lang-seg@bb00b219f82dc1a18a01f9b0b647bae1d41f3aeb",
    figures=(
        PaperFigure("ade20k", 32.07, "demo_e200.ckpt with test_lseg.py, as reported in isl-org/lang-seg#17 "
                                     "(80.78 pixAcc; the maintainers: the demo model is not a paper model)"),
    ),
    deviations=("The paper's ADE20K models (Table 5: ViT-B/32 37.8 mIoU, quoted in isl-org/lang-seg#32) were "
                "not released; upstream computes the cosine logits in fp16 on CUDA, lseg_ros in fp32."),
))

PROFILE_NAMES = tuple(PROFILES)


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; accepted: {', '.join(PROFILES)}") from None


def profile_settings(name: str, dataset: Optional[str] = None) -> Dict[str, Any]:
    """Dotted overrides of profile ``name`` (plus its ``dataset`` settings)."""
    profile = get_profile(name)
    settings = dict(profile.settings)
    if dataset is not None:
        settings.update(profile.per_dataset.get(dataset, {}))
    return settings


def profile_fields() -> Tuple[str, ...]:
    """Every dotted field some profile sets (what a params file leaves to the profile)."""
    names = []
    for profile in PROFILES.values():
        for settings in (profile.settings, *profile.per_dataset.values()):
            names.extend(settings)
    return tuple(dict.fromkeys(names))


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> Dict[str, Any]:
    """Nested dicts merged, ``top`` winning."""
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def nest(dotted: Mapping[str, Any]) -> Dict[str, Any]:
    """{'a.b': 1} -> {'a': {'b': 1}}."""
    nested: Dict[str, Any] = {}
    for key, value in dotted.items():
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return nested

