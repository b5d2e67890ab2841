"""Dataset readers on tiny layouts written by the tests themselves."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lseg_ros.data import DatasetError, build_dataset, load_class_names
from lseg_ros.data.transforms import EvalTransform, TrainTransform

from helpers import DATASET_SIZE as SIZE
from helpers import generic_layout, voc_layout, write_image, write_mask, write_split

def test_shipped_class_lists_have_the_standard_lengths_and_order():
    ade, voc, context = (load_class_names(n) for n in ("ade20k", "voc", "pascal_context59"))
    assert (len(ade), len(voc), len(context)) == (150, 21, 59)
    assert ade[:5] == ["wall", "building", "sky", "floor", "tree"] and ade[-1] == "flag"
    assert voc[:3] == ["background", "aeroplane", "bicycle"] and voc[-1] == "tvmonitor"
    assert context[:5] == ["aeroplane", "bag", "bed", "bedclothes", "bench"]
    assert context[-1] == "wood"


def test_ade20k_maps_other_to_ignore_and_shifts_classes_down_by_one(tmp_path):
    values = np.zeros((SIZE, SIZE), np.uint8)
    values[:, 4:] = 1  # wall
    values[0, 0] = 150  # flag
    write_image(tmp_path / "images" / "validation" / "ADE_val_1.jpg")
    write_mask(tmp_path / "annotations" / "validation" / "ADE_val_1.png", values)
    dataset = build_dataset("ade20k", tmp_path, "val")
    sample = dataset[0]
    assert len(dataset.class_names) == 150 and dataset.ignore_index == 255
    assert sample["mask"].dtype == np.int64
    assert sample["mask"][0, 0] == 149 and sample["mask"][0, 1] == 255
    assert (sample["mask"][:, 4:] == 0).all()
    assert sample["image"].shape == (SIZE, SIZE, 3) and sample["image"].dtype == np.uint8
    assert sample["path"].endswith("ADE_val_1.jpg")


def test_voc_reads_palette_indices_and_keeps_255_borders_ignored(tmp_path):
    dataset = build_dataset("voc", voc_layout(tmp_path), "val")
    with Image.open(dataset.samples[0][1]) as stored_mask:
        assert stored_mask.mode == "P"
    mask = dataset[0]["mask"]
    assert len(dataset.class_names) == 21
    assert (mask[0, :] == 255).all() and (mask[:, -1] == 255).all()
    assert mask[1, 1] == 0 and mask[3, 3] == 15


def test_pascal_context59_ignores_background_and_maps_1_to_59_onto_0_to_58(tmp_path):
    values = np.zeros((SIZE, SIZE), np.uint8)
    values[:4] = 1  # aeroplane
    values[7, 7] = 59  # wood
    write_image(tmp_path / "JPEGImages" / "2008_000002.jpg")
    write_mask(tmp_path / "SegmentationClassContext" / "2008_000002.png", values)
    write_split(tmp_path / "ImageSets" / "SegmentationContext" / "val.txt", ["2008_000002"])
    dataset = build_dataset("pascal_context59", tmp_path, "val")
    mask = dataset[0]["mask"]
    assert dataset.class_names[0] == "aeroplane" and len(dataset.class_names) == 59
    assert (mask[:4] == 0).all() and mask[7, 7] == 58 and mask[5, 0] == 255


def test_generic_reads_labels_and_ignore_index_from_dataset_yaml(tmp_path):
    generic_layout(tmp_path)
    (tmp_path / "dataset.yaml").write_text("ignore_index: 250\n")
    dataset = build_dataset("generic", tmp_path)
    assert dataset.class_names == ["floor", "wall", "cup"]
    assert dataset.ignore_index == 250 and len(dataset) == 3
    assert dataset.check() == 3


def test_generic_ignore_index_defaults_to_255(tmp_path):
    assert build_dataset("generic", generic_layout(tmp_path)).ignore_index == 255


def test_generic_uses_split_files_when_present(tmp_path):
    generic_layout(tmp_path)
    write_split(tmp_path / "splits" / "train.txt", ["a", "b"])
    write_split(tmp_path / "splits" / "val.txt", ["c"])
    assert len(build_dataset("generic", tmp_path, "train")) == 2
    val = build_dataset("generic", tmp_path, "val")
    assert [Path(s["path"]).name for s in val] == ["c.png"]


def test_generic_without_splits_folder_uses_every_image(tmp_path):
    assert len(build_dataset("generic", generic_layout(tmp_path), "val")) == 3


def test_unknown_kind_lists_the_accepted_kinds(tmp_path):
    with pytest.raises(DatasetError, match="mapillary.*ade20k.*cityscapes.*generic.*voc"):
        build_dataset("mapillary", tmp_path, "val")


def test_unknown_split_lists_the_available_split_files(tmp_path):
    with pytest.raises(DatasetError, match=r"test\.txt.*\['val'\]"):
        build_dataset("voc", voc_layout(tmp_path), "test")


def test_missing_mask_names_the_image_and_expected_mask(tmp_path):
    generic_layout(tmp_path)
    (tmp_path / "masks" / "b.png").unlink()
    dataset = build_dataset("generic", tmp_path)
    with pytest.raises(DatasetError, match=r"missing mask for image .*b\.png.*masks.b\.png"):
        dataset[1]


def test_mask_size_mismatch_names_the_mask(tmp_path):
    generic_layout(tmp_path)
    write_mask(tmp_path / "masks" / "a.png", np.zeros((4, SIZE)))
    with pytest.raises(DatasetError, match=r"mask .*a\.png is 8x4 .* image .*a\.png is 8x8"):
        build_dataset("generic", tmp_path)[0]


def test_class_index_out_of_range_names_the_mask_and_value(tmp_path):
    generic_layout(tmp_path)
    write_mask(tmp_path / "masks" / "c.png", np.full((SIZE, SIZE), 7))
    with pytest.raises(DatasetError, match=r"mask .*c\.png has class values \[7\]"):
        build_dataset("generic", tmp_path)[2]


def test_unreadable_image_names_the_file(tmp_path):
    generic_layout(tmp_path)
    (tmp_path / "images" / "a.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"cannot read image .*a\.png"):
        build_dataset("generic", tmp_path)[0]


def test_rgb_mask_is_rejected_with_the_accepted_modes(tmp_path):
    generic_layout(tmp_path)
    write_image(tmp_path / "masks" / "a.png")
    with pytest.raises(DatasetError, match=r"a\.png has mode RGB.*'L', 'P'"):
        build_dataset("generic", tmp_path)[0]


def test_construction_is_lazy_and_check_reports_the_first_bad_file(tmp_path):
    generic_layout(tmp_path)
    write_mask(tmp_path / "masks" / "b.png", np.full((SIZE, SIZE), 9))
    (tmp_path / "masks" / "c.png").unlink()
    dataset = build_dataset("generic", tmp_path)  # no error yet
    dataset[0]
    with pytest.raises(DatasetError, match=r"b\.png"):
        dataset.check()


def test_eval_transform_returns_float_image_and_int64_mask_tensors(tmp_path):
    dataset = build_dataset("voc", voc_layout(tmp_path), "val", transform=EvalTransform())
    sample = dataset[0]
    assert sample["image"].shape == (3, SIZE, SIZE) and sample["image"].dtype == torch.float32
    assert torch.allclose(sample["image"], torch.full_like(sample["image"], 100 / 255), atol=0.02)
    assert sample["mask"].dtype == torch.int64 and sample["mask"][3, 3] == 15


def test_train_transform_draw_depends_on_sample_index_and_epoch(tmp_path):
    generic_layout(tmp_path)
    transform = TrainTransform(crop_size=6, scale_range=(0.5, 2.0), jitter=0.4, seed=3)
    dataset = build_dataset("generic", tmp_path, transform=transform)
    first = dataset[0]["image"]
    assert torch.equal(first, dataset[0]["image"])
    dataset.set_epoch(1)
    assert not torch.equal(first, dataset[0]["image"])


def gradient_sample(height=12, width=16):
    """An image whose pixels are all different and a mask that encodes the column."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    mask = np.tile(np.arange(width, dtype=np.int64), (height, 1))
    return image, mask


def test_train_transform_is_deterministic_for_one_seed_and_varies_with_another():
    image, mask = gradient_sample()
    transform = TrainTransform(crop_size=8, scale_range=(0.5, 1.5), jitter=0.4, seed=0)
    image_a, mask_a = transform(image, mask, np.random.default_rng(5))
    image_b, mask_b = transform(image, mask, np.random.default_rng(5))
    image_c, _ = transform(image, mask, np.random.default_rng(6))
    assert torch.equal(image_a, image_b) and torch.equal(mask_a, mask_b)
    assert not torch.equal(image_a, image_c)


def test_sample_generator_depends_on_seed_index_and_epoch():
    def draws(seed, index, epoch):
        return TrainTransform(seed=seed).rng_for(index, epoch).random(4)

    assert np.array_equal(draws(0, 3, 1), draws(0, 3, 1))
    assert not np.array_equal(draws(0, 3, 1), draws(1, 3, 1))
    assert not np.array_equal(draws(0, 3, 1), draws(0, 4, 1))
    assert not np.array_equal(draws(0, 3, 1), draws(0, 3, 2))


def test_train_transform_outputs_crop_sized_float_image_and_int64_mask():
    image, mask = gradient_sample()
    out_image, out_mask = TrainTransform(crop_size=(6, 10), seed=0)(
        image, mask, np.random.default_rng(0))
    assert out_image.shape == (3, 6, 10) and out_image.dtype == torch.float32
    assert 0.0 <= out_image.min() and out_image.max() <= 1.0
    assert out_mask.shape == (6, 10) and out_mask.dtype == torch.int64


def test_crop_larger_than_image_pads_image_with_zero_and_mask_with_ignore_index():
    image = np.full((4, 4, 3), 200, np.uint8)
    mask = np.ones((4, 4), np.int64)
    transform = TrainTransform(crop_size=8, scale_range=(1, 1), flip=False, jitter=0,
                               ignore_index=77)
    out_image, out_mask = transform(image, mask, np.random.default_rng(0))
    assert (out_mask[:4, :4] == 1).all() and (out_mask[4:] == 77).all()
    assert (out_mask[:, 4:] == 77).all()
    assert (out_image[:, 4:] == 0).all() and (out_image[:, :4, :4] > 0.7).all()


def test_flip_mirrors_image_and_mask_together():
    image, mask = gradient_sample()
    transform = TrainTransform(crop_size=None, scale_range=(1, 1), flip=True, jitter=0)
    flips = 0
    for seed in range(8):
        out_image, out_mask = transform(image, mask, np.random.default_rng(seed))
        flipped = bool(out_mask[0, 0] == mask.shape[1] - 1)
        flips += flipped
        expected_image = image[:, ::-1] if flipped else image
        expected_mask = mask[:, ::-1] if flipped else mask
        assert torch.equal(out_mask, torch.from_numpy(expected_mask.copy()))
        assert torch.equal((out_image * 255).round().to(torch.uint8).permute(1, 2, 0),
                           torch.from_numpy(expected_image.copy()))
    assert 0 < flips < 8


def test_random_scale_resizes_the_mask_with_nearest_labels_only():
    image, mask = gradient_sample()
    transform = TrainTransform(crop_size=None, scale_range=(1.5, 1.5), flip=False, jitter=0)
    out_image, out_mask = transform(image, mask, np.random.default_rng(0))
    assert out_mask.shape == (18, 24) and out_image.shape == (3, 18, 24)
    assert set(out_mask.unique().tolist()) <= set(range(16))


def test_train_transform_rejects_bad_settings_naming_the_value():
    with pytest.raises(ValueError, match=r"scale_range .* got \(2, 1\)"):
        TrainTransform(scale_range=(2, 1))
    with pytest.raises(ValueError, match="crop_size .* got -4"):
        TrainTransform(crop_size=-4)
    with pytest.raises(ValueError, match="jitter .* got 1.5"):
        TrainTransform(jitter=1.5)


# ------------------------------------------- the training-free papers' benchmarks
def test_voc20_drops_background_like_mmseg_reduce_zero_label(tmp_path):
    dataset = build_dataset("voc20", voc_layout(tmp_path), "val")
    mask = dataset[0]["mask"]
    assert len(dataset.class_names) == 20 and dataset.class_names[14] == "person"
    assert mask[1, 1] == 255 and mask[3, 3] == 14 and (mask[0, :] == 255).all()
    assert dataset.prompt_names[0] == "aeroplane" and dataset.prompt_names[14].startswith("person; person in shirt")


def test_pascal_context60_keeps_background_as_class_0(tmp_path):
    values = np.zeros((SIZE, SIZE), np.uint8)
    values[:4] = 1
    values[7, 7] = 59
    write_image(tmp_path / "JPEGImages" / "2008_000002.jpg")
    write_mask(tmp_path / "SegmentationClassContext" / "2008_000002.png", values)
    write_split(tmp_path / "ImageSets" / "SegmentationContext" / "val.txt", ["2008_000002"])
    dataset = build_dataset("pascal_context60", tmp_path, "val")
    mask = dataset[0]["mask"]
    assert dataset.class_names[:2] == ["background", "aeroplane"] and len(dataset.class_names) == 60
    assert mask[5, 0] == 0 and mask[0, 0] == 1 and mask[7, 7] == 59
    assert dataset.prompt_names[0] == "background"


@pytest.mark.parametrize("kind, suffix, classes, first", [
    ("coco_object", "_instanceTrainIds.png", 81, "background"),
    ("coco_stuff164k", "_labelTrainIds.png", 171, "person"),
])
def test_coco_layouts_read_train_id_masks(tmp_path, kind, suffix, classes, first):
    values = np.zeros((SIZE, SIZE), np.uint8)
    values[0, 0] = classes - 1
    values[1, 1] = 255
    write_image(tmp_path / "images" / "val2017" / "000000000139.jpg")
    write_mask(tmp_path / "annotations" / "val2017" / f"000000000139{suffix}", values)
    dataset = build_dataset(kind, tmp_path, "val")
    assert len(dataset.class_names) == classes and dataset.class_names[0] == first
    mask = dataset[0]["mask"]
    assert mask[0, 0] == classes - 1 and mask[1, 1] == 255 and mask[2, 2] == 0


def test_cityscapes_pairs_left_images_with_gtfine_train_ids(tmp_path):
    values = np.full((SIZE, SIZE), 255, np.uint8)
    values[:2] = 0
    values[2:4] = 18
    write_image(tmp_path / "leftImg8bit" / "val" / "lindau" / "lindau_000000_000019_leftImg8bit.png")
    write_mask(tmp_path / "gtFine" / "val" / "lindau" / "lindau_000000_000019_gtFine_labelTrainIds.png", values)
    dataset = build_dataset("cityscapes", tmp_path, "val")
    assert dataset.class_names[0] == "road" and dataset.class_names[18] == "bicycle" and len(dataset) == 1
    mask = dataset[0]["mask"]
    assert (mask[:2] == 0).all() and (mask[2:4] == 18).all() and (mask[4:] == 255).all()


@pytest.mark.parametrize("kind, classes", [("voc", 21), ("voc20", 20), ("pascal_context60", 60),
                                           ("pascal_context59", 59), ("coco_object", 81), ("ade20k", 150),
                                           ("cityscapes", 19), ("coco_stuff164k", 171)])
def test_reference_class_name_files_have_one_line_per_class_and_parse_synonyms(kind, classes):
    from lseg_ros.data import load_reference_names
    from lseg_ros.segmenter import split_synonyms

    for source in ("sclip", "clearclip"):
        names = load_reference_names(kind, source)
        assert len(names) == classes
        assert len(set(names)) == classes
        assert all(len(set(split_synonyms(label))) == len(split_synonyms(label)) >= 1 for label in names)
    if kind in ("voc", "coco_object"):
        sclip = load_reference_names(kind, "sclip")
        assert len(split_synonyms(sclip[0])) == 26 and load_reference_names(kind, "clearclip")[0] == "background"
