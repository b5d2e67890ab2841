"""Depth + mask -> labelled points, against computations written out here (no ROS)."""
import math

import numpy as np
import pytest

from lseg_ros.geometry import Intrinsics, check_intrinsics, depth_to_metres, labelled_points, points_stride
from lseg_ros.images import resize_nearest

K = Intrinsics(fx=50.0, fy=40.0, cx=31.5, cy=23.5, width=64, height=48)


def test_sixteen_bit_depth_is_millimetres_and_zero_is_no_return():
    depth = np.array([[0, 1500], [65535, 1]], dtype=np.uint16)
    metres = depth_to_metres(depth, "16UC1")
    assert math.isnan(metres[0, 0])
    np.testing.assert_allclose(metres[[0, 1, 1], [1, 0, 1]], [1.5, 65.535, 0.001], rtol=1e-6)
    assert metres.dtype == np.float32


def test_float_depth_is_metres_and_nan_inf_zero_negative_are_no_return():
    depth = np.array([[0.0, np.nan, np.inf, -1.0, 2.25]], dtype=np.float32)
    metres = depth_to_metres(depth, "32FC1")
    assert np.isnan(metres[0, :4]).all() and metres[0, 4] == 2.25


def test_unknown_depth_encoding_is_named():
    with pytest.raises(ValueError, match="'rgb8'.*16UC1"):
        depth_to_metres(np.zeros((2, 2), np.uint8), "rgb8")


def test_intrinsics_from_k_reject_unusable_values():
    assert Intrinsics.from_k([50, 0, 31.5, 0, 40, 23.5, 0, 0, 1], 64, 48) == K
    for k, size in (([0, 0, 1, 0, 40, 1, 0, 0, 1], (64, 48)), ([50] * 8, (64, 48)),
                    ([50, 0, 1, 0, 40, 1, 0, 0, 1], (0, 48)), ([50, 0, np.nan, 0, 40, 1, 0, 0, 1], (64, 48))):
        with pytest.raises(ValueError):
            Intrinsics.from_k(k, *size)


def test_points_are_the_pinhole_back_projection_of_every_valid_pixel():
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 4.0, (48, 64)).astype(np.float32)
    depth[5, 7] = np.nan  # no return
    mask = rng.integers(0, 3, (48, 64)).astype(np.uint8)
    rgb = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    confidence = rng.uniform(0, 1, (48, 64)).astype(np.float32)
    points = labelled_points(depth, mask, K, rgb=rgb, confidence=confidence)
    expected = []
    for v in range(48):
        for u in range(64):
            z = depth[v, u]
            if np.isnan(z):
                continue
            expected.append(((u - K.cx) * z / K.fx, (v - K.cy) * z / K.fy, z, *rgb[v, u], mask[v, u], confidence[v, u]))
    expected = np.array(expected, dtype=np.float64)
    assert len(points) == 48 * 64 - 1 == len(expected)
    np.testing.assert_allclose(points.xyz, expected[:, :3], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(points.rgb, expected[:, 3:6])
    np.testing.assert_array_equal(points.label, expected[:, 6])
    np.testing.assert_allclose(points.confidence, expected[:, 7])
    assert points.label.dtype == np.uint16 and points.xyz.dtype == np.float32


def test_points_of_a_floor_plane_lie_on_it():
    """A floor 1.2 m below the camera (y = 1.2 in the optical frame): depth z = h fy / (v - cy)."""
    height_m = 1.2
    v = np.arange(48, dtype=np.float64)[:, None].repeat(64, 1)
    with np.errstate(divide="ignore"):
        depth = np.where(v > K.cy, height_m * K.fy / (v - K.cy), np.nan).astype(np.float32)
    points = labelled_points(depth, np.zeros((48, 64), np.uint8), K, max_depth=50.0)
    assert len(points) > 0
    np.testing.assert_allclose(points.xyz[:, 1], height_m, atol=1e-5)


def test_depth_and_intrinsics_are_brought_to_the_mask_size():
    """Depth at 2x the mask's size: sampled at the mask's pixel centres, K scaled by 1/2."""
    depth = np.random.default_rng(1).uniform(1, 3, (96, 128)).astype(np.float32)
    big_k = Intrinsics(100.0, 80.0, 63.0, 47.0, 128, 96)
    mask = np.ones((48, 64), np.uint8)
    points = labelled_points(depth, mask, big_k)
    v, u = 10, 20
    z = depth[2 * v + 1, 2 * u + 1]  # nearest to the centre of mask pixel (v, u)
    index = v * 64 + u
    np.testing.assert_allclose(points.xyz[index], [(u - 31.5) * z / 50.0, (v - 23.5) * z / 40.0, z], rtol=1e-6)


def test_stride_depth_range_and_unknown_pixels_are_left_out():
    depth = np.full((48, 64), 2.0, np.float32)
    depth[:, :8] = 0.2  # too near
    depth[:, -8:] = 9.0  # too far
    mask = np.zeros((48, 64), np.uint8)
    mask[:4] = 255
    points = labelled_points(depth, mask, K, stride=4, min_depth=0.3, max_depth=5.0, unknown_value=255)
    rows, cols = np.meshgrid(np.arange(0, 48, 4), np.arange(0, 64, 4), indexing="ij")
    keep = (cols >= 8) & (cols < 56) & (rows >= 4)
    assert len(points) == keep.sum()
    assert (points.label == 0).all() and np.isnan(points.confidence).all()
    assert set(np.round(points.xyz[:, 2], 6)) == {2.0}
    with_unknown = labelled_points(depth, mask, K, stride=4, min_depth=0.3, max_depth=5.0)
    assert len(with_unknown) == ((cols >= 8) & (cols < 56)).sum()


@pytest.mark.parametrize("kwargs, message", [({"stride": 0}, "stride"), ({"min_depth": 2, "max_depth": 1}, "min_depth"),
                                             ({"min_depth": -1}, "min_depth")])
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        labelled_points(np.ones((4, 4), np.float32), np.zeros((4, 4), np.uint8), K, **kwargs)


def test_nearest_resampling_keeps_values_and_aligns_pixel_centres():
    values = np.arange(12).reshape(3, 4)
    np.testing.assert_array_equal(resize_nearest(values, (3, 4)), values)
    np.testing.assert_array_equal(resize_nearest(values, (6, 8))[::2, ::2], values)
    np.testing.assert_array_equal(resize_nearest(np.arange(16).reshape(4, 4), (2, 2)), [[5, 7], [13, 15]])
    rgb = np.arange(4 * 4 * 3).reshape(4, 4, 3)  # channels ride along (RGB resampled with the depth)
    np.testing.assert_array_equal(resize_nearest(rgb, (2, 2)), rgb[[1, 3]][:, [1, 3]])


def test_intrinsics_that_cannot_be_a_camera_are_rejected_naming_the_value():
    good = [500.0, 0.0, 320.0, 0.0, 500.0, 240.0, 0.0, 0.0, 1.0]
    check_intrinsics(good, 640, 480)  # a plain 640x480 camera passes
    check_intrinsics([7.0, 0, -600.0, 0, 5.0, 950.0, 0, 0, 1], 640, 480)  # wide, cropped: still a camera
    cases = [
        ({2: 1e300}, (640, 480), r"cx 1e\+300 out of range.*\[-640, 1280\]"),
        ({0: 1e-30}, (640, 480), r"fx 1e-30 out of range.*\[6\.4, 640000\]"),
        ({4: -500.0}, (640, 480), r"fy -500 out of range"),
        ({5: -481.0}, (640, 480), r"cy -481 out of range"),
        ({0: math.inf}, (640, 480), r"non-finite.*accepted: finite"),
        ({8: 0.0}, (640, 480), r"last row.*\[0, 0, 1\]"),
        ({}, (2**32 - 1, 480), r"width 4294967295 out of range; accepted: 1\.\.65535"),
        ({}, (640, 0), r"height 0 out of range"),
    ]
    for change, size, message in cases:
        k = list(good)
        for index, value in change.items():
            k[index] = value
        with pytest.raises(ValueError, match=message):
            check_intrinsics(k, *size)
        with pytest.raises(ValueError, match=message):  # the one check Intrinsics.from_k makes too
            Intrinsics.from_k(k, *size)
    with pytest.raises(ValueError, match="K has 8 values"):
        check_intrinsics(good[:8], 640, 480)


def test_points_stride_is_the_smallest_that_keeps_the_cloud_within_max_points():
    assert points_stride((480, 640), 2, 1_000_000) == 2  # below the bound: points_stride as given
    assert points_stride((4096, 4096), 2, 1_000_000) == 5  # 820 x 820 = 672,400; stride 4: 1,048,576
    for shape, stride, most in (((4096, 4096), 1, 1000), ((720, 1280), 1, 230_400), ((7, 3), 1, 1), ((1, 5000), 3, 7)):
        found = points_stride(shape, stride, most)
        grid = lambda s: -(-shape[0] // s) * -(-shape[1] // s)  # noqa: E731
        assert grid(found) <= most and (found == stride or grid(found - 1) > most)
    with pytest.raises(ValueError, match="max_points >= 1"):
        points_stride((4, 4), 1, 0)


def test_points_at_a_stride_sample_depth_color_and_confidence_of_other_sizes_as_a_resize_would():
    """Reading only the grid's pixels gives what resizing whole images to the mask and striding gave."""
    rng = np.random.default_rng(3)
    mask = rng.integers(0, 4, (60, 90)).astype(np.uint8)
    depth = rng.uniform(0.5, 4.0, (25, 37)).astype(np.float32)
    rgb = rng.integers(0, 256, (45, 70, 3), dtype=np.uint8)
    confidence = rng.uniform(0, 1, (15, 22)).astype(np.float32)
    k = Intrinsics(fx=60.0, fy=55.0, cx=44.0, cy=29.0, width=90, height=60)
    points = labelled_points(depth, mask, k, rgb=rgb, confidence=confidence, stride=4, unknown_value=3)
    z = resize_nearest(depth, (60, 90))[::4, ::4]
    colors = resize_nearest(rgb, (60, 90))[::4, ::4]
    conf = resize_nearest(confidence, (60, 90))[::4, ::4]
    rows, cols = np.nonzero(mask[::4, ::4] != 3)
    np.testing.assert_array_equal(points.xyz[:, 2], z[rows, cols])
    np.testing.assert_allclose(points.xyz[:, 0], (cols * 4 - 44.0) * z[rows, cols] / 60.0, rtol=1e-6)
    np.testing.assert_array_equal(points.rgb, colors[rows, cols])
    np.testing.assert_array_equal(points.confidence, conf[rows, cols])


def test_points_of_a_4096_square_frame_within_max_points_stay_small_in_memory():
    """Depth, color and confidence are read at the grid's pixels only: a 4096x4096 frame's
    cloud at the max_points stride allocates megabytes, not the gigabytes of full-size copies."""
    import tracemalloc

    mask = np.zeros((4096, 4096), np.uint8)
    depth = np.full((4096, 4096), 2.0, np.float32)
    rgb = np.zeros((4096, 4096, 3), np.uint8)
    confidence = np.ones((1024, 1024), np.float32)  # reduced-resolution maps (memory budget)
    k = Intrinsics(fx=3000.0, fy=3000.0, cx=2048.0, cy=2048.0, width=4096, height=4096)
    stride = points_stride(mask.shape, 2, 100_000)
    tracemalloc.start()
    points = labelled_points(depth, mask, k, rgb=rgb, confidence=confidence, stride=stride)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert 90_000 < len(points) <= 100_000
    assert peak < 12 * 2**20, f"peak {peak / 2**20:.0f} MB"  # ~60 bytes per point; a 4096^2 float copy is 64 MB
