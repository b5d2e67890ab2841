"""Synthetic labelled scenes and the generic dataset they are written as."""
import itertools

import numpy as np
import pytest
from PIL import Image

from lseg_ros.data import SCENE_CLASSES, build_dataset
from lseg_ros.data.scenes import (
    generate_scene,
    generate_scene_stream,
    main,
    scene_rng,
    write_generic_dataset,
)


def test_same_seed_gives_the_same_scene_and_another_seed_a_different_one():
    image_a, mask_a = generate_scene(np.random.default_rng(7), (32, 40))
    image_b, mask_b = generate_scene(np.random.default_rng(7), (32, 40))
    image_c, _ = generate_scene(np.random.default_rng(8), (32, 40))
    assert np.array_equal(image_a, image_b) and np.array_equal(mask_a, mask_b)
    assert not np.array_equal(image_a, image_c)


def test_scene_is_uint8_image_and_mask_of_the_requested_size_with_every_pixel_labelled():
    image, mask = generate_scene(np.random.default_rng(0), (48, 64))
    assert image.shape == (48, 64, 3) and image.dtype == np.uint8
    assert mask.shape == (48, 64) and mask.dtype == np.uint8
    assert mask.max() < len(SCENE_CLASSES)


def test_every_class_appears_within_twenty_scenes():
    seen = set()
    for index in range(20):
        seen |= set(np.unique(generate_scene(scene_rng(0, index), (64, 80))[1]).tolist())
    assert seen == set(range(len(SCENE_CLASSES)))


def test_scene_classes_have_distinct_mean_colours():
    sums = np.zeros((len(SCENE_CLASSES), 3))
    counts = np.zeros(len(SCENE_CLASSES))
    for index in range(20):
        image, mask = generate_scene(scene_rng(1, index), (64, 80))
        for class_index in range(len(SCENE_CLASSES)):
            sums[class_index] += image[mask == class_index].sum(axis=0)
            counts[class_index] += (mask == class_index).sum()
    means = sums / counts[:, None]
    distances = np.linalg.norm(means[:, None] - means[None], axis=-1)
    assert distances[~np.eye(len(SCENE_CLASSES), dtype=bool)].min() > 30


def test_stream_frame_i_equals_scene_i_of_the_seeded_set():
    frames = list(itertools.islice(generate_scene_stream(seed=4, size=(24, 32)), 3))
    image, mask = generate_scene(scene_rng(4, 2), (24, 32))
    assert np.array_equal(frames[2][0], image) and np.array_equal(frames[2][1], mask)


def test_size_smaller_than_8_is_rejected_naming_the_size():
    with pytest.raises(ValueError, match=r"\(4, 40\)"):
        generate_scene(np.random.default_rng(0), (4, 40))


def test_written_dataset_is_readable_by_the_generic_reader(tmp_path):
    write_generic_dataset(tmp_path, n_images=10, seed=0, size=(24, 32), val_fraction=0.3)
    train = build_dataset("generic", tmp_path, "train")
    val = build_dataset("generic", tmp_path, "val")
    assert (len(train), len(val)) == (7, 3)
    assert train.class_names == SCENE_CLASSES and train.ignore_index == 255
    assert train.check() == 7 and val.check() == 3
    assert not {s[0] for s in train.samples} & {s[0] for s in val.samples}
    assert train[0]["mask"].shape == (24, 32)


def test_written_dataset_is_deterministic_in_the_seed(tmp_path):
    write_generic_dataset(tmp_path / "a", 4, seed=2, size=(16, 16))
    write_generic_dataset(tmp_path / "b", 4, seed=2, size=(16, 16))
    for folder in ("images", "masks"):
        for stem in ("scene_00000", "scene_00003"):
            with Image.open(tmp_path / "a" / folder / f"{stem}.png") as a, \
                    Image.open(tmp_path / "b" / folder / f"{stem}.png") as b:
                assert np.array_equal(np.array(a), np.array(b))
    val_a, val_b = (tmp_path / name / "splits" / "val.txt" for name in ("a", "b"))
    assert val_a.read_text() == val_b.read_text()


def test_cli_writes_count_scenes_of_the_given_size(tmp_path):
    main([str(tmp_path), "--count", "3", "--seed", "1", "--size", "20x30"])
    dataset = build_dataset("generic", tmp_path)
    assert len(dataset) == 3 and dataset[0]["image"].shape == (20, 30, 3)


def test_cli_rejects_a_malformed_size(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--size", "20by30"])
    assert "HxW" in capsys.readouterr().err
