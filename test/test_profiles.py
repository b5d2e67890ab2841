"""Named profiles: their settings, their precedence under explicit fields, and the papers'
pipelines they select, checked against the references' code written out in the tests."""
import argparse

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lseg_ros.config import SegmenterConfig, add_config_arguments, config_from_args, from_dict
from lseg_ros.postprocess import pamr
from lseg_ros.preprocess import mmseg_input_size, to_model_input
from lseg_ros.profiles import PROFILES, get_profile, profile_fields
from lseg_ros.segmenter import Segmenter

from helpers import TEST_DEVICE

TINY = "lseg-test-tiny-ViT"


def test_every_profile_builds_a_valid_config_for_every_dataset_it_names():
    from lseg_ros.data.datasets import DATASETS

    for name, profile in PROFILES.items():
        SegmenterConfig.for_profile(name).validate()
        for dataset in list(profile.per_dataset) + [figure.dataset for figure in profile.figures]:
            assert dataset in DATASETS, (name, dataset)
            config = SegmenterConfig.for_profile(name, dataset).validate()
            assert config.profile == name


def test_robot_profile_is_the_defaults():
    assert SegmenterConfig.for_profile("robot") == SegmenterConfig()


@pytest.mark.parametrize("profile, dataset, expected", [
    ("naclip", None, {"logit_scale": 40.0, "dense_clip.window": 224, "dense_clip.stride": 112,
                      "short_side": 336, "postprocess.pamr_iters": 10, "postprocess.pamr_dilations": [8, 16]}),
    ("naclip", "voc", {"dense_clip.window": 0, "threshold": 0.1, "threshold_label": 0}),
    ("sclip", "voc", {"logit_scale": 65.0, "threshold": 0.1, "area_threshold": 0.1}),
    ("sclip", "coco_stuff164k", {"short_side": 448, "logit_scale": 40.0}),
    ("clearclip", "voc", {"threshold": 0.5, "dense_clip.window": 448, "dense_clip.stride": 224,
                          "logit_scale": 50.0}),
    ("maskclip", "pascal_context59", {"short_side": 520, "max_long_side": 520, "logit_scale": 1.0,
                                      "prompt_templates": "maskclip", "dense_clip.positional_resize": "size"}),
])
def test_profiles_carry_the_references_values(profile, dataset, expected):
    from lseg_ros.config import flatten

    flat = flatten(SegmenterConfig.for_profile(profile, dataset))
    assert {key: flat[key] for key in expected} == expected


def test_explicit_fields_override_the_profile_in_files_and_on_the_command_line(tmp_path):
    config = from_dict(SegmenterConfig, {"profile": "naclip", "short_side": 500, "dense_clip": {"window": 0}})
    assert (config.short_side, config.dense_clip.window, config.logit_scale) == (500, 0, 40.0)
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    add_config_arguments(parser)
    path = tmp_path / "c.yaml"
    path.write_text("logit_scale: 7\n")
    config = config_from_args(parser.parse_args(["--config", str(path), "--profile", "sclip"]))
    assert (config.profile, config.logit_scale, config.dense_clip.mode) == ("sclip", 7.0, "sclip")
    config = config_from_args(parser.parse_args(["--profile", "sclip", "--dense-clip-stride", "64"]))
    assert (config.dense_clip.stride, config.dense_clip.window) == (64, 224)


def test_unknown_profile_is_refused_listing_them():
    with pytest.raises(ValueError, match="profile='nope'.*robot, naclip, sclip, clearclip, maskclip, lseg"):
        from_dict(SegmenterConfig, {"profile": "nope"}).validate()


def test_profile_fields_are_left_to_the_profile_in_the_generated_params_file():
    from lseg_ros.ros.params import render_params_yaml

    text = render_params_yaml()
    assert "    profile: \"robot\"" in text
    for name in profile_fields():
        assert f"\n    # {name}: " in text and f"\n    {name}: " not in text, name


def test_every_profile_names_its_source_commit_and_figures_their_table():
    for name, profile in PROFILES.items():
        if name != "robot":
            assert "@" in profile.source and len(profile.source.split("@")[1]) == 40, name
            assert profile.figures and all(figure.where for figure in profile.figures), name
        else:
            assert profile.why


# ----------------------------------------------------------- papers' pipelines
def test_mmseg_input_size_follows_mmcv_rescale_size():
    assert mmseg_input_size(375, 500, 336, 2048) == (336, 448)  # a VOC image
    assert mmseg_input_size(333, 500, 336, 2048) == (336, int(500 * 336 / 333 + 0.5))
    assert mmseg_input_size(1024, 2048, 560, 2048) == (560, 1120)  # Cityscapes
    assert mmseg_input_size(100, 5000, 336, 2048) == (int(100 * 2048 / 5000 + 0.5), 2048)  # long side caps


def test_eight_bit_resize_is_bilinear_without_antialiasing_rounded_to_grey_levels():
    image = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    x = to_model_input([image], (40, 53), (0.0,) * 3, (1.0,) * 3, torch.device(TEST_DEVICE), torch.float32,
                       antialias=False, eight_bit=True)
    plain = F.interpolate(torch.from_numpy(image).permute(2, 0, 1)[None].float(), size=(40, 53), mode="bilinear",
                          align_corners=False)
    torch.testing.assert_close(x * 255, plain.round(), rtol=0, atol=1e-4)


def _tiny_naclip(**fields):
    torch.manual_seed(0)
    config = SegmenterConfig.for_profile("naclip", "voc", model=TINY, pretrained="random", device=TEST_DEVICE,
                                         labels=["background; sky; wall", "person; man", "door"], **fields)
    return Segmenter(config)


def test_naclip_voc_pipeline_equals_naclip_predict_written_out():
    """naclip.py (sinahmr/NACLIP@0cac3a6) predict() for VOC21 (slide_crop=0, prob_thd=0.1, PAMR
    10 x (8, 16)), on an image already resized the mmseg way: forward_feature on the floor
    patch grid, logits to the input size, then to ori_shape, PAMR there, softmax(40 x), the
    best name of each class, below 0.1 -> 0."""
    segmenter = _tiny_naclip()
    image = np.random.default_rng(3).integers(0, 256, (75, 100, 3), dtype=np.uint8)
    size = mmseg_input_size(75, 100, 336, 2048)
    assert size == (336, 448)
    segmenter.config.short_side, segmenter.config.max_long_side = 45, 2048  # keep the test small
    size = mmseg_input_size(75, 100, 45, 2048)  # (45, 60): not patch multiples
    inputs = to_model_input([image], size, segmenter.backend.image_mean, segmenter.backend.image_std,
                            torch.device(TEST_DEVICE), torch.float32, antialias=False, eight_bit=True)
    text = segmenter.label_set.label_embeddings  # [names, D]
    with torch.inference_mode():
        features = F.normalize(segmenter.backend.dense_embeddings(inputs), dim=1)  # floor grid (2, 3)
        logits = torch.einsum("bdhw,nd->bnhw", features, text)
        logits = F.interpolate(logits, size=inputs.shape[-2:], mode="bilinear", align_corners=False)
        logits = F.interpolate(logits, size=(75, 100), mode="bilinear", align_corners=False)
        guide = F.interpolate(inputs, size=(75, 100), mode="bilinear", align_corners=False)
        logits = pamr(guide, logits, 10, [8, 16])
        probs = torch.softmax(logits[0] * 40, dim=0)
        groups = segmenter.label_set.name_groups
        probs = torch.stack([probs[groups == label].max(0).values for label in range(3)])
        pred = probs.argmax(0)
        pred[probs.max(0).values < 0.1] = 0
        result = segmenter.segment(image)
    assert features.shape[-2:] == (2, 3)
    np.testing.assert_allclose(result.confidences, probs.numpy(), atol=1e-5)
    assert (result.mask == pred.numpy()).mean() > 0.999


@pytest.mark.parametrize("name", list(PROFILES))
def test_only_the_maskclip_profile_pads_normalizes_with_imagenet_statistics_and_runs_mmsegs_vit(name):
    """MaskCLIP's mmseg ViT pads to whole patches and runs GELU with LayerNorm eps 1e-6, and its
    configs normalize with ImageNet's mean/std; the others (and the robot default) crop, use
    CLIP's mean/std and run the weights as trained."""
    settings = SegmenterConfig.for_profile(name).dense_clip
    expected = ("pad", "imagenet", "mmseg") if name == "maskclip" else ("crop", "clip", "clip")
    assert (settings.partial_patches, settings.normalization, settings.image_tower) == expected


@pytest.mark.parametrize("name", [name for name, profile in PROFILES.items()
                                  if profile.settings.get("pretrained") == "openai"])
def test_profiles_evaluating_openai_weights_run_quickgelu_also_from_a_local_file(name):
    """OpenAI's weights were trained with QuickGELU: the profile names the QuickGELU model, so
    that the tag and a local copy of the weights (whose origin the path may not tell) run alike."""
    from lseg_ros.models.dense_clip import uses_quick_gelu

    for pretrained in ("openai", "/robot/weights/clip_b16.safetensors"):
        config = SegmenterConfig.for_profile(name, pretrained=pretrained)
        assert uses_quick_gelu(config.model), (name, config.model)
    assert not uses_quick_gelu(SegmenterConfig.for_profile(name, model="ViT-B-16").model)  # explicit wins


def test_maskclip_pipeline_pads_to_whole_patches_and_resizes_logits_as_encode_decode():
    """MaskCLIP's whole_inference written out (chongzhou96/MaskCLIP@245d31f): ImageNet
    normalization of the mmseg-resized image, zero padding at the bottom and right to whole
    patches, raw cosine logits on the padded grid resized to the unpadded input, then to
    ori_shape, softmax."""
    torch.manual_seed(0)
    segmenter = Segmenter(SegmenterConfig.for_profile("maskclip", model=TINY, pretrained="random", device=TEST_DEVICE,
                                                      short_side=40, labels=["sky", "person", "door"]))
    image = np.random.default_rng(2).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    size = mmseg_input_size(30, 50, 40, 2048)
    assert size == (40, 67)  # neither side a patch multiple
    mean = tuple(value / 255 for value in (123.675, 116.28, 103.53))
    std = tuple(value / 255 for value in (58.395, 57.12, 57.375))
    inputs = to_model_input([image], size, mean, std, torch.device(TEST_DEVICE), torch.float32, antialias=False,
                            eight_bit=True)
    with torch.inference_mode():
        padded = F.pad(inputs, (0, 80 - 67, 0, 48 - 40))
        features = F.normalize(segmenter.backend.dense_embeddings(padded), dim=1)  # [1, D, 3, 5]
        logits = torch.einsum("bdhw,nd->bnhw", features, segmenter.label_set.label_embeddings)
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        logits = F.interpolate(logits, size=(30, 50), mode="bilinear", align_corners=False)
        expected = logits[0].softmax(0)
        result = segmenter.segment(image, return_embeddings=True)
    assert features.shape[-2:] == (3, 5) and result.embeddings.shape[:2] == (3, 5)
    np.testing.assert_allclose(result.confidences, expected.cpu().numpy(), atol=1e-5)
    assert (result.mask == expected.argmax(0).cpu().numpy()).all()


def test_profile_pipeline_accepts_any_image_size_with_windows():
    segmenter = _tiny_naclip(dense_clip={"window": 32, "stride": 16})
    segmenter.config.short_side = 40
    result = segmenter.segment(np.random.default_rng(4).integers(0, 256, (50, 77, 3), dtype=np.uint8))
    assert result.mask.shape == (50, 77) and np.isfinite(result.confidences).all()


def test_mmseg_input_resize_with_lseg_is_refused_naming_the_fix():
    with pytest.raises(ValueError, match="input_resize 'mmseg'.*use input_resize 'snap'"):
        Segmenter(SegmenterConfig(backend="lseg", model="lseg_tiny", pretrained="random", device=TEST_DEVICE,
                                  input_resize="mmseg", labels=["a"]))


def test_get_profile_names_the_choices():
    with pytest.raises(ValueError, match="unknown profile 'x'"):
        get_profile("x")


def test_dataset_settings_of_a_profile_lie_beneath_the_file_and_the_command_line(tmp_path):
    from lseg_ros.evaluate import build_parser

    path = tmp_path / "c.yaml"
    path.write_text("profile: sclip\nthreshold: 0.3\n")
    args = build_parser().parse_args(["--root", str(tmp_path), "--config", str(path), "--short-side", "400"])
    config = config_from_args(args, dataset="voc")
    assert (config.logit_scale, config.area_threshold) == (65.0, 0.1)  # sclip's VOC21 settings
    assert (config.threshold, config.short_side) == (0.3, 400)  # explicit values win
    args = build_parser().parse_args(["--root", str(tmp_path), "--profile", "clearclip"])
    assert config_from_args(args, dataset="voc").threshold == 0.5
