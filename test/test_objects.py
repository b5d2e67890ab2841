"""lseg_ros.objects and lseg_ros.stamps: connected label regions with 2D/3D statistics, and
stamp pairing, against hand-computed values (ROS-free)."""
import numpy as np
import pytest

from lseg_ros.geometry import Intrinsics
from lseg_ros.objects import find_objects
from lseg_ros.stamps import StampBuffer

UNKNOWN = 255


def two_doors_and_a_chair():
    mask = np.full((20, 30), UNKNOWN, dtype=np.uint8)
    mask[2:8, 3:9] = 0      # door A: 36 pixels
    mask[12:18, 20:24] = 0  # door B: 24 pixels (same label, not touching)
    mask[10:12, 5:7] = 1    # chair: 4 pixels
    return mask


def test_each_connected_region_of_a_label_is_one_object_largest_first():
    objects = find_objects(two_doors_and_a_chair(), label_count=2)
    assert [(o.label_index, o.pixel_count, o.bbox) for o in objects] == [
        (0, 36, (3, 2, 6, 6)), (0, 24, (20, 12, 4, 6)), (1, 4, (5, 10, 2, 2))]
    assert all(np.isnan(o.centroid).all() and np.isnan(o.extent).all() and o.depth_pixels == 0 for o in objects)
    assert all(np.isnan(o.confidence) for o in objects)


def test_min_pixels_and_values_beyond_the_label_count_are_not_objects():
    objects = find_objects(two_doors_and_a_chair(), label_count=1, min_pixels=30)
    assert [(o.label_index, o.pixel_count) for o in objects] == [(0, 36)]


def test_diagonal_neighbours_join_with_8_connectivity_only():
    mask = np.full((4, 4), UNKNOWN, dtype=np.uint8)
    mask[0, 0] = mask[1, 1] = mask[2, 2] = 0
    assert [o.pixel_count for o in find_objects(mask, 1, connectivity=8)] == [3]
    assert [o.pixel_count for o in find_objects(mask, 1, connectivity=4)] == [1, 1, 1]


def test_mean_confidence_is_over_the_region_and_resampled_to_the_mask():
    mask = two_doors_and_a_chair()
    confidence = np.zeros((10, 15), dtype=np.float32)  # half size: each value covers 2x2 mask pixels
    confidence[1:4, 1:5] = 0.8  # door A's pixels (rows 2..7, columns 3..8 -> 1..3, 1..4)
    objects = find_objects(mask, 2, confidence=confidence)
    assert objects[0].confidence == pytest.approx(0.8)
    assert objects[1].confidence == pytest.approx(0.0)


def test_centroid_and_extent_of_a_fronto_parallel_patch_follow_the_pinhole_model():
    mask = two_doors_and_a_chair()
    depth = np.full(mask.shape, 4.0, dtype=np.float32)
    depth[2:8, 3:9] = 2.0
    depth[2, 3] = 7.0  # background bleeding into the outline: outside the depth band
    depth[3, 3] = np.nan  # no return
    k = Intrinsics(fx=10.0, fy=20.0, cx=15.0, cy=10.0, width=30, height=20)
    door = find_objects(mask, 2, depth_m=depth, intrinsics=k, depth_band=0.5)[0]
    rows, cols = np.mgrid[2:8, 3:9]
    keep = np.ones(rows.shape, dtype=bool)
    keep[0, 0] = keep[1, 0] = False
    x = (cols[keep] - 15.0) * 2.0 / 10.0
    y = (rows[keep] - 10.0) * 2.0 / 20.0
    np.testing.assert_allclose(door.centroid, [x.mean(), y.mean(), 2.0], rtol=1e-6)
    np.testing.assert_allclose(door.extent, [x.max() - x.min(), y.max() - y.min(), 0.0], atol=1e-6)
    assert door.depth_pixels == 34 and door.pixel_count == 36


def test_depth_range_and_intrinsics_of_another_size_apply():
    mask = two_doors_and_a_chair()
    depth = np.full((40, 60), 30.0, dtype=np.float32)  # twice the mask's size, all beyond max_depth
    k = Intrinsics(fx=20.0, fy=40.0, cx=30.0, cy=20.0, width=60, height=40)
    objects = find_objects(mask, 2, depth_m=depth, intrinsics=k, max_depth=10.0)
    assert all(o.depth_pixels == 0 and np.isnan(o.centroid).all() for o in objects)
    depth[:] = 3.0
    door = find_objects(mask, 2, depth_m=depth, intrinsics=k)[0]
    assert door.centroid[0] == pytest.approx((np.arange(3, 9).mean() - 15.0) * 3.0 / 10.0)  # K halved to the mask


def test_a_region_whose_depths_split_into_two_far_groups_takes_the_larger_groups_position():
    mask = np.zeros((4, 4), dtype=np.uint8)  # one region of 16 pixels
    depth = np.full((4, 4), 3.0, dtype=np.float32)
    depth[:, :2] = 1.0  # 8 at 1 m, 8 at 3 m: the median (2 m) matches no pixel; a tie -> the nearer
    k = Intrinsics(fx=10.0, fy=10.0, cx=2.0, cy=2.0, width=4, height=4)
    obj = find_objects(mask, 1, depth_m=depth, intrinsics=k, depth_band=0.5)[0]
    assert obj.depth_pixels == 8
    assert obj.centroid[2] == pytest.approx(1.0) and obj.extent[2] == pytest.approx(0.0)
    depth = np.array([[1.0] * 4, [1.0, 1.0, 2.2, 2.2], [3.4] * 4, [3.4] * 4], dtype=np.float32)
    obj = find_objects(mask, 1, depth_m=depth, intrinsics=k, depth_band=0.5)[0]  # median 2.8: no pixel
    assert obj.depth_pixels == 8 and obj.centroid[2] == pytest.approx(3.4)  # the largest group, not the nearest


@pytest.mark.parametrize("kwargs, message", [
    ({"min_pixels": 0}, "min_pixels"), ({"connectivity": 6}, "connectivity"), ({"depth_band": 0}, "depth_band"),
    ({"depth_m": np.ones((2, 2), np.float32)}, "intrinsics"),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        find_objects(two_doors_and_a_chair(), 2, **kwargs)


def test_stamp_buffer_pairs_the_nearest_within_the_slop_and_prefers_exact():
    buffer = StampBuffer(capacity=3)
    for stamp in (1_000_000_000, 1_033_000_000, 1_066_000_000):
        buffer.push(stamp, stamp)
    assert buffer.nearest(1_033_000_000, 0.0) == 1_033_000_000
    assert buffer.nearest(1_050_000_000, 0.02) == 1_066_000_000  # 16 ms beats 17 ms
    assert buffer.nearest(1_200_000_000, 0.05) is None
    buffer.push(1_100_000_000, "newest")  # capacity 3: the oldest goes
    assert buffer.nearest(1_000_000_000, 0.01) is None and len(buffer) == 3
    with pytest.raises(ValueError):
        StampBuffer(0)
