"""lseg-eval: scores on cases with known answers, multi-scale/flip/window inference, reports."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from lseg_ros.config import SegmenterConfig
from lseg_ros.data import build_dataset
from lseg_ros.data.scenes import SCENE_CLASSES, generate_scene, scene_rng
from lseg_ros.evaluate import (LSEG_SCALES, evaluate_predictions, evaluate_segmenter, main, predict_mask,
                               predict_probabilities)
from lseg_ros.models.base import SegmentationBackend, register_backend
from lseg_ros.segmenter import Segmenter

from helpers import TEST_DEVICE

PALETTE = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "white": (240, 240, 240)}
NAMES = list(PALETTE)


class ColorOracle(SegmentationBackend):
    """Per-pixel nearest palette colour at full resolution; label text -> one-hot embedding.
    It has no spatial context, so it is invariant to scale, flips and windows."""

    backend_name = "color_oracle"
    image_mean = (0.0, 0.0, 0.0)
    image_std = (1.0, 1.0, 1.0)
    default_logit_scale = 20.0
    default_prompt_templates = "none"

    def __init__(self):
        super().__init__()
        self.palette = torch.nn.Parameter(torch.tensor(list(PALETTE.values())).float() / 255, requires_grad=False)
        self.description = self.text_model_id = "color oracle"

    def tokenize(self, texts):
        return torch.tensor([[NAMES.index(text)] for text in texts])

    def encode_text(self, token_ids):
        return torch.nn.functional.one_hot(token_ids[:, 0], len(NAMES)).float()

    def forward(self, images):
        distances = ((images[:, None] - self.palette[None, :, :, None, None]) ** 2).sum(2)  # [B, K, H, W]
        return (-30 * distances).softmax(1)


try:
    register_backend("color_oracle_for_tests")(lambda config: ColorOracle())
except ValueError:  # already registered in this process
    pass


def oracle_segmenter(**overrides) -> Segmenter:
    config = SegmenterConfig(backend="color_oracle_for_tests", model="oracle", pretrained="random", device=TEST_DEVICE,
                             short_side=64, max_long_side=96, labels=NAMES)
    for name, value in overrides.items():
        setattr(config, name, value)
    return Segmenter(config)


def block_scene(seed: int):
    """A 64x96 image of four coloured blocks and its mask."""
    rng = np.random.default_rng(seed)
    classes = rng.permutation(len(NAMES))
    mask = np.zeros((64, 96), np.int64)
    mask[:32, 48:], mask[32:, :40], mask[32:, 40:] = classes[1], classes[2], classes[3]
    mask[:32, :48] = classes[0]
    image = np.array(list(PALETTE.values()), np.uint8)[mask]
    return image, mask


@pytest.fixture()
def block_dataset(tmp_path):
    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
    for index in range(3):
        image, mask = block_scene(index)
        Image.fromarray(image).save(tmp_path / "images" / f"b{index}.png")
        Image.fromarray(mask.astype(np.uint8)).save(tmp_path / "masks" / f"b{index}.png")
    (tmp_path / "labels.txt").write_text("\n".join(NAMES) + "\n")
    return tmp_path


# ------------------------------------------------------------------- scoring
def test_perfect_predictions_give_miou_one():
    masks = [generate_scene(scene_rng(5, i), (48, 64))[1] for i in range(4)]
    summary = evaluate_predictions(((mask, mask) for mask in masks), SCENE_CLASSES)
    assert summary["miou"] == 1.0 and summary["pixel_accuracy"] == 1.0
    assert summary["images"] == 4 and summary["pixels"] == 4 * 48 * 64


def test_known_confusion_gives_the_hand_computed_scores():
    target = np.array([[0, 0, 255], [1, 1, 255]])
    prediction = np.array([[0, 1, 0], [1, 1, 0]])
    summary = evaluate_predictions([(prediction, target)], ["a", "b"])
    # a: 1 hit, 2 targets, 1 prediction -> 1/2; b: 2 hits, 2 targets, 3 predictions -> 2/3
    assert summary["per_class_iou"] == {"a": pytest.approx(1 / 2), "b": pytest.approx(2 / 3)}
    assert summary["miou"] == pytest.approx(7 / 12)
    assert summary["pixel_accuracy"] == pytest.approx(3 / 4)


def test_unseen_split_reports_seen_unseen_and_harmonic_miou():
    target = np.array([[0, 1, 2, 2]])
    prediction = np.array([[0, 1, 2, 1]])
    summary = evaluate_predictions([(prediction, target)], ["a", "b", "c"], unseen=["c"])
    assert summary["miou_seen"] == pytest.approx((1 + 1 / 2) / 2)
    assert summary["miou_unseen"] == pytest.approx(1 / 2)
    assert summary["hiou"] == pytest.approx(2 * 0.75 * 0.5 / 1.25)


def test_unknown_unseen_name_is_rejected():
    with pytest.raises(ValueError, match="'sofa'"):
        evaluate_predictions([(np.zeros((2, 2), int), np.zeros((2, 2), int))], ["a"], unseen=["sofa"])


# ------------------------------------------------------------------ inference
def test_oracle_backend_scores_miou_one_on_a_dataset(block_dataset):
    dataset = build_dataset("generic", block_dataset)
    summary = evaluate_segmenter(oracle_segmenter(), dataset)
    assert summary["miou"] == 1.0 and summary["images"] == 3


def test_flip_of_a_per_pixel_predictor_equals_single_view():
    segmenter = oracle_segmenter()
    image, _ = block_scene(0)
    single = predict_probabilities(segmenter, image)
    flipped = predict_probabilities(segmenter, image, flip=True)
    torch.testing.assert_close(flipped, single, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(single.argmax(0).numpy(), segmenter.segment(image).mask)


def test_sliding_window_of_a_per_pixel_predictor_equals_whole_image():
    segmenter = oracle_segmenter(short_side=128, max_long_side=192)
    image, _ = block_scene(1)
    whole = predict_probabilities(segmenter, image)
    windowed = predict_probabilities(segmenter, image, window=64, stride=48)
    torch.testing.assert_close(windowed, whole, atol=1e-5, rtol=0)


def test_multi_scale_of_a_scale_invariant_predictor_equals_single_scale(block_dataset):
    segmenter = oracle_segmenter()
    dataset = build_dataset("generic", block_dataset)
    for index in range(len(dataset)):
        image, target = dataset.load(index)
        single = predict_mask(segmenter, image)
        multi = predict_mask(segmenter, image, scales=LSEG_SCALES, flip=True)
        # resampling blends colours only next to block edges
        edges = np.zeros_like(target, bool)
        edges[:, 36:52] = edges[28:36, :] = True
        np.testing.assert_array_equal(multi[~edges], single[~edges])
        assert (multi == single).mean() > 0.98
    single_miou = evaluate_segmenter(segmenter, dataset)["miou"]
    multi_miou = evaluate_segmenter(segmenter, dataset, scales=LSEG_SCALES, flip=True)["miou"]
    assert multi_miou == pytest.approx(single_miou, abs=0.03)


# ------------------------------------------------------------------------ CLI
def test_command_line_writes_metrics_report_chart_and_overlays(block_dataset, tmp_path):
    out = tmp_path / "eval"
    code = main(["--dataset", "generic", "--root", str(block_dataset), "--split", "all", "--out", str(out),
                 "--backend", "color_oracle_for_tests", "--model", "oracle", "--pretrained", "random",
                 "--device", TEST_DEVICE, "--short_side", "64", "--max_long_side", "96", "--overlays", "2",
                 "--unseen", "white"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["miou"] == 1.0 and metrics["miou_unseen"] == 1.0
    report = (out / "report.md").read_text()
    assert "| red | 1.0000 |" in report and "white (unseen)" in report
    assert (out / "per_class_iou.png").stat().st_size > 0
    assert len(list(out.glob("overlay_*.png"))) == 2


def test_command_line_rejects_a_label_count_mismatch(block_dataset, tmp_path, capsys):
    code = main(["--root", str(block_dataset), "--split", "all", "--out", str(tmp_path), "--label-names", "a,b",
                 "--backend", "color_oracle_for_tests", "--pretrained", "random", "--device", TEST_DEVICE])
    assert code == 2 and "2 names for 4 classes" in capsys.readouterr().err


def test_lseg_multiscale_protocol_pads_windows_and_sums_as_lang_seg():
    """One scale of lang-seg's MultiEvalModule written out for a 64x100 image, base 96, crop
    64: long side 96 > crop -> padded to 64 rows, windows 64 wide every 42 columns (the last
    one padded, not shifted), averaged, cut, resized back with align_corners=True; plus the
    mirrored input's logits."""
    import torch.nn.functional as F

    from lseg_ros.config import SegmenterConfig
    from lseg_ros.evaluate import lseg_multiscale_logits
    from lseg_ros.preprocess import to_model_input
    from lseg_ros.segmenter import Segmenter

    torch.manual_seed(0)
    segmenter = Segmenter(SegmenterConfig(backend="lseg", model="lseg_tiny", pretrained="random", device=TEST_DEVICE,
                                          labels=["wall", "floor", "sky"]))
    image = np.random.default_rng(2).integers(0, 256, (64, 100, 3), dtype=np.uint8)
    x = to_model_input([image], (64, 100), (0.5,) * 3, (0.5,) * 3, torch.device(TEST_DEVICE), torch.float32)
    text = segmenter.backend.encode_text(segmenter.backend.tokenize(segmenter.labels))

    def net(img):
        with torch.no_grad():
            out = segmenter.backend.net.label_logits(img, text)
            return out + segmenter.backend.net.label_logits(img.flip(-1), text).flip(-1)

    rows, cols = int(64 * 96 / 100 + 0.5), 96  # 61 x 96
    current = F.interpolate(x, size=(rows, cols), mode="bilinear", align_corners=True)
    padded = torch.full((1, 3, 64, 96), -1.0)  # black after normalization
    padded[..., :rows, :cols] = current
    total, count = torch.zeros(1, 3, 64, 96), torch.zeros(1, 1, 64, 96)
    for w0 in (0, 42):  # ceil((96 - 64) / 42) + 1 = 2 windows
        w1 = min(w0 + 64, 96)
        window = torch.full((1, 3, 64, 64), -1.0)
        window[..., :, :w1 - w0] = padded[..., :, w0:w1]
        total[..., :, w0:w1] += net(window)[..., :, :w1 - w0]
        count[..., :, w0:w1] += 1
    expected = F.interpolate((total / count)[..., :rows, :cols], size=(64, 100), mode="bilinear",
                             align_corners=True)[0]
    actual = lseg_multiscale_logits(segmenter, image, scales=(1.0,), flip=True, base_size=96, crop_size=64)
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-4)


def test_lseg_eval_runs_a_papers_protocol_with_its_dataset_settings_and_names(tmp_path):
    import json

    from helpers import voc_layout

    from lseg_ros.evaluate import main

    root = voc_layout(tmp_path / "voc")
    out = tmp_path / "out"
    code = main(["--dataset", "voc", "--root", str(root), "--out", str(out), "--profile", "naclip",
                 "--model", "lseg-test-tiny-ViT", "--pretrained", "random", "--device", TEST_DEVICE, "--short-side", "48"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    config = metrics["config"]
    assert (config["profile"], config["threshold"], config["threshold_label"], config["dense_clip.window"]) == \
        ("naclip", 0.1, 0, 0)  # NACLIP's cfg_voc21.py on top of the profile
    assert (config["short_side"], config["postprocess.pamr_iters"]) == (48, 10)  # explicit value wins
    assert "profile naclip (sinahmr/NACLIP@" in metrics["inference"]


@pytest.mark.parametrize("protocol, backend, model", [("single", "dense_clip", "lseg-test-tiny-ViT"),
                                                      ("lseg_multiscale", "lseg", "lseg_tiny")])
def test_multi_view_predictions_with_synonyms_are_label_indices_as_segment_gives_them(protocol, backend, model):
    """With synonyms the network scores names; every prediction path must return labels."""
    from lseg_ros.evaluate import predict_probabilities

    torch.manual_seed(0)
    labels = ["background; sky; wall; floor; ceiling", "person; man", "door"]
    segmenter = Segmenter(SegmenterConfig(backend=backend, model=model, pretrained="random", device=TEST_DEVICE,
                                          short_side=64, max_long_side=96, labels=labels))
    image = np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    single = segmenter.segment(image)
    if protocol == "single":
        from lseg_ros.evaluate import window_logits
        from lseg_ros.label_maps import resize_logits

        probabilities = predict_probabilities(segmenter, image, scales=(1.0,))
        x = segmenter.model_input([image])
        with torch.inference_mode():
            names = resize_logits(window_logits(segmenter, x), (48, 64))[0].softmax(0)  # [5 + 2 + 1 names, H, W]
        expected = torch.stack([names[:5].max(0).values, names[5:7].max(0).values, names[7]])  # best name per label
        torch.testing.assert_close(probabilities, expected, rtol=0, atol=1e-6)
        assert (probabilities.argmax(0).numpy() == single.mask).mean() > 0.99
        assert predict_probabilities(segmenter, image, scales=(1.0, 0.75), flip=True).shape == (3, 48, 64)
        mask = predict_mask(segmenter, image, scales=(1.0, 0.75), flip=True)
    else:
        mask = predict_mask(segmenter, image, scales=(1.0,), flip=True, protocol=protocol)
    assert mask.shape == (48, 64) and mask.max() < len(labels)


def test_evaluation_and_training_logits_run_the_configured_image_side(train_scenes, tmp_path):
    """predict_probabilities and Trainer.logits take their logits from Segmenter.input_logits,
    which calls image_forward (what compile, quantize or an exported runtime replace)."""
    from helpers import tiny_train_config
    from lseg_ros.train import Trainer

    segmenter = Segmenter(SegmenterConfig(backend="dense_clip", model="lseg-test-tiny-ViT", pretrained="random",
                                          device=TEST_DEVICE, short_side=48, max_long_side=64, labels=["a", "b"]))
    trainer = Trainer(tiny_train_config(train_scenes, tmp_path, val_split=""))
    for engine in (segmenter, trainer.segmenter):
        calls = []
        real = engine.image_forward
        engine.image_forward = lambda x, real=real, calls=calls: calls.append(tuple(x.shape)) or real(x)
        if engine is segmenter:
            image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
            predict_probabilities(segmenter, image)
        else:
            trainer.logits(torch.rand(2, 3, 32, 32, device=trainer.device))
        assert calls, engine.config.backend

