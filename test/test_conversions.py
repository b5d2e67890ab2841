"""lseg_ros.ros.conversions: camera frames -> numpy arrays -> messages.

Every reference image here is written byte by byte (struct, bytes literals, a PNG built
with zlib), never with the functions under test. Only message classes are used; no node.
"""
import io
import struct
import sys
import zlib

import numpy as np
import pytest
from PIL import Image as PILImage
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from lseg_ros.ros.conversions import (
    CAMERA_ENCODINGS,
    ImageConversionError,
    color_rgba,
    compressed_to_rgb,
    float_map_to_image_msg,
    image_msg_to_array,
    image_to_rgb,
    mask_encoding,
    mask_to_image_msg,
    rgb_to_image_msg,
    scale_camera_info,
)

pytestmark = pytest.mark.ros

# A 3x2 (width x height) test picture, RGB.
RGB_PIXELS = [
    [(255, 0, 0), (0, 255, 0), (0, 0, 255)],
    [(10, 20, 30), (40, 50, 60), (200, 100, 7)],
]
GRAY8_PIXELS = [[0, 128, 255], [1, 2, 3]]
GRAY16_PIXELS = [[0x0000, 0x00FF, 0x0100], [0x7FFF, 0xFFFF, 0x1234]]
# 16 -> 8 bits keeps the high byte, written out by hand:
GRAY16_AS_8 = [[0x00, 0x00, 0x01], [0x7F, 0xFF, 0x12]]
ALPHA = 77
PAD = b"\xee"  # row padding filler: must never show up in a result


def _pixel_bytes(encoding, row, column, bigendian=False):
    """The bytes of one pixel of the test picture in ``encoding``, written out by hand."""
    red, green, blue = RGB_PIXELS[row][column]
    if encoding == "rgb8":
        return bytes([red, green, blue])
    if encoding in ("bgr8", "8UC3"):
        return bytes([blue, green, red])
    if encoding == "rgba8":
        return bytes([red, green, blue, ALPHA])
    if encoding == "bgra8":
        return bytes([blue, green, red, ALPHA])
    if encoding in ("mono8", "8UC1"):
        return bytes([GRAY8_PIXELS[row][column]])
    if encoding in ("mono16", "16UC1"):
        return struct.pack(">H" if bigendian else "<H", GRAY16_PIXELS[row][column])
    raise AssertionError(encoding)


def _expected_rgb(encoding):
    if encoding in ("mono8", "8UC1"):
        return np.array([[[g, g, g] for g in row] for row in GRAY8_PIXELS], dtype=np.uint8)
    if encoding in ("mono16", "16UC1"):
        return np.array([[[g, g, g] for g in row] for row in GRAY16_AS_8], dtype=np.uint8)
    return np.array(RGB_PIXELS, dtype=np.uint8)


def _image(encoding, padding=0, bigendian=False):
    """The test picture as a sensor_msgs/Image, each row followed by ``padding`` bytes."""
    rows = [b"".join(_pixel_bytes(encoding, r, c, bigendian) for c in range(3)) + PAD * padding
            for r in range(2)]
    return Image(height=2, width=3, encoding=encoding, is_bigendian=int(bigendian),
                 step=len(rows[0]), data=b"".join(rows))


def _png(width, height, color_type, bit_depth, rows):
    """A PNG file written from raw rows (filter type 0) with zlib and struct."""
    def chunk(tag, payload):
        return (struct.pack(">I", len(payload)) + tag + payload
                + struct.pack(">I", zlib.crc32(tag + payload)))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    pixels = zlib.compress(b"".join(b"\x00" + row for row in rows))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def _compressed(data, format="png"):
    return CompressedImage(format=format, data=data)


# ----------------------------------------------------------------------------------------
# camera frames -> RGB


@pytest.mark.parametrize("padding", [0, 5], ids=["packed", "padded"])
@pytest.mark.parametrize("encoding", CAMERA_ENCODINGS)
def test_every_camera_encoding_gives_the_reference_rgb(encoding, padding):
    rgb = image_to_rgb(_image(encoding, padding))

    assert rgb.dtype == np.uint8 and rgb.shape == (2, 3, 3)
    assert rgb.flags.c_contiguous
    np.testing.assert_array_equal(rgb, _expected_rgb(encoding))


@pytest.mark.parametrize("padding", [0, 3], ids=["packed", "odd-padded"])
@pytest.mark.parametrize("bigendian", [False, True], ids=["little-endian", "big-endian"])
@pytest.mark.parametrize("encoding", ["mono16", "16UC1"])
def test_16_bit_frames_honour_is_bigendian_and_keep_the_high_byte(encoding, bigendian, padding):
    rgb = image_to_rgb(_image(encoding, padding, bigendian))

    np.testing.assert_array_equal(rgb, _expected_rgb(encoding))


def test_16_bit_frames_as_arrays_keep_all_16_bits_in_native_order():
    for bigendian in (False, True):
        values = image_msg_to_array(_image("mono16", padding=1, bigendian=bigendian))

        assert values.dtype == np.uint16 and values.dtype.isnative
        np.testing.assert_array_equal(values, np.array(GRAY16_PIXELS, dtype=np.uint16))


def test_rgb8_without_padding_is_read_without_copying():
    msg = _image("rgb8")

    rgb = image_to_rgb(msg)

    assert np.shares_memory(rgb, np.frombuffer(msg.data, dtype=np.uint8))


def test_unknown_encoding_is_rejected_naming_it_and_the_accepted_ones():
    msg = _image("rgb8")
    msg.encoding = "yuv422"

    with pytest.raises(ImageConversionError, match="'yuv422'") as error:
        image_to_rgb(msg)
    for accepted in CAMERA_ENCODINGS:
        assert accepted in str(error.value)


def test_float_images_are_not_camera_frames():
    msg = float_map_to_image_msg(np.zeros((2, 3), dtype=np.float32), Header())

    with pytest.raises(ImageConversionError, match="'32FC1'"):
        image_to_rgb(msg)


@pytest.mark.parametrize("width, height", [(0, 2), (3, 0)])
def test_empty_frames_are_rejected_naming_the_size(width, height):
    msg = _image("rgb8")
    msg.width, msg.height = width, height

    with pytest.raises(ImageConversionError, match=f"{width}x{height}"):
        image_to_rgb(msg)


def test_step_shorter_than_a_row_is_rejected_naming_both():
    msg = _image("rgb8")
    msg.step = 8  # a row of 3 rgb8 pixels is 9 bytes

    with pytest.raises(ImageConversionError, match=r"step 8 .*9 bytes"):
        image_to_rgb(msg)


def test_data_not_height_times_step_is_rejected_naming_the_sizes():
    msg = _image("rgb8")
    msg.data = bytes(msg.data)[:-1]

    with pytest.raises(ImageConversionError, match=r"data size 17 bytes .* = 18"):
        image_to_rgb(msg)


def test_frames_over_max_pixels_are_rejected_naming_the_limit():
    with pytest.raises(ImageConversionError, match=r"3x2 = 6 pixels exceeds max_pixels=5"):
        image_to_rgb(_image("rgb8"), max_pixels=5)


def test_frames_at_max_pixels_are_accepted():
    assert image_to_rgb(_image("rgb8"), max_pixels=6).shape == (2, 3, 3)


# ----------------------------------------------------------------------------------------
# compressed frames -> RGB


def test_png_rgb_decodes_to_the_reference():
    rows = [b"".join(bytes(pixel) for pixel in row) for row in RGB_PIXELS]
    msg = _compressed(_png(3, 2, color_type=2, bit_depth=8, rows=rows))

    np.testing.assert_array_equal(compressed_to_rgb(msg), np.array(RGB_PIXELS, dtype=np.uint8))


def test_png_16_bit_gray_keeps_the_high_byte():
    rows = [b"".join(struct.pack(">H", value) for value in row) for row in GRAY16_PIXELS]
    msg = _compressed(_png(3, 2, color_type=0, bit_depth=16, rows=rows))

    np.testing.assert_array_equal(compressed_to_rgb(msg), _expected_rgb("mono16"))


def test_jpeg_decodes_to_rgb_within_compression_error():
    # JPEG is lossy: flat 8x8 blocks of one color each survive within a few levels.
    colors = np.array([[[200, 30, 30], [30, 200, 30]], [[30, 30, 200], [128, 128, 128]]], np.uint8)
    reference = np.kron(colors, np.ones((8, 8, 1), dtype=np.uint8))  # [16, 16, 3]
    stream = io.BytesIO()
    PILImage.fromarray(reference).save(stream, format="JPEG", quality=95, subsampling=0)
    msg = _compressed(stream.getvalue(), format="rgb8; jpeg compressed bgr8")

    rgb = compressed_to_rgb(msg)

    assert rgb.dtype == np.uint8 and rgb.shape == (16, 16, 3)
    assert np.abs(rgb.astype(int) - reference.astype(int)).max() <= 8


def test_undecodable_compressed_data_is_rejected_naming_format_and_size():
    with pytest.raises(ImageConversionError, match=r"cannot decode .*'jpeg', 12 bytes"):
        compressed_to_rgb(_compressed(b"not an image", format="jpeg"))


def test_truncated_png_is_rejected():
    rows = [b"".join(bytes(pixel) for pixel in row) for row in RGB_PIXELS]
    data = _png(3, 2, color_type=2, bit_depth=8, rows=rows)

    with pytest.raises(ImageConversionError, match="cannot decode"):
        compressed_to_rgb(_compressed(data[:40]))


def test_compressed_types_other_than_jpeg_and_png_are_rejected_naming_them():
    stream = io.BytesIO()
    PILImage.new("RGB", (3, 2)).save(stream, format="GIF")

    with pytest.raises(ImageConversionError, match=r"'GIF'.*JPEG, PNG"):
        compressed_to_rgb(_compressed(stream.getvalue(), format="gif"))


def test_compressed_depth_streams_are_rejected_naming_the_format():
    with pytest.raises(ImageConversionError, match="'16UC1; compressedDepth'"):
        compressed_to_rgb(_compressed(b"\x00" * 16, format="16UC1; compressedDepth"))


def test_compressed_frames_over_max_pixels_are_rejected_before_decoding():
    rows = [b"".join(bytes(pixel) for pixel in row) for row in RGB_PIXELS]
    msg = _compressed(_png(3, 2, color_type=2, bit_depth=8, rows=rows))

    with pytest.raises(ImageConversionError, match="max_pixels=5"):
        compressed_to_rgb(msg, max_pixels=5)


def test_empty_compressed_data_is_rejected():
    with pytest.raises(ImageConversionError, match="no data"):
        compressed_to_rgb(_compressed(b"", format="jpeg"))


# ----------------------------------------------------------------------------------------
# arrays -> messages


def _header():
    header = Header(frame_id="camera_optical")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    return header


def test_rgb_output_round_trips_and_keeps_the_header():
    rgb = np.array(RGB_PIXELS, dtype=np.uint8)

    msg = rgb_to_image_msg(rgb, _header())

    assert (msg.encoding, msg.width, msg.height, msg.step) == ("rgb8", 3, 2, 9)
    assert msg.header.frame_id == "camera_optical" and msg.header.stamp.nanosec == 345
    assert bytes(msg.data[:3]) == bytes([255, 0, 0])
    np.testing.assert_array_equal(image_to_rgb(msg), rgb)
    np.testing.assert_array_equal(image_msg_to_array(msg), rgb)


def test_bgr8_output_stores_blue_first_and_reads_back_as_rgb():
    rgb = np.array(RGB_PIXELS, dtype=np.uint8)

    msg = rgb_to_image_msg(rgb, _header(), encoding="bgr8")

    assert bytes(msg.data[:6]) == bytes([0, 0, 255, 0, 255, 0])
    np.testing.assert_array_equal(image_to_rgb(msg), rgb)


def test_non_contiguous_arrays_are_written_correctly():
    rgb = np.array(RGB_PIXELS, dtype=np.uint8)
    transposed = np.ascontiguousarray(rgb.transpose(1, 0, 2)).transpose(1, 0, 2)

    msg = rgb_to_image_msg(transposed, _header())

    np.testing.assert_array_equal(image_to_rgb(msg), rgb)


def test_output_data_is_a_byte_array():
    msg = rgb_to_image_msg(np.zeros((2, 3, 3), dtype=np.uint8), _header())

    assert msg.data.typecode == "B" and len(msg.data) == 18


def test_rgb_output_rejects_other_shapes_and_dtypes_naming_them():
    with pytest.raises(ImageConversionError, match=r"\(2, 3\)"):
        rgb_to_image_msg(np.zeros((2, 3), dtype=np.uint8), _header())
    with pytest.raises(ImageConversionError, match="float32"):
        rgb_to_image_msg(np.zeros((2, 3, 3), dtype=np.float32), _header())
    with pytest.raises(ImageConversionError, match="'rgba8'"):
        rgb_to_image_msg(np.zeros((2, 3, 3), dtype=np.uint8), _header(), encoding="rgba8")


def test_mono8_mask_round_trips():
    mask = np.array([[0, 1, 2], [255, 254, 0]], dtype=np.int64)

    msg = mask_to_image_msg(mask, _header(), "mono8")

    assert (msg.encoding, msg.step) == ("mono8", 3)
    assert bytes(msg.data) == bytes([0, 1, 2, 255, 254, 0])
    np.testing.assert_array_equal(image_msg_to_array(msg), mask)


def test_mono16_mask_round_trips_with_the_endianness_it_declares():
    mask = np.array([[0, 1, 300], [65535, 256, 7]], dtype=np.int32)

    msg = mask_to_image_msg(mask, _header(), "mono16")

    assert (msg.encoding, msg.step) == ("mono16", 6)
    assert msg.is_bigendian == int(sys.byteorder == "big")
    first_value = struct.unpack(">H" if msg.is_bigendian else "<H", bytes(msg.data[4:6]))[0]
    assert first_value == 300
    np.testing.assert_array_equal(image_msg_to_array(msg), mask)


def test_mask_values_that_do_not_fit_the_encoding_are_rejected_naming_them():
    mask = np.array([[0, 300]], dtype=np.int64)

    with pytest.raises(ImageConversionError, match=r"0\.\.300 .*mono8"):
        mask_to_image_msg(mask, _header(), "mono8")


def test_mask_encoding_other_than_mono8_or_mono16_is_rejected():
    with pytest.raises(ImageConversionError, match="'rgb8'"):
        mask_to_image_msg(np.zeros((2, 3), dtype=np.uint8), _header(), "rgb8")


@pytest.mark.parametrize("label_count, unknown_value, encoding", [
    (3, 255, "mono8"),
    (255, 255, "mono8"),   # labels 0..254, unknown 255
    (254, 254, "mono8"),
    (3, 256, "mono16"),
    (256, 65535, "mono16"),
    (1000, 65535, "mono16"),
])
def test_mask_encoding_is_the_smallest_that_holds_every_value(label_count, unknown_value, encoding):
    assert mask_encoding(label_count, unknown_value) == encoding


def test_mask_encoding_rejects_an_unknown_value_that_is_a_label():
    with pytest.raises(ImageConversionError, match="unknown_value 255"):
        mask_encoding(256, 255)


def test_confidence_map_round_trips_as_32fc1():
    confidence = np.array([[0.0, 0.25, 1.0], [0.5, 0.125, 0.75]], dtype=np.float64)

    msg = float_map_to_image_msg(confidence, _header())

    assert (msg.encoding, msg.step, msg.width, msg.height) == ("32FC1", 12, 3, 2)
    assert msg.is_bigendian == int(sys.byteorder == "big")
    first_two = struct.unpack(">ff" if msg.is_bigendian else "<ff", bytes(msg.data[:8]))
    assert first_two == (0.0, 0.25)
    values = image_msg_to_array(msg)
    assert values.dtype == np.float32
    np.testing.assert_array_equal(values, confidence.astype(np.float32))


def test_confidence_map_rejects_integer_arrays():
    with pytest.raises(ImageConversionError, match="int64"):
        float_map_to_image_msg(np.zeros((2, 3), dtype=np.int64), _header())


def test_padded_rgba_reads_back_as_stored():
    values = image_msg_to_array(_image("rgba8", padding=2))

    assert values.shape == (2, 3, 4)
    np.testing.assert_array_equal(values[..., 3], np.full((2, 3), ALPHA))
    np.testing.assert_array_equal(values[..., :3], np.array(RGB_PIXELS, dtype=np.uint8))


# ----------------------------------------------------------------------------------------
# camera info and colors


def _camera_info():
    info = CameraInfo(width=640, height=480, distortion_model="plumb_bob")
    info.header.frame_id = "camera_optical"
    info.d = [0.1, -0.2, 0.001, 0.002, 0.0]
    info.k = [500.0, 1.0, 320.0, 0.0, 400.0, 240.0, 0.0, 0.0, 1.0]
    info.p = [500.0, 1.0, 320.0, -25.0, 0.0, 400.0, 240.0, 5.0, 0.0, 0.0, 1.0, 0.0]
    return info


def test_camera_info_scaling_scales_k_and_p_per_axis():
    scaled = scale_camera_info(_camera_info(), 320, 120)  # x / 2, y / 4

    assert (scaled.width, scaled.height) == (320, 120)
    np.testing.assert_allclose(scaled.k, [250.0, 0.5, 160.0, 0.0, 100.0, 60.0, 0.0, 0.0, 1.0])
    np.testing.assert_allclose(
        scaled.p, [250.0, 0.5, 160.0, -12.5, 0.0, 100.0, 60.0, 1.25, 0.0, 0.0, 1.0, 0.0])


def test_camera_info_scaling_keeps_distortion_header_and_the_original():
    info = _camera_info()

    scaled = scale_camera_info(info, 320, 240)

    assert list(scaled.d) == [0.1, -0.2, 0.001, 0.002, 0.0]
    assert scaled.distortion_model == "plumb_bob"
    assert scaled.header.frame_id == "camera_optical"
    assert (info.width, info.height, info.k[0]) == (640, 480, 500.0)


def test_camera_info_without_a_size_cannot_be_scaled():
    with pytest.raises(ImageConversionError, match="0x0"):
        scale_camera_info(CameraInfo(), 320, 240)


def test_color_rgba_maps_0_255_to_0_1():
    color = color_rgba(255, 0, 51)

    assert (color.r, color.g, color.a) == (1.0, 0.0, 1.0)
    assert color.b == pytest.approx(0.2)


# ------------------------------------------------------------------------------- point clouds
def _points(count=3):
    from lseg_ros.geometry import LabelledPoints

    return LabelledPoints(xyz=np.array([[0.5, -0.25, 2.0], [1.0, 2.0, 3.0], [-1.5, 0.0, 0.75]], np.float32)[:count],
                          rgb=np.array([[255, 0, 0], [1, 2, 3], [0, 128, 255]], np.uint8)[:count],
                          label=np.array([0, 7, 300], np.uint16)[:count],
                          confidence=np.array([0.9, 0.5, np.nan], np.float32)[:count])


def test_semantic_cloud_bytes_are_the_documented_layout():
    from sensor_msgs.msg import PointField
    from std_msgs.msg import Header

    from lseg_ros.ros.conversions import semantic_cloud_msg

    header = Header(frame_id="camera_color_optical_frame")
    msg = semantic_cloud_msg(_points(), header)
    expected = b"".join(struct.pack("<fffIHxxf", x, y, z, (r << 16) | (g << 8) | b, label, conf)
                        for (x, y, z), (r, g, b), label, conf in zip(
                            [(0.5, -0.25, 2.0), (1.0, 2.0, 3.0), (-1.5, 0.0, 0.75)],
                            [(255, 0, 0), (1, 2, 3), (0, 128, 255)], [0, 7, 300], [0.9, 0.5, float("nan")]))
    assert bytes(msg.data) == expected
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (1, 3, 24, 72)
    assert not msg.is_bigendian and msg.is_dense and msg.header.frame_id == "camera_color_optical_frame"
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        ("x", 0, PointField.FLOAT32, 1), ("y", 4, PointField.FLOAT32, 1), ("z", 8, PointField.FLOAT32, 1),
        ("rgb", 12, PointField.FLOAT32, 1), ("label", 16, PointField.UINT16, 1),
        ("confidence", 20, PointField.FLOAT32, 1)]
    # rgb as PCL and rviz read it: the float32 field's bytes are 0x00RRGGBB little-endian (B, G, R, 0)
    assert bytes(msg.data)[12:16] == bytes([0, 0, 255, 0])


def test_semantic_cloud_reads_back_from_its_own_field_list():
    from std_msgs.msg import Header

    from lseg_ros.ros.conversions import cloud_msg_to_records, semantic_cloud_msg

    records = cloud_msg_to_records(semantic_cloud_msg(_points(), Header()))
    np.testing.assert_array_equal(np.stack([records["x"], records["y"], records["z"]], 1), _points().xyz)
    np.testing.assert_array_equal(records["label"], [0, 7, 300])
    packed = records["rgb"].view(np.uint32)
    np.testing.assert_array_equal(np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], 1),
                                  _points().rgb)


def test_empty_semantic_cloud_is_a_valid_message():
    from std_msgs.msg import Header

    from lseg_ros.ros.conversions import semantic_cloud_msg

    msg = semantic_cloud_msg(_points(0), Header())
    assert (msg.width, msg.row_step, len(msg.data)) == (0, 0, 0) and len(msg.fields) == 6


def test_semantic_cloud_reads_with_sensor_msgs_py_where_it_imports():
    point_cloud2 = pytest.importorskip("sensor_msgs_py.point_cloud2", reason="sensor_msgs_py has no wheel")
    from std_msgs.msg import Header

    from lseg_ros.ros.conversions import semantic_cloud_msg

    read = point_cloud2.read_points(semantic_cloud_msg(_points(), Header()), field_names=("x", "y", "z", "label"))
    assert [tuple(p) for p in read] == [(0.5, -0.25, 2.0, 0), (1.0, 2.0, 3.0, 7), (-1.5, 0.0, 0.75, 300)]
    every = point_cloud2.read_points(semantic_cloud_msg(_points(), Header()))
    packed = np.asarray(every["rgb"], dtype=np.float32).view(np.uint32)
    np.testing.assert_array_equal(packed, [0xFF0000, 0x010203, 0x0080FF])
    np.testing.assert_array_equal(np.asarray(every["confidence"]), _points().confidence)
    from lseg_ros.ros.conversions import xyz_cloud_msg

    xyz = point_cloud2.read_points_numpy(xyz_cloud_msg(_points().xyz, Header()))
    np.testing.assert_array_equal(xyz, _points().xyz)


def test_intrinsics_scale_like_the_published_camera_info():
    from lseg_ros.geometry import Intrinsics
    from lseg_ros.ros.conversions import scale_camera_info

    info = CameraInfo(width=640, height=480, k=[600.0, 0, 319.5, 0, 610.0, 239.5, 0, 0, 1],
                      p=[600.0, 0, 319.5, 0, 0, 610.0, 239.5, 0, 0, 0, 1, 0])
    scaled = scale_camera_info(info, 160, 120)
    k = Intrinsics.from_k(info.k, 640, 480).scaled(160, 120)
    assert (k.fx, k.cx, k.fy, k.cy) == (scaled.k[0], scaled.k[2], scaled.k[4], scaled.k[5])


def test_obstacle_cloud_bytes_are_xyz_float32():
    from sensor_msgs.msg import PointField
    from std_msgs.msg import Header

    from lseg_ros.ros.conversions import xyz_cloud_msg

    msg = xyz_cloud_msg(_points().xyz, Header(frame_id="cam"))
    assert bytes(msg.data) == struct.pack("<9f", 0.5, -0.25, 2.0, 1.0, 2.0, 3.0, -1.5, 0.0, 0.75)
    assert (msg.height, msg.width, msg.point_step, msg.row_step, msg.is_dense) == (1, 3, 12, 36, True)
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        ("x", 0, PointField.FLOAT32, 1), ("y", 4, PointField.FLOAT32, 1), ("z", 8, PointField.FLOAT32, 1)]
    assert xyz_cloud_msg(np.zeros((0, 3), np.float32), Header()).width == 0


# ----------------------------------------------------------------- depth, embeddings, objects
def test_depth_images_in_millimetres_and_metres_become_metres_with_nan_for_no_return():
    from lseg_ros.ros.conversions import depth_image_to_metres, metres_to_depth_msg

    header = Header(frame_id="depth")
    raw = Image(header=header, height=1, width=3, encoding="16UC1", step=6, is_bigendian=0,
                data=struct.pack("<3H", 0, 1500, 65535))
    np.testing.assert_allclose(depth_image_to_metres(raw), [[np.nan, 1.5, 65.535]])
    metres = np.array([[np.nan, 1.2344, 3.0]], np.float32)
    as_mm = metres_to_depth_msg(metres, header)
    assert as_mm.encoding == "16UC1" and bytes(as_mm.data) == struct.pack("<3H", 0, 1234, 3000)
    as_m = metres_to_depth_msg(metres, header, "32FC1")
    np.testing.assert_array_equal(depth_image_to_metres(as_m), metres)
    with pytest.raises(ImageConversionError, match="'rgb8'.*16UC1, mono16, 32FC1"):
        depth_image_to_metres(rgb_to_image_msg(np.zeros((2, 2, 3), np.uint8), header))


def test_feature_map_bytes_are_row_major_little_endian_float16():
    from lseg_ros.msg import FeatureMap
    from lseg_ros.ros.conversions import feature_map_msg, feature_map_to_array

    embeddings = np.arange(2 * 3 * 4, dtype=np.float16).reshape(2, 3, 4) / 8
    msg = feature_map_msg(FeatureMap, embeddings, Header(frame_id="cam"), "model x", (16.0, 12.5), 100.0)
    assert (msg.dim, msg.height, msg.width, msg.scale_x, msg.scale_y, msg.logit_scale, msg.model) == (
        4, 2, 3, 16.0, 12.5, 100.0, "model x")
    assert bytes(msg.data) == struct.pack("<24e", *[float(v) for v in embeddings.ravel()])
    np.testing.assert_array_equal(feature_map_to_array(msg), embeddings)
    msg.dim = 5
    with pytest.raises(ValueError, match="48 bytes"):
        feature_map_to_array(msg)


def test_object_array_and_markers_carry_the_objects():
    from visualization_msgs.msg import Marker

    from lseg_ros.msg import Object, ObjectArray
    from lseg_ros.objects import DetectedObject
    from lseg_ros.ros.conversions import object_array_msg, object_markers

    nan3 = np.full(3, np.nan, np.float32)
    objects = [DetectedObject(1, 40, (3, 4, 5, 6), 0.75, np.array([0.5, -0.2, 2.0], np.float32),
                              np.array([0.4, 0.8, 0.1], np.float32), 38),
               DetectedObject(0, 9, (0, 0, 3, 3), 0.5, nan3, nan3.copy(), 0)]
    msg = object_array_msg(ObjectArray, Object, objects, ["floor", "door"], Header(frame_id="cam"), 7, True)
    first = msg.objects[0]
    assert (first.label, first.label_index, first.pixel_count, first.depth_pixel_count) == ("door", 1, 40, 38)
    assert (first.roi.x_offset, first.roi.y_offset, first.roi.width, first.roi.height) == (3, 4, 5, 6)
    assert (first.centroid.x, first.centroid.z, first.extent.y) == pytest.approx((0.5, 2.0, 0.8))
    assert msg.generation == 7 and msg.has_depth and np.isnan(msg.objects[1].centroid.x)
    markers = object_markers(msg, [(10, 20, 30), (255, 0, 0)]).markers
    assert [m.type for m in markers[1:]] == [Marker.CUBE, Marker.TEXT_VIEW_FACING]  # no marker without 3D
    assert markers[0].action == Marker.DELETEALL and markers[2].text == "door"
    assert (markers[1].color.r, markers[1].color.g) == (1.0, 0.0)
    assert (markers[1].scale.x, markers[1].scale.y) == pytest.approx((0.4, 0.8))
