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


# --------------------------------------------------------------------------------- 3D
def test_geometry_leaves_the_image_and_mask_unchanged():
    from lseg_ros.data.scenes import generate_scene_with_geometry

    for index in range(3):
        image, mask, geometry = generate_scene_with_geometry(scene_rng(2, index), (48, 64))
        expected_image, expected_mask = generate_scene(scene_rng(2, index), (48, 64))
        np.testing.assert_array_equal(image, expected_image)
        np.testing.assert_array_equal(mask, expected_mask)
        assert geometry.depth.shape == mask.shape and np.isfinite(geometry.depth).all()


def test_floor_points_back_projected_from_the_depth_lie_on_the_floor_plane():
    """The depth image, K and labelled_points agree: every floor pixel's point is on the plane."""
    from lseg_ros.data.scenes import FLOOR, generate_scene_with_geometry
    from lseg_ros.geometry import Intrinsics, depth_to_metres, labelled_points

    for index in range(5):
        image, mask, geometry = generate_scene_with_geometry(scene_rng(3, index), (120, 160))
        millimetres = np.rint(geometry.depth * 1000).astype(np.uint16)  # as a RealSense publishes it
        points = labelled_points(depth_to_metres(millimetres, "16UC1"), mask, Intrinsics.from_k(geometry.k, 160, 120))
        floor = points.xyz[points.label == FLOOR]
        assert len(floor) == (mask == FLOOR).sum() > 100
        distance = floor.astype(np.float64) @ geometry.floor_normal - geometry.floor_offset
        assert np.abs(distance).max() < 0.005  # millimetre depth steps at up to ~5 m
        assert 0.5 < floor[:, 2].min() and floor[:, 2].max() < 20.0
        height_of = lambda keep: points.xyz[keep].astype(np.float64) @ geometry.floor_normal  # noqa: E731
        assert (height_of(points.label == 1) < geometry.floor_offset + 0.005).all()  # the wall stands on it
        assert (height_of(points.label >= 2) < geometry.floor_offset - 0.01).all()  # objects float in front


def test_a_generated_objects_centroid_is_found_from_mask_and_depth():
    from scipy import ndimage

    from lseg_ros.data.scenes import SCENE_CLASSES, generate_scene_with_geometry
    from lseg_ros.geometry import Intrinsics
    from lseg_ros.objects import find_objects

    checked = 0
    for index in range(8):
        _, mask, geometry = generate_scene_with_geometry(scene_rng(4, index), (120, 160))
        found = find_objects(mask, len(SCENE_CLASSES), depth_m=geometry.depth,
                             intrinsics=Intrinsics.from_k(geometry.k, 160, 120), min_pixels=20)
        for number, (class_index, region, depth) in enumerate(geometry.objects):
            _, parts = ndimage.label(region, structure=np.ones((3, 3)))
            if parts != 1:
                continue  # split by an occluder: several objects in the mask
            match = [o for o in found if o.label_index == class_index and o.pixel_count == region.sum()]
            if len(match) != 1:
                continue  # touches another region of its class: one merged object in the mask
            np.testing.assert_allclose(match[0].centroid, geometry.object_centroid(number), atol=0.01)
            assert match[0].extent[2] == pytest.approx(0.0, abs=1e-4)  # a flat, camera-facing patch
            checked += 1
    assert checked >= 5
