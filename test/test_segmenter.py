"""Segmenter behaviour, checked against plain reference computations on a small fake backend."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lseg_ros.config import SegmenterConfig
from lseg_ros.models.base import SegmentationBackend, register_backend
from lseg_ros.segmenter import Segmenter, parse_label_text

from helpers import TEST_DEVICE

EMBED_DIM = 8


class FakeBackend(SegmentationBackend):
    """Patch-16 average pooling + 1x1 conv; text = bag of character embeddings."""

    backend_name = "fake"
    input_multiple = 16
    default_logit_scale = 10.0
    default_prompt_templates = "none"

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.proj = torch.nn.Conv2d(3, EMBED_DIM, 1)
        self.chars = torch.nn.Embedding(256, EMBED_DIM)
        self.description = "fake"
        self.text_model_id = "fake"

    def tokenize(self, texts):
        ids = torch.zeros(len(texts), 32, dtype=torch.long)
        for row, text in enumerate(texts):
            codes = [min(ord(c), 255) for c in text[:32]]
            ids[row, :len(codes)] = torch.tensor(codes)
        return ids

    def encode_text(self, token_ids):
        return self.chars(token_ids).sum(1)

    def forward(self, images):
        return self.proj(F.avg_pool2d(images, 16))  # [B, D, H/16, W/16]


register_backend("fake_for_tests")(lambda config: FakeBackend())


def make_segmenter(**overrides) -> Segmenter:
    config = SegmenterConfig(backend="fake_for_tests", model="fake", pretrained="random", device=TEST_DEVICE,
                             short_side=64, max_long_side=128, labels=["floor", "wall", "door"])
    for name, value in overrides.items():
        setattr(config, name, value)
    return Segmenter(config)


def random_image(height=48, width=80, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def reference_logits(segmenter, image):
    """Plain computation: resize, normalize, backend, cosine * scale, upsample."""
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    x = F.interpolate(x, size=(64, 112), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(segmenter.backend.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(segmenter.backend.image_std).view(1, 3, 1, 1)
    with torch.no_grad():
        pixel = F.normalize(segmenter.backend((x - mean) / std), dim=1)
        text = F.normalize(segmenter.backend.encode_text(segmenter.backend.tokenize(segmenter.label_set.query_names)),
                           dim=1)
    logits = torch.einsum("bdhw,nd->bnhw", pixel, text) * segmenter.logit_scale
    return F.interpolate(logits, size=image.shape[:2], mode="bilinear", align_corners=False)[0]


def test_mask_and_confidences_match_reference_computation():
    segmenter = make_segmenter()
    image = random_image()
    result = segmenter.segment(image)
    logits = reference_logits(segmenter, image)
    assert result.mask.shape == (48, 80) and result.mask.dtype == np.uint8
    assert result.confidences.shape == (3, 48, 80) and result.confidences.dtype == np.float32
    np.testing.assert_allclose(result.confidences, logits.softmax(0).numpy(), atol=1e-5)
    assert (result.mask == logits.argmax(0).numpy()).mean() > 0.999
    assert result.labels == ["floor", "wall", "door"]


def test_confidences_sum_to_one_per_pixel():
    result = make_segmenter().segment(random_image())
    np.testing.assert_allclose(result.confidences.sum(0), 1.0, atol=1e-5)


def test_mask_without_confidences_equals_mask_with_them():
    segmenter = make_segmenter()
    image = random_image(seed=3)
    plain = segmenter.segment(image, return_confidences=False)
    assert plain.confidences is None
    np.testing.assert_array_equal(plain.mask, segmenter.segment(image).mask)


def test_model_input_follows_short_side_and_multiple():
    from lseg_ros.preprocess import model_input_size
    assert model_input_size(480, 640, 448, 896, 16) == (448, 592)
    assert model_input_size(100, 1000, 448, 896, 16) == (96, 896)  # long side capped
    assert model_input_size(640, 480, 448, 896, 14) == (602, 448)


def test_output_size_overrides_input_size():
    segmenter = make_segmenter(output_height=24, output_width=40)
    result = segmenter.segment(random_image())
    assert result.mask.shape == (24, 40) and result.confidences.shape == (3, 24, 40)


def test_default_threshold_marks_low_confidence_pixels_unknown():
    segmenter = make_segmenter(threshold=0.999, unknown_value=200)
    result = segmenter.segment(random_image())
    low = result.confidences.max(0) < 0.999
    assert low.any()
    assert np.all(result.mask[low] == 200)
    assert np.all(result.mask[~low] < 3)


def test_per_label_thresholds_apply_to_their_label_only():
    segmenter = make_segmenter()
    image = random_image()
    base = segmenter.segment(image)
    segmenter.set_labels(["floor", "wall", "door"], thresholds=[1.0, float("nan"), 0.0])
    result = segmenter.segment(image)
    was_floor = base.mask == 0
    assert np.all(result.mask[was_floor] == segmenter.config.unknown_value)
    np.testing.assert_array_equal(result.mask[~was_floor], base.mask[~was_floor])


def test_batch_gives_same_results_as_single_images():
    segmenter = make_segmenter()
    images = np.stack([random_image(seed=1), random_image(seed=2)])
    batch = segmenter.segment(images)
    assert isinstance(batch, list) and len(batch) == 2
    for image, result in zip(images, batch):
        single = segmenter.segment(image)
        np.testing.assert_allclose(result.confidences, single.confidences, atol=1e-5)


def test_batch_of_different_sizes_is_segmented_per_image():
    segmenter = make_segmenter()
    results = segmenter.segment([random_image(48, 80), random_image(64, 64)])
    assert [r.mask.shape for r in results] == [(48, 80), (64, 64)]


def test_timings_report_each_stage():
    result = make_segmenter().segment(random_image())
    assert set(result.timings) == {"preprocess", "backbone", "classify", "postprocess", "total"}
    assert all(value >= 0 for value in result.timings.values())


def test_grayscale_and_rgba_images_are_accepted():
    segmenter = make_segmenter()
    rgb = random_image()
    gray = rgb[:, :, 0]
    expected = segmenter.segment(np.repeat(gray[:, :, None], 3, axis=2)).mask
    np.testing.assert_array_equal(segmenter.segment(gray).mask, expected)
    np.testing.assert_array_equal(segmenter.segment(gray[:, :, None]).mask, expected)
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 7, np.uint8)], axis=2)
    np.testing.assert_array_equal(segmenter.segment(rgba).mask, segmenter.segment(rgb).mask)


@pytest.mark.parametrize("image, message", [
    (np.zeros((8, 8, 3), np.float32), "uint8"),
    (np.zeros((8, 8, 2), np.uint8), "HxWx3"),
    (np.zeros((0, 8, 3), np.uint8), "zero size"),
    (np.zeros((2, 3, 8, 8, 3), np.uint8), "HxWx3"),
    ("not an image", "numpy array"),
])
def test_bad_images_are_rejected_with_the_bad_value_named(image, message):
    with pytest.raises(ValueError, match=message):
        make_segmenter().segment(image)


@pytest.mark.parametrize("labels, message", [
    ([], "empty label list"),
    (["door", "door"], "duplicate label 'door'"),
    (["door", "  "], "empty label name"),
    (["x" * 2000], "2000 characters"),
    (["label%d" % i for i in range(2000)], "2000 labels"),
    ("door, chair", "parse_label_text"),
])
def test_bad_label_sets_are_rejected_and_keep_the_previous_set(labels, message):
    segmenter = make_segmenter()
    with pytest.raises(ValueError, match=message):
        segmenter.set_labels(labels)
    assert segmenter.labels == ["floor", "wall", "door"]


def test_label_count_colliding_with_unknown_value_is_rejected():
    segmenter = make_segmenter(unknown_value=2, labels=["a", "b"])
    with pytest.raises(ValueError, match="unknown_value 2"):
        segmenter.set_labels(["a", "b", "c"])


def test_more_than_255_labels_give_a_16_bit_mask():
    segmenter = make_segmenter(unknown_value=65535)
    segmenter.set_labels([f"label {i}" for i in range(300)])
    result = segmenter.segment(random_image(), return_confidences=False)
    assert result.mask.dtype == np.uint16 and result.mask.max() < 300


def test_known_labels_cost_no_text_forward():
    segmenter = make_segmenter()
    encoder = segmenter.label_encoder
    before = encoder.forward_count
    segmenter.set_labels(["door", "floor"])
    segmenter.set_labels(["wall"])
    assert encoder.forward_count == before
    segmenter.set_labels(["chair", "door"])
    assert encoder.forward_count == before + 1
    for _ in range(3):
        segmenter.segment(random_image())
    assert encoder.forward_count == before + 1


def test_label_embeddings_are_normalized_and_descriptions_change_them():
    segmenter = make_segmenter()
    plain = segmenter.label_encoder.encode(["door"])
    described = segmenter.label_encoder.encode(["door"], [["a wooden door with a handle"]])
    assert plain.shape == (1, EMBED_DIM)
    assert torch.allclose(plain.norm(dim=-1), torch.ones(1), atol=1e-5)
    assert torch.allclose(described.norm(dim=-1), torch.ones(1), atol=1e-5)
    assert not torch.allclose(plain, described)


def test_description_pooling_mean_and_max_follow_their_definitions():
    segmenter = make_segmenter()
    backend = segmenter.backend
    phrases = ["door", "a glass door", "a wooden door"]
    with torch.no_grad():
        phrase_embeddings = F.normalize(backend.encode_text(backend.tokenize(phrases)), dim=-1)
    for pooling, pooled in (("mean", phrase_embeddings.mean(0)), ("max", phrase_embeddings.max(0).values)):
        segmenter = make_segmenter(description_pooling=pooling)
        encoded = segmenter.label_encoder.encode(["door"], [phrases[1:]])[0]
        assert torch.allclose(encoded, F.normalize(pooled, dim=0), atol=1e-5)


def test_clustering_limits_distinct_pixel_classes():
    segmenter = make_segmenter()
    segmenter.config.postprocess.cluster_k = 2
    image = random_image(64, 128)
    from lseg_ros.preprocess import to_model_input
    x = to_model_input([image], (64, 128), segmenter.backend.image_mean, segmenter.backend.image_std,
                       torch.device(TEST_DEVICE), torch.float32)
    with torch.inference_mode():
        logits = segmenter.classify(segmenter.backend(x), segmenter.label_set.label_embeddings)
    distinct = torch.unique(logits[0].flatten(1).T, dim=0)
    assert len(distinct) <= 2


def test_pamr_keeps_probabilities_normalized_and_smooths_uniform_regions():
    from lseg_ros.postprocess import pamr
    image = torch.zeros(1, 3, 16, 16)
    image[..., 8:] = 1.0  # two flat halves
    probabilities = torch.rand(1, 3, 16, 16).softmax(1)
    refined = pamr(image, probabilities, iterations=20)
    torch.testing.assert_close(refined.sum(1), torch.ones(1, 16, 16), atol=1e-4, rtol=0)
    assert refined[..., :, 2:6].std() < probabilities[..., :, 2:6].std()


def test_fp16_on_cpu_is_rejected_clearly():
    with pytest.raises(ValueError, match="fp16"):
        make_segmenter(precision="fp16", device="cpu")


def test_parse_label_text_splits_commas_and_strips():
    assert parse_label_text(" door, chair ,floor\n wall\n") == ["door", "chair", "floor", "wall"]
    assert parse_label_text(" , ") == []
    # ';' separates synonyms of one label
    assert parse_label_text("person ;man;; woman, car") == ["person; man; woman", "car"]


def test_label_cache_is_bounded_keeps_recent_labels_and_serves_requests_larger_than_itself():
    segmenter = make_segmenter()
    encoder = segmenter.label_encoder
    encoder.max_cache_entries = 4
    encoder.clear()
    big = [f"thing {i}" for i in range(6)]
    assert encoder.encode(big).shape == (6, EMBED_DIM)  # larger than the cache: still served
    encoder.encode(["door"])
    encoder.encode(["wall"])
    encoder.encode(["door"])  # door is now the most recently used
    for label in ("a", "b", "c"):
        encoder.encode([label])
    assert len(encoder) == 4
    assert encoder.is_cached("door") and not encoder.is_cached("wall")


def test_descriptions_given_as_plain_strings_are_rejected():
    with pytest.raises(ValueError, match="one list of strings per label"):
        make_segmenter().set_labels(["door", "chair"], descriptions=["wooden", "plastic"])


def test_numpy_nan_threshold_means_the_default():
    segmenter = make_segmenter(threshold=0.25)
    segmenter.set_labels(["floor", "wall", "door"], thresholds=[np.float32("nan"), np.float64(0.5), None])
    assert segmenter.label_set.thresholds.tolist() == [0.25, 0.5, 0.25]


def test_pamr_runs_at_model_input_resolution():
    segmenter = make_segmenter()
    segmenter.config.postprocess.pamr_iters = 3
    from lseg_ros.preprocess import to_model_input
    x = to_model_input([random_image(64, 128)], (64, 128), segmenter.backend.image_mean,
                       segmenter.backend.image_std, torch.device(TEST_DEVICE), torch.float32)
    with torch.inference_mode():
        logits = segmenter.classify(segmenter.backend(x), segmenter.label_set.label_embeddings, x)
    assert logits.shape == (1, 3, 64, 128)
    assert segmenter.segment(random_image(48, 80)).mask.shape == (48, 80)


@pytest.mark.parametrize("backend, model, extra", [
    ("dense_clip", "lseg-test-tiny-ViT", {}),
    ("lseg", "lseg_tiny", {}),
    ("lseg", "lseg_tiny", {"arch_option": 1, "block_depth": 2}),
])
def test_bf16_precision_runs_every_backend_with_float32_outputs(backend, model, extra):
    config = SegmenterConfig(backend=backend, model=model, pretrained="random", device=TEST_DEVICE, precision="bf16",
                             short_side=64, labels=["floor", "wall", "door"])
    for name, value in extra.items():
        setattr(config.lseg, name, value)
    result = Segmenter(config).segment(random_image())
    assert result.confidences.dtype == np.float32 and np.isfinite(result.confidences).all()
    np.testing.assert_allclose(result.confidences.sum(0), 1.0, atol=1e-4)
    assert result.mask.shape == (48, 80)


def test_mask_only_path_with_many_labels_and_thresholds_equals_the_full_softmax_path():
    segmenter = Segmenter(SegmenterConfig(model="lseg-test-tiny-ViT", pretrained="random", device=TEST_DEVICE,
                                          short_side=64, unknown_value=65535, labels=[]))
    labels = ["".join(chr(97 + (i * 7 + k * 3) % 26) for k in range(1 + i % 6)) + str(i) for i in range(40)]
    segmenter.set_labels(labels)  # several chunks of labels
    image = random_image(seed=5)
    plain = segmenter.segment(image, return_confidences=True)
    assert len(np.unique(plain.mask)) > 2
    cut = float(np.median(plain.confidences.max(0)))
    segmenter.set_labels(labels, thresholds=[cut] * 40)
    full = segmenter.segment(image, return_confidences=True)
    streamed = segmenter.segment(image, return_confidences=False)
    assert (full.mask == 65535).any() and (full.mask != 65535).any()
    assert (streamed.mask == full.mask).mean() > 0.999  # ties at float precision may differ


@pytest.mark.parametrize("label, problem", [
    ("\u200b", "no visible characters"),
    ("\u200b\u200d \ufeff", "no visible characters"),
    ("\u202eevil\u202c", "bidirectional control character U+202E"),
    ("door\x1b[31m", "control character U+001B"),
    ("door\nchair", "control character U+000A"),
    ("\u3164", "no visible characters"),
    ("door\U000e0041", "format character U+E0041"),
])
def test_invisible_and_control_character_labels_are_rejected(label, problem):
    segmenter = make_segmenter()
    with pytest.raises(ValueError, match=problem.replace("+", r"\+")):
        segmenter.set_labels(["floor", label])
    with pytest.raises(ValueError, match=problem.replace("+", r"\+")):
        segmenter.set_labels(["floor"], descriptions=[[label]])
    assert segmenter.labels == ["floor", "wall", "door"]


def test_visible_unicode_labels_are_accepted():
    segmenter = make_segmenter()
    assert segmenter.set_labels(["Tür", "椅子", "family 👨\u200d👩\u200d👧"]) == ["Tür", "椅子", "family 👨\u200d👩\u200d👧"]


@pytest.mark.parametrize("labels", [["x" * 10000], ["door", "door" + "y" * 10000, "door" + "y" * 10000],
                                    ["a"] * 3 + [""] + ["z" * 5000] * 3])
def test_errors_quote_at_most_a_short_excerpt_of_bad_labels(labels):
    with pytest.raises(ValueError) as error:
        make_segmenter().set_labels(labels)
    assert len(str(error.value)) < 400


def test_label_sets_get_increasing_generations_and_results_name_theirs():
    segmenter = make_segmenter()
    first = segmenter.label_set.generation
    prepared = segmenter.prepare_labels(["sofa", "lamp"])
    assert prepared.generation == 0 and segmenter.labels == ["floor", "wall", "door"]  # not in use yet
    assert segmenter.segment(random_image()).generation == first
    generation = segmenter.use_labels(prepared)
    assert generation > first and segmenter.label_set.generation == generation
    result = segmenter.segment(random_image())
    assert result.generation == generation and result.labels == ["sofa", "lamp"]
    assert segmenter.use_labels(None) > generation and segmenter.label_set is None


# ------------------------------------------------------ synonyms and background
def sclip_postprocess(seg_logits, query_idx, logit_scale, prob_thd, area_thd=None):
    """SCLIP's ``postprocess_result`` (clip_segmentor.py, wangf3014/SCLIP@b56bd30) written out
    for one image: softmax over every name, max over each class's names, the area filter
    (classes other than 0), then pixels below prob_thd -> 0."""
    probs = (seg_logits * logit_scale).softmax(0)  # [M, H, W]
    num_cls = int(max(query_idx)) + 1
    if num_cls != len(query_idx):
        cls_index = F.one_hot(torch.tensor(query_idx)).T.view(num_cls, len(query_idx), 1, 1)
        probs = (probs.unsqueeze(0) * cls_index).max(1)[0]
    if area_thd is not None:
        predictions = F.one_hot(probs.argmax(0), num_cls).to(probs.dtype)
        area_pred = predictions[:, :, 1:].sum((0, 1), keepdim=True)
        area_pred = (area_pred > area_thd * area_pred.sum()).to(probs.dtype)
        probs[1:] *= area_pred.transpose(0, -1)
    pred = probs.argmax(0)
    pred[probs.max(0)[0] < prob_thd] = 0
    return probs, pred


SYNONYM_LABELS = ["background; sky; wall", "person; man; woman", "door", "chair; stool"]
QUERY_IDX = [0, 0, 0, 1, 1, 1, 2, 3, 3]


@pytest.mark.parametrize("threshold, area", [(0.0, 0.0), (0.2, 0.0), (0.2, 0.2), (0.0, 0.3)])
def test_synonyms_background_and_area_filter_follow_sclip(threshold, area):
    segmenter = make_segmenter(threshold=threshold, threshold_label=0, area_threshold=area)
    segmenter.set_labels(SYNONYM_LABELS)
    assert segmenter.labels == SYNONYM_LABELS and segmenter.label_set.name_groups.tolist() == QUERY_IDX
    image = random_image(seed=11)
    logits = reference_logits(segmenter, image)  # [9 names, H, W], already x logit_scale
    probs, pred = sclip_postprocess(logits, QUERY_IDX, 1.0, threshold, area or None)
    result = segmenter.segment(image)
    assert result.confidences.shape == (4, 48, 80)
    np.testing.assert_allclose(result.confidences, probs.numpy(), atol=1e-5)
    assert (result.mask == pred.numpy()).mean() > 0.999
    assert (segmenter.segment(image, return_confidences=False).mask == result.mask).all()
    if threshold:
        assert (pred == 0).any()


def test_area_filter_drops_small_labels_to_their_next_best():
    segmenter = make_segmenter(area_threshold=0.3, threshold_label=0)
    segmenter.set_labels(SYNONYM_LABELS)
    image = random_image(seed=11)
    plain = make_segmenter()
    plain.set_labels(SYNONYM_LABELS)
    before, after = plain.segment(image).mask, segmenter.segment(image).mask
    counts = np.bincount(before.ravel(), minlength=4)
    small = [label for label in range(1, 4) if counts[label] <= 0.3 * counts[1:].sum()]
    assert small and not np.isin(after, small).any()
    kept = np.isin(before, [0] + [label for label in range(1, 4) if label not in small])
    assert (after[kept] == before[kept]).all()


def test_below_threshold_pixels_take_the_chosen_label_or_unknown_value():
    image = random_image(seed=12)
    unknown = make_segmenter(threshold=0.6).segment(image).mask
    background = make_segmenter(threshold=0.6, threshold_label=2).segment(image).mask
    assert (unknown == 255).any()
    np.testing.assert_array_equal(background, np.where(unknown == 255, 2, unknown))


def test_threshold_label_outside_the_label_set_is_refused_naming_it():
    segmenter = make_segmenter(threshold_label=2)
    with pytest.raises(ValueError, match="threshold_label 2 is not a label index.*2 labels"):
        segmenter.set_labels(["floor", "wall"])
    assert segmenter.labels == ["floor", "wall", "door"]


@pytest.mark.parametrize("labels, message", [
    (["person; ; man"], "empty name between its ';'"),
    (["person; man", "person;man"], "duplicate label 'person; man'.*labels 0 and 1"),
    (["chair; stool; chair"], "lists 'chair' twice"),
])
def test_bad_synonyms_are_refused_naming_them(labels, message):
    with pytest.raises(ValueError, match=message):
        make_segmenter().set_labels(labels)


def test_a_name_shared_by_two_labels_counts_for_both_and_ties_go_to_the_first():
    segmenter = make_segmenter()
    segmenter.set_labels(["background; floor; wall", "floor", "door"])  # as SCLIP's COCO-Object 'bed'
    image = random_image(seed=13)
    result = segmenter.segment(image)
    np.testing.assert_array_equal(result.confidences[0] >= result.confidences[1], True)
    assert not (result.mask == 1).any()  # 'floor' alone never beats the background that holds it


def test_synonyms_given_as_lists_become_the_text_form_and_share_the_cache():
    segmenter = make_segmenter()
    assert segmenter.set_labels([["person", "man"], " door "]) == ["person; man", "door"]
    forwards = segmenter.label_encoder.forward_count
    segmenter.set_labels(["man", "person;man", "door"][1:])  # every name already encoded
    assert segmenter.label_encoder.forward_count == forwards


# ----------------------------------------------------------- embeddings for open-vocabulary maps
@pytest.mark.parametrize("window", [0, 64])
def test_embeddings_times_text_embeddings_give_the_label_logits(window):
    """A map built from result.embeddings and queried with encode_texts gets the logits the
    segmenter classified with (before upsampling): logit_scale * cosine."""
    config = SegmenterConfig(model="lseg-test-tiny-ViT", pretrained="random", device=TEST_DEVICE, short_side=64,
                             max_long_side=128, labels=["door", "chair", "floor"])
    config.dense_clip.window, config.dense_clip.stride = window, 32
    segmenter = Segmenter(config)
    image = random_image(64, 112, seed=3)
    result = segmenter.segment(image, return_embeddings=True)
    x = segmenter.model_input([image])
    if window:
        logits, grid = segmenter.sliding_window_logits(x, segmenter.label_set.label_embeddings, 64, 32, [])
        reference = torch.einsum("bdhw,nd->bnhw", F.normalize(grid, dim=1), segmenter.label_set.label_embeddings)
    else:
        logits = segmenter.classify(segmenter.backend(x), segmenter.label_set.label_embeddings, x)
        reference = logits / segmenter.logit_scale
    embeddings = result.embeddings
    assert embeddings.dtype == np.float16 and embeddings.shape == (64 // 16, 112 // 16, 32)
    np.testing.assert_allclose(np.linalg.norm(embeddings.astype(np.float32), axis=-1), 1.0, atol=2e-3)
    assert result.embedding_scale == (112 / 7, 64 / 4)
    text = segmenter.encode_texts(["door", "chair", "floor"]).numpy()
    cosine = np.einsum("hwd,nd->nhw", embeddings.astype(np.float32), text)
    np.testing.assert_allclose(cosine, reference[0].numpy(), atol=2e-3)  # float16 storage
    if not window:  # the logits themselves: the mask came from these
        np.testing.assert_allclose(cosine * segmenter.logit_scale, logits[0].numpy(), atol=0.2)
    no_embeddings = segmenter.segment(image)
    assert no_embeddings.embeddings is None and (no_embeddings.mask == result.mask).all()


def test_encode_texts_is_the_label_cache_and_refuses_bad_texts():
    segmenter = Segmenter(SegmenterConfig(model="lseg-test-tiny-ViT", pretrained="random", device=TEST_DEVICE,
                                          short_side=64, labels=["door", "chair"]))
    forwards = segmenter.label_encoder.forward_count
    door = segmenter.encode_texts(["door"])
    assert segmenter.label_encoder.forward_count == forwards  # cached with the labels
    torch.testing.assert_close(door[0], segmenter.label_set.label_embeddings[0])
    torch.testing.assert_close(segmenter.encode_texts([" glass door "]).norm(dim=-1), torch.ones(1))
    for texts, message in ((["door", ""], "empty text at position 1"), ([], "no texts"), ("door", "list of strings"),
                           (["a\x00b"], "position 0"), (["x" * 300], "300 characters")):
        with pytest.raises(ValueError, match=message):
            segmenter.encode_texts(texts)


def test_encode_texts_over_the_prompt_limit_is_refused_before_any_forward_naming_counts():
    segmenter = make_segmenter(prompt_templates="imagenet")  # 80 templates per text
    forwards = segmenter.label_encoder.forward_count
    texts = [f"{i} " + "x" * 245 for i in range(4096)]  # 4096 texts of ~250 characters
    with pytest.raises(ValueError, match=r"4096 texts need 327680 text prompts \(80 templates \(imagenet\) each.*"
                                         r"at most 8192 are accepted per call"):
        segmenter.encode_texts(texts)
    assert segmenter.label_encoder.forward_count == forwards and len(segmenter.label_encoder) == 3
    assert segmenter.encode_texts(texts[:102]).shape[0] == 102  # 8160 prompts: within the limit
    segmenter.max_text_prompts = 100  # the node may set its own limit
    with pytest.raises(ValueError, match=r"2 texts need 160 text prompts .* at most 100 are accepted"):
        segmenter.encode_texts(texts[:2])


def test_a_label_set_over_the_prompt_limit_is_refused_and_the_active_set_kept():
    segmenter = make_segmenter(prompt_templates="imagenet")
    segmenter.max_label_prompts = 80 * 10
    labels = [f"thing {i}" for i in range(11)]
    with pytest.raises(ValueError, match=r"11 label names need 880 text prompts .* at most 800 are accepted"):
        segmenter.set_labels(labels)
    with pytest.raises(ValueError, match=r"10 label names need 802 text prompts"):  # descriptions count
        segmenter.set_labels(labels[:10], descriptions=[["a red thing", "a round thing"]] + [[]] * 9)
    assert segmenter.labels == ["floor", "wall", "door"]
    assert segmenter.set_labels(labels[:10]) == labels[:10]


def test_large_requests_are_encoded_in_bounded_groups_with_the_same_embeddings():
    whole = make_segmenter(prompt_templates="imagenet")
    grouped = make_segmenter(prompt_templates="imagenet")
    grouped.label_encoder.group_prompts = 200  # 3 labels (240 prompts) per group
    sizes = []
    encode_prompts = grouped.label_encoder._encode_prompts
    grouped.label_encoder._encode_prompts = lambda prompts: sizes.append(len(prompts)) or encode_prompts(prompts)
    texts = [f"object number {i}" for i in range(20)]
    descriptions = [["a tall one"] * (i % 3) for i in range(20)]
    torch.testing.assert_close(grouped.label_encoder.encode(texts, descriptions),
                               whole.label_encoder.encode(texts, descriptions))
    assert sum(sizes) == 20 * 80 + sum(len(d) for d in descriptions) and max(sizes) <= 200 + 80 + 2


def test_limits_passed_at_construction_bound_label_sets_and_texts():
    from lseg_ros.validation import LabelLimits

    segmenter = Segmenter(SegmenterConfig(backend="fake_for_tests", model="fake", pretrained="random",
                                          device=TEST_DEVICE, short_side=64, max_long_side=128, labels=[]),
                          limits=LabelLimits(max_labels=2, max_label_chars=8))
    with pytest.raises(ValueError, match="3 labels requested; at most 2"):
        segmenter.set_labels(["a", "b", "c"])
    with pytest.raises(ValueError, match="at most 8"):
        segmenter.encode_texts(["a long text"])
    assert segmenter.set_labels(["a", "b"]) == ["a", "b"]


def test_set_threshold_applies_to_label_sets_prepared_after_it_and_refuses_out_of_range():
    segmenter = make_segmenter()
    with pytest.raises(ValueError, match="threshold 1.5 out of range"):
        segmenter.set_threshold(1.5)
    segmenter.set_threshold(0.3)
    assert segmenter.prepare_labels(["a", "b"]).thresholds.tolist() == pytest.approx([0.3, 0.3])


def test_stop_encoding_when_stops_a_label_encoding_between_batches():
    segmenter = make_segmenter()
    segmenter.stop_encoding_when(lambda: True)
    with pytest.raises(InterruptedError):
        segmenter.prepare_labels(["never", "encoded"])
    segmenter.stop_encoding_when(lambda: False)
    assert segmenter.prepare_labels(["now", "encoded"]).names == ["now", "encoded"]
