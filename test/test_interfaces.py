"""lseg_ros.msg: the generated message types have the specified fields and serialize.

Needs the interfaces built into the environment: scripts/build_interfaces.sh (or colcon).
"""
import math

import pytest

try:
    from lseg_ros.msg import ConfidenceMaps, FeatureMap, LabelQuery, LabelSpec, Object, ObjectArray, SegmentationInfo
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(f"lseg_ros.msg is not built ({error}); run scripts/build_interfaces.sh "
                      f"or build the package with colcon") from error

from sensor_msgs.msg import Image
from std_msgs.msg import ColorRGBA

pytestmark = pytest.mark.ros


@pytest.mark.parametrize("message_type, fields", [
    (LabelSpec, {"name": "string", "prompts": "sequence<string>", "threshold": "float"}),
    (LabelQuery, {"header": "std_msgs/Header", "labels": "sequence<lseg_ros/LabelSpec>"}),
    (SegmentationInfo, {"header": "std_msgs/Header", "generation": "uint32", "labels": "sequence<string>",
                        "colors": "sequence<std_msgs/ColorRGBA>", "unknown_value": "uint16",
                        "model": "string"}),
    (ConfidenceMaps, {"header": "std_msgs/Header", "labels": "sequence<string>", "generation": "uint32",
                      "scale": "float", "maps": "sequence<sensor_msgs/Image>"}),
    (Object, {"label": "string", "label_index": "uint16", "confidence": "float", "pixel_count": "uint32",
              "roi": "sensor_msgs/RegionOfInterest", "centroid": "geometry_msgs/Point",
              "extent": "geometry_msgs/Vector3", "depth_pixel_count": "uint32"}),
    (ObjectArray, {"header": "std_msgs/Header", "generation": "uint32", "has_depth": "boolean",
                   "objects": "sequence<lseg_ros/Object>"}),
    (FeatureMap, {"header": "std_msgs/Header", "model": "string", "dim": "uint32", "height": "uint32",
                  "width": "uint32", "scale_x": "float", "scale_y": "float", "logit_scale": "float",
                  "is_bigendian": "boolean", "data": "sequence<uint8>"}),
], ids=lambda value: getattr(value, "__name__", ""))
def test_message_has_the_specified_fields_in_order(message_type, fields):
    assert message_type.get_fields_and_field_types() == fields
    assert list(message_type.get_fields_and_field_types()) == list(fields)


def test_label_spec_threshold_defaults_to_zero_meaning_the_node_default():
    assert LabelSpec().threshold == 0.0
    assert LabelSpec().prompts == []


def test_label_spec_threshold_holds_nan_meaning_the_node_default():
    assert math.isnan(LabelSpec(threshold=float("nan")).threshold)


def test_unknown_value_is_a_16_bit_unsigned_integer():
    assert SegmentationInfo(unknown_value=65535).unknown_value == 65535
    with pytest.raises(AssertionError):
        SegmentationInfo(unknown_value=65536, check_fields=True)


def _round_trip(message):
    from rclpy.serialization import deserialize_message, serialize_message

    return deserialize_message(serialize_message(message), type(message))


def test_label_query_serializes_and_deserializes():
    query = LabelQuery(labels=[LabelSpec(name="door", prompts=["a door", "a doorway"], threshold=0.25),
                               LabelSpec(name="chair")])
    query.header.frame_id = "map"

    received = _round_trip(query)

    assert received == query
    assert [label.name for label in received.labels] == ["door", "chair"]


def test_segmentation_info_serializes_and_deserializes():
    info = SegmentationInfo(labels=["door", "chair"], unknown_value=255, model="dense_clip/ViT-B-16",
                            colors=[ColorRGBA(r=1.0, a=1.0), ColorRGBA(g=1.0, a=1.0)])

    assert _round_trip(info) == info


def test_confidence_maps_serialize_and_deserialize():
    confidence = Image(height=1, width=2, encoding="32FC1", step=8, data=bytes(range(8)))
    maps = ConfidenceMaps(labels=["door"], maps=[confidence])

    received = _round_trip(maps)

    assert received.maps[0].encoding == "32FC1"
    assert bytes(received.maps[0].data) == bytes(range(8))


def test_encode_text_service_has_the_specified_fields():
    from lseg_ros.srv import EncodeText

    assert EncodeText.Request.get_fields_and_field_types() == {"texts": "sequence<string>"}
    assert EncodeText.Response.get_fields_and_field_types() == {
        "success": "boolean", "message": "string", "model": "string", "dim": "uint32", "logit_scale": "float",
        "embeddings": "sequence<float>"}


def test_object_array_with_nan_positions_round_trips():
    obj = Object(label="door", label_index=2, confidence=0.5, pixel_count=40)
    obj.centroid.x = obj.extent.z = float("nan")
    received = _round_trip(ObjectArray(objects=[obj], has_depth=False))
    assert received.objects[0].label == "door" and math.isnan(received.objects[0].centroid.x)
