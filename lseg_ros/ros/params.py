"""ROS parameters declared from the config dataclasses (one source of truth).

Every leaf field of :class:`~lseg_ros.config.SegmenterConfig` and :class:`NodeConfig`
becomes a parameter of the same dotted name (``dense_clip.mode``), with the field's
documentation as its description and its bounds as its range. Fields that need a model
rebuild are read-only at run time; DYNAMIC_PARAMETERS (runtime_params.py's table) can
change while running.
"""
from __future__ import annotations

import math
import re
import typing
from dataclasses import dataclass
from typing import Any, Dict, List

from ..config import (Range, SegmenterConfig, setting, check_values, field_docs, field_metadata, flatten, from_dict,
                      params_file_data, range_checks, with_overrides)
from ..profiles import PROFILE_NAMES, profile_fields
from .runtime_params import RUNTIME_PARAMETERS

#: parameters that may change while the node runs (all others need a restart)
DYNAMIC_PARAMETERS = tuple(RUNTIME_PARAMETERS)


@dataclass
class NodeConfig:
    image_transport: str = setting("Transport of the image input, as image_transport names it: raw (the "
                                   "`image` topic, sensor_msgs/Image) | compressed (`<image>/compressed`, "
                                   "JPEG/PNG sensor_msgs/CompressedImage, where <image> is the resolved, "
                                   "remapped image topic).", "raw")
    use_compressed: bool = setting("Deprecated (use image_transport:=compressed; removed in the next release): "
                                   "true selects the compressed transport.", False)
    max_image_pixels: int = setting("Frames with more pixels than this are rejected.", 4096 * 4096,
                                    bounds=Range(1, 16384 * 16384))
    max_labels: int = setting("Label queries with more labels than this are rejected.", 255, bounds=Range(1, 4096))
    max_label_chars: int = setting("Label names or prompts longer than this are rejected.", 256, bounds=Range(1, 4096))
    max_prompts_per_label: int = setting("Label queries with more extra prompts per label than this are rejected.", 32,
                                         bounds=Range(0, 256))
    set_labels_timeout: float = setting("Longest time (s) a ~/set_labels call waits for its label set to be "
                                        "encoded and put in use before it answers failure (the set is still "
                                        "applied when ready).", 30.0,
                                        bounds=Range(0.0, 3600.0, low_open=True, note="(seconds)"))
    image_qos: str = setting("Image subscription QoS: sensor_data (best effort; matches any camera) | reliable "
                             "(matches only reliable publishers; use it for large frames between processes, "
                             "which best-effort DDS may drop).", "sensor_data")
    depth_qos: str = setting("QoS of the depth and camera_info subscriptions: reliable (as camera drivers "
                             "publish by default; matches only reliable publishers, and large depth images "
                             "between processes arrive) | sensor_data (best effort; matches any publisher, but "
                             "1280x720 depth from another process may never arrive).", "reliable")
    cameras: List[str] = setting("Names of several cameras served by this one node, e.g. 'front, rear': each "
                                 "subscribes `<name>/image` (`<name>/camera_info`, `<name>/depth`) and publishes "
                                 "under `~/<name>/`; the newest frames of all cameras are segmented in one "
                                 "batched forward. Empty: one camera on `image`, outputs under `~/`.", factory=list)
    overlay_alpha: float = setting("Opacity of label colors in ~/overlay.", 0.5, bounds=Range(0.0, 1.0))
    diagnostics_period: float = setting("Seconds between /diagnostics messages.", 1.0,
                                        bounds=Range(0.0, 3600.0, low_open=True, note="(seconds)"))
    input_timeout: float = setting("Seconds without a frame after which diagnostics WARN (naming the subscribed "
                                   "topic) and a log line says so; 0 disables.", 5.0,
                                   bounds=Range(0.0, note="(seconds; 0 disables)"))
    min_rate: float = setting("Lowest acceptable input frame rate (Hz) for the 'input frequency' diagnostics "
                              "(diagnostic_updater FrequencyStatus); 0 = any rate above zero.", 0.0,
                              bounds=Range(0.0, note="(Hz)"))
    max_rate: float = setting("Highest acceptable input frame rate (Hz); 0 = no upper bound.", 0.0,
                              bounds=Range(0.0, note="(Hz; 0 = no upper bound)"))
    rate_tolerance: float = setting("Relative tolerance on min_rate/max_rate.", 0.1,
                                    bounds=Range(0.0, 1.0, high_open=True))
    rate_window: int = setting("Diagnostics periods the input rate is averaged over.", 5, bounds=Range(1, 1000))
    max_stamp_delay: float = setting("Largest acceptable age (s) of a frame's header stamp on arrival "
                                     "('input timestamps' diagnostics, diagnostic_updater TimeStampStatus).", 5.0)
    min_stamp_delay: float = setting("Smallest acceptable age (s); negative allows stamps that far in the "
                                     "future.", -1.0)
    depth_slop: float = setting("Largest stamp difference (s) between a color frame and the depth image paired "
                                "with it (the nearest one wins; an exact match always does). The image path "
                                "never waits for depth: a frame without a depth image this close gets no 3D "
                                "outputs and is counted as unmatched.", 0.05, bounds=Range(0.0, note="(seconds)"))
    points_stride: int = setting("~/points and ~/obstacle_points: every n-th pixel of the mask's grid along "
                                 "each axis (1 = every pixel: 307,200 points at 640x480).", 2, bounds=Range(1, 4096))
    max_points: int = setting("Most points in one ~/points or ~/obstacle_points cloud: above it the pixel "
                              "stride grows (beyond points_stride) until the grid has at most this many "
                              "pixels, which bounds the cloud's memory whatever the frame size.", 1_000_000,
                              bounds=Range(1, 100_000_000))
    min_depth: float = setting("Depths (m) below this are left out of ~/points, ~/obstacle_points and the "
                               "objects' 3D values.", 0.1, bounds=Range(0.0, note="(metres)"))
    max_depth: float = setting("Depths (m) above this are left out.", 10.0,
                               bounds=Range(0.0, low_open=True, note="(metres)"))
    points_include_unknown: bool = setting("Include pixels of no label (unknown_value) in ~/points.", False)
    obstacle_labels: List[str] = setting("Labels whose pixels are published on ~/obstacle_points (for Nav2's "
                                         "obstacle/voxel layer), e.g. 'person, stairs, glass door'; a label "
                                         "with synonyms is matched by any of its names. Empty: nothing is "
                                         "published.", factory=list)
    min_object_pixels: int = setting("~/objects: connected regions smaller than this (mask pixels) are not "
                                     "objects.", 50, bounds=Range(1, note="(mask pixels)"))
    object_depth_band: float = setting("~/objects: points farther than this (m) from a region's median depth "
                                       "are left out of its centroid and extent (background bleeding into "
                                       "the outline).", 0.5, bounds=Range(0.0, low_open=True, note="(metres)"))
    embeddings_every_n: int = setting("~/embeddings is published for every n-th processed frame (when "
                                      "subscribed).", 1, bounds=Range(1, 100000))

    def validate(self) -> "NodeConfig":
        checks = range_checks(self) + [
            (self.image_qos in ("sensor_data", "reliable"), "image_qos", "sensor_data, reliable"),
            (self.depth_qos in ("sensor_data", "reliable"), "depth_qos", "sensor_data, reliable"),
            (self.image_transport in ("raw", "compressed"), "image_transport", "raw, compressed"),
            (self.min_rate >= 0 and self.max_rate >= 0 and (self.max_rate == 0 or self.max_rate >= self.min_rate),
             "min_rate/max_rate", "rates >= 0 Hz with max_rate 0 (no bound) or >= min_rate"),
            (self.max_stamp_delay > self.min_stamp_delay, "min_stamp_delay/max_stamp_delay", "min < max"),
            (0 <= self.min_depth < self.max_depth, "min_depth/max_depth", "0 <= min_depth < max_depth (metres)"),
        ]
        check_values(self, checks, "parameter")
        check_camera_names(self.cameras)
        return self


#: a camera name is one ROS name token: it becomes `<name>/image` and `~/<name>/mask`
CAMERA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_camera_names(names: List[str]) -> None:
    """ValueError naming the first camera name that is not a ROS name token or repeats one."""
    seen = set()
    for name in names:
        if not isinstance(name, str) or not CAMERA_NAME.fullmatch(name) or "__" in name:
            raise ValueError(f"invalid parameter cameras: camera name {name!r} in {names!r}; accepted: "
                             "unique ROS name tokens (letters, digits and single underscores, not starting "
                             "with a digit), e.g. 'front, rear'")
        if name in seen:
            raise ValueError(f"invalid parameter cameras: camera name {name!r} given twice in {names!r}; "
                             "each camera needs its own name")
        seen.add(name)


def declared_fields() -> Dict[str, tuple]:
    """{'name': (type, default, doc)} for every node parameter."""
    fields = dict(field_docs(SegmenterConfig))
    fields.update(field_docs(NodeConfig))
    return fields


def declare_parameters(node) -> None:
    """Declare every parameter. ``profile`` first: the others default to its settings, so a
    profile given as a parameter applies beneath any value given explicitly.

    Each descriptor carries the field's range (FloatingPointRange/IntegerRange, from the
    config field's bounds: rclpy refuses values outside it, naming value and range) and its
    accepted values as text, and is read-only unless the parameter is one of
    DYNAMIC_PARAMETERS. List parameters are typed STRING_ARRAY/... even when empty, and
    on/off settings (mha_fastpath, ...) take a string or a boolean (``-p mha_fastpath:=off``:
    ROS reads an unquoted off as false), read as "on"/"off" by :func:`read_configs`."""
    from rcl_interfaces.msg import ParameterDescriptor

    fields = declared_fields()
    metadata = declared_metadata()
    profile_type, profile_default, profile_doc = fields.pop("profile")
    profile = node.declare_parameter("profile", profile_default, ParameterDescriptor(
        name="profile", description=profile_doc, type=_parameter_type(profile_type), read_only=True)).value
    profile_defaults = flatten(SegmenterConfig.for_profile(profile)) if profile in PROFILE_NAMES else {}
    for name, (tp, default, doc) in fields.items():
        default = profile_defaults.get(name, default)
        descriptor = parameter_descriptor(name, tp, doc, metadata[name])
        if typing.get_origin(tp) in (list, List):
            _declare_list(node, name, tp, default, descriptor)
        else:
            node.declare_parameter(name, default, descriptor)
    lists = {name: tp for name, (tp, _, _) in fields.items() if typing.get_origin(tp) in (list, List)}
    node.add_pre_set_parameters_callback(lambda parameters: _typed_empty_lists(parameters, lists))


def parameter_descriptor(name: str, tp=None, doc: str = "", metadata=None):
    """The ParameterDescriptor of parameter ``name`` (of type ``tp``, documented ``doc``, with
    field ``metadata``; all looked up when not given): description, type (none for the
    dynamically typed lists and on/off settings), range, accepted values, read-only."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    if tp is None:
        tp, _, doc = declared_fields()[name]
    if metadata is None:
        metadata = declared_metadata()[name]
    is_list = typing.get_origin(tp) in (list, List)
    descriptor = ParameterDescriptor(name=name, description=doc, read_only=name not in DYNAMIC_PARAMETERS)
    # lists: rclpy types an empty list as BYTE_ARRAY (see _declare_list), and the node checks
    # their items with its own messages; on/off settings: a string or a boolean
    descriptor.dynamic_typing = is_list or bool(metadata.get("switch"))
    if not descriptor.dynamic_typing:
        descriptor.type = _parameter_type(tp)
    bounds = metadata.get("bounds")
    if bounds is not None and not is_list:
        descriptor.additional_constraints = f"accepted: {bounds.accepted(tp is int)}"
        if tp is int:
            descriptor.integer_range = [IntegerRange(
                from_value=int(bounds.low) if bounds.low is not None else -2 ** 63,
                to_value=int(bounds.high) if bounds.high is not None else 2 ** 63 - 1, step=0)]
        else:
            descriptor.floating_point_range = [FloatingPointRange(
                from_value=float(bounds.low) if bounds.low is not None else -math.inf,
                to_value=float(bounds.high) if bounds.high is not None else math.inf, step=0.0)]
    elif bounds is not None:
        descriptor.additional_constraints = f"accepted: items {bounds.accepted(True)}"
    elif metadata.get("switch"):
        descriptor.additional_constraints = "a string; a boolean reads as on (true) or off (false)"
    return descriptor


def _declare_list(node, name: str, tp, default, descriptor) -> None:
    """Declare list parameter ``name``; an empty value is stored typed (STRING_ARRAY for
    List[str]): rclpy would type it BYTE_ARRAY (or NOT_SET, from ``[]`` in a params file)."""
    from rcl_interfaces.msg import ParameterDescriptor
    from rclpy.parameter import Parameter

    node.declare_parameter(name, default, ParameterDescriptor(name=name, dynamic_typing=True))
    if not _plain(node.get_parameter(name).value):
        empty = Parameter(name, Parameter.Type(_parameter_type(tp)), [])
        # a statically typed descriptor refuses the untyped empty value and takes the typed one
        node.set_descriptor(name, ParameterDescriptor(name=name, type=_parameter_type(tp)),
                            alternative_value=empty.get_parameter_value())
    node.set_descriptor(name, descriptor)


def _typed_empty_lists(parameters: list, lists: Dict[str, Any]) -> list:
    """Pre-set callback: an empty list set for a list parameter (``lists``: name -> type;
    ``ros2 param set ... "[]"`` sends an empty BOOL_ARRAY) is stored typed, like the declared one."""
    from rclpy.parameter import Parameter

    typed = []
    for parameter in parameters:
        tp = lists.get(parameter.name)
        if tp is not None and parameter.type_.name.endswith("ARRAY") and len(parameter.value) == 0:
            parameter = Parameter(parameter.name, Parameter.Type(_parameter_type(tp)), [])
        typed.append(parameter)
    return typed


def declared_metadata() -> Dict[str, Any]:
    """{'name': field metadata (doc, bounds, switch)} for every node parameter."""
    metadata = dict(field_metadata(SegmenterConfig))
    metadata.update(field_metadata(NodeConfig))
    return metadata


def _parameter_type(tp) -> int:
    from rcl_interfaces.msg import ParameterType

    if typing.get_origin(tp) in (list, List):
        (item,) = typing.get_args(tp)
        return {str: ParameterType.PARAMETER_STRING_ARRAY, int: ParameterType.PARAMETER_INTEGER_ARRAY,
                float: ParameterType.PARAMETER_DOUBLE_ARRAY}[item]
    return {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
            float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}[tp]


def read_configs(node) -> tuple:
    """(SegmenterConfig, NodeConfig) from the node's current parameter values."""
    values = {name: node.get_parameter(name).value for name in declared_fields()}
    return configs_from_values(values)


def configs_from_values(values: Dict[str, Any]) -> tuple:
    segmenter_names = set(field_docs(SegmenterConfig))
    segmenter_config = with_overrides(SegmenterConfig(), {k: _plain(v) for k, v in values.items()
                                                          if k in segmenter_names})
    node_values = {k: _plain(v) for k, v in values.items() if k in field_docs(NodeConfig)}
    return segmenter_config.validate(), from_dict(NodeConfig, node_values, source="node parameters").validate()


def _plain(value: Any) -> Any:
    # rclpy returns array parameters as array.array or numpy arrays, and an empty list as None
    if value is None:
        return []
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return value.tolist()
    return value


def render_params_yaml(node_name: str = "lseg_node") -> str:
    """config/lseg.yaml: every parameter at its default, with its documentation as a comment.

    Regenerate with ``python -m lseg_ros.ros.params > config/lseg.yaml``; a test checks the
    shipped file equals this output, so defaults are written only in the dataclasses.
    """
    import json

    lines = ["# lseg_node parameters (generated from lseg_ros.config / lseg_ros.ros.params;",
             "# regenerate with: python -m lseg_ros.ros.params > config/lseg.yaml)",
             "# '/**/' applies the file to the node in any namespace.",
             f"{next(iter(params_file_data({}, node_name)))}:", "  ros__parameters:"]
    left = set(profile_fields())
    for name, (_, default, doc) in declared_fields().items():
        lines.append(f"    # {doc}")
        if name in left:  # a profile sets it: the file must not, or profile:= could not apply
            lines.append(f"    # {name}: {json.dumps(default)}  (robot profile's value; set by the profile, "
                         f"uncomment to override)")
        else:
            lines.append(f"    {name}: {json.dumps(default)}")
    return "\n".join(lines) + "\n"


def parameter_overrides(values: Dict[str, Any]) -> list:
    """rclpy Parameters for ``Node(parameter_overrides=...)``, typed from the config fields
    (so an empty list is a STRING_ARRAY, not rclpy's guess)."""
    from rclpy.parameter import Parameter

    fields = declared_fields()
    metadata = declared_metadata()
    overrides = []
    for name, value in values.items():
        if name not in fields:
            raise ValueError(f"unknown lseg_node parameter {name!r}; known: {sorted(fields)}")
        if metadata[name].get("switch") and isinstance(value, bool):  # on/off given as a boolean
            overrides.append(Parameter(name, Parameter.Type.BOOL, value))
        else:
            overrides.append(Parameter(name, Parameter.Type(_parameter_type(fields[name][0])), value))
    return overrides


def render_parameter_table() -> str:
    """The parameter table of docs/parameters.md (a test checks the file holds exactly this)."""
    rows = ["| parameter | default | run-time | description |", "|---|---|---|---|"]
    metadata = declared_metadata()
    for name, (tp, default, doc) in declared_fields().items():
        shown = ", ".join(map(str, default)) if isinstance(default, list) else default
        dynamic = "yes" if name in DYNAMIC_PARAMETERS else "restart"
        bounds = metadata[name].get("bounds")
        if bounds is not None:  # the range the node accepts (and its descriptor publishes)
            item = typing.get_args(tp)[0] if typing.get_origin(tp) in (list, List) else tp
            doc = f"{doc} Accepted: {'items ' if item is not tp else ''}{bounds.accepted(item is int)}."
        rows.append(f"| `{name}` | `{shown}` | {dynamic} | {doc.replace('|', '/')} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    import sys

    print(render_parameter_table() if sys.argv[1:] == ["--table"] else render_params_yaml(), end="")
