"""The launch file's arguments, derived from the node's parameter dataclasses.

Every lseg_node parameter is a launch argument of the same name (``short_side:=336``,
``dense_clip.mode:=sclip``); empty (the default) leaves the value to the params file and
the profile, so no default is written twice. The launch file adds the topic remaps, the
namespace, ``use_sim_time``, ``log_level``, the params file and rviz. Nothing here imports
launch: the launch file (launch/lseg.launch.py) wraps these in its actions, and the tests
check them without a ROS installation.
"""
from __future__ import annotations

import typing
from typing import Any, Dict, List, Mapping, Tuple

from ..config import coerce
from ..validation import parse_label_text
from .params import declared_fields, declared_metadata

NODE_NAME = "lseg_node"

#: launch argument -> (default, description): the node's input topics, remapped
TOPIC_ARGUMENTS: Dict[str, Tuple[str, str]] = {
    "image": ("/camera/color/image_raw", "camera image topic (sensor_msgs/Image); with image_transport:=compressed "
                                         "<image>/compressed is used"),
    "camera_info": ("/camera/color/camera_info", "camera info topic (optional; rescaled to ~/camera_info; its K "
                                                 "back-projects depth)"),
    "depth": ("/camera/aligned_depth_to_color/image_raw",
              "depth image registered to the color image (optional; 16UC1 mm or 32FC1 m): ~/points, "
              "~/obstacle_points, 3D ~/objects"),
    "labels_topic": ("labels", "std_msgs/String topic with labels ('door, chair'; ';' between synonyms)"),
    "remaps": ("", "more topic remaps 'from:=to', separated by commas; with the cameras parameter each camera's "
                   "inputs, e.g. 'front/image:=/front/color/image_raw, front/camera_info:=/front/color/camera_info'"),
}

#: launch argument -> (default, description): how the node is run
RUN_ARGUMENTS: Dict[str, Tuple[str, str]] = {
    "namespace": ("", "node namespace"),
    "use_sim_time": ("false", "true: the node's clock follows /clock (simulation, rosbag play --clock)"),
    "log_level": ("info", "lseg_node log level: debug | info | warn | error | fatal"),
    "lifecycle": ("false", "true: run lseg_lifecycle_node, a managed node that starts unconfigured (configure "
                           "loads the model, activate segments: ros2 lifecycle set <node> configure, or a "
                           "lifecycle manager)"),
    "rviz": ("false", "true: start rviz2 with config/lseg.rviz (only when rviz2 is installed)"),
    "rviz_fixed_frame": ("camera_color_optical_frame",
                         "rviz fixed frame: image displays do not use TF, so any frame works; give the camera's "
                         "optical frame (header.frame_id) to silence rviz's 'frame does not exist' status"),
}

#: the executable each value of the lifecycle argument runs
EXECUTABLES = {False: "lseg_node", True: "lseg_lifecycle_node"}

LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")


def parameter_arguments() -> Dict[str, Tuple[str, str]]:
    """{parameter: ('', description)} for every lseg_node parameter."""
    arguments = {}
    for name, (tp, default, doc) in declared_fields().items():
        shown = ", ".join(map(str, default)) if isinstance(default, list) else default
        arguments[name] = ("", f"{doc} [parameter {name}; empty: from params_file and profile (default {shown})]")
    return arguments


def launch_arguments(params_file: str) -> Dict[str, Tuple[str, str]]:
    """{name: (default, description)} of every launch argument, in the order `ros2 launch -s` lists them."""
    arguments = dict(TOPIC_ARGUMENTS)
    arguments["params_file"] = (params_file, "lseg_node parameters YAML (every value a launch argument leaves empty)")
    arguments.update(RUN_ARGUMENTS)
    arguments.update(parameter_arguments())
    return arguments


def parse_launch_bool(argument: str, value: str) -> bool:
    """'true' | 'false' | '1' | '0' (any case), as launch's IfCondition reads them."""
    if value.lower() not in ("true", "false", "1", "0"):
        raise ValueError(f"launch argument {argument}:={value!r}; accepted: true | false")
    return value.lower() in ("true", "1")


def parse_log_level(value: str) -> str:
    if value.lower() not in LOG_LEVELS:
        raise ValueError(f"launch argument log_level:={value!r}; accepted: {' | '.join(LOG_LEVELS)}")
    return value.lower()


def node_parameters(values: Mapping[str, str]) -> Dict[str, Any]:
    """Typed lseg_node parameter values of the non-empty parameter arguments in ``values``
    (launch passes strings; a string given to a number or bool parameter would stop the
    node). Lists read like the labels topic ('person; man, door'); on/off settings take a
    boolean's spellings too (true -> on); ValueError names a bad one."""
    fields = declared_fields()
    switches = {name for name, metadata in declared_metadata().items() if metadata.get("switch")}
    parameters: Dict[str, Any] = {}
    for name, text in values.items():
        if name not in fields:
            raise ValueError(f"{name!r} is not an lseg_node parameter")
        if text == "":
            continue
        tp = fields[name][0]
        if tp is bool:
            parameters[name] = parse_launch_bool(name, text)
        elif name in switches:
            parameters[name] = switch_text(text)
        elif typing.get_origin(tp) in (list, List):
            items = parse_label_text(text) if name == "labels" else _list_text(text)
            parameters[name] = coerce(items, tp, name)
        else:
            try:
                parameters[name] = coerce(text, tp, name)
            except ValueError as error:
                raise ValueError(f"launch argument {name}:={text!r}: {error}") from None
    return parameters


#: a boolean's spellings (launch's, YAML 1.1's) -> the on/off settings' value (mha_fastpath:=true)
SWITCH_SPELLINGS = {"on": "on", "true": "on", "yes": "on", "1": "on", "off": "off", "false": "off", "no": "off",
                    "0": "off"}


def switch_text(text: str) -> str:
    """An on/off setting's argument (``mha_fastpath:=off``, ``attribute_prompts:=True``): a
    boolean spelling, any case, is "on"/"off"; other words (auto, events) pass as they are."""
    return SWITCH_SPELLINGS.get(text.strip().lower(), text)


def _list_text(text: str) -> List[str]:
    """A list argument's items: 'front, rear' or '[front, rear]' (quotes around items allowed)."""
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    return [item.strip().strip("'\"").strip() for item in text.split(",") if item.strip().strip("'\"").strip()]


def parse_remaps(text: str) -> List[Tuple[str, str]]:
    """(from, to) pairs of the remaps argument: 'front/image:=/front/color/image_raw, ...'."""
    pairs = []
    for item in _list_text(text):
        source, separator, target = (part.strip() for part in item.partition(":="))
        if not separator or not source or not target:
            raise ValueError(f"launch argument remaps: {item!r} is not a remap; accepted: 'from:=to' items "
                             "separated by commas, e.g. 'front/image:=/front/color/image_raw'")
        pairs.append((source, target))
    return pairs


def remappings(image: str, camera_info: str, labels_topic: str, depth: str = "depth",
               remaps: str = "") -> List[Tuple[str, str]]:
    """The node's relative input topics remapped to the launch arguments' topics, then the
    ``remaps`` argument's (each camera's inputs with the cameras parameter); the compressed
    transport follows ``image`` (or ``<camera>/image``) by itself (<image>/compressed)."""
    return [("image", image), ("camera_info", camera_info), ("labels", labels_topic), ("depth", depth)] + \
        parse_remaps(remaps)


#: rviz display name -> what it shows: the camera input, or one of lseg_node's outputs
RVIZ_DISPLAYS = {"Camera": None, "Overlay": "overlay", "Mask": "mask", "Confidence": "confidence_image",
                 "Points": "points", "Objects": "markers"}


def node_topic(namespace: str, output: str) -> str:
    """The absolute topic of lseg_node's private output ``~/<output>`` in ``namespace``."""
    prefix = "/".join(part for part in namespace.strip("/").split("/") if part)
    return f"/{prefix}/{NODE_NAME}/{output}" if prefix else f"/{NODE_NAME}/{output}"


def render_rviz_config(template_text: str, image: str, namespace: str, fixed_frame: str = "",
                       camera: str = "") -> str:
    """config/lseg.rviz with its displays pointed at this launch's topics: the camera at the
    (remapped) ``image`` topic, the overlay, mask and confidence at lseg_node's outputs in
    ``namespace`` (a relative ``image`` is resolved in the namespace, as the node resolves
    it), and ``fixed_frame`` (if given) as rviz's fixed frame. With several cameras,
    ``camera`` names the one shown (its outputs are ``~/<camera>/overlay``, ...)."""
    import yaml

    config = yaml.safe_load(template_text)
    if fixed_frame:
        config["Visualization Manager"]["Global Options"]["Fixed Frame"] = fixed_frame
    if not image.startswith("/"):
        image = "/" + "/".join(part for part in (namespace.strip("/"), image) if part)
    for display in config["Visualization Manager"]["Displays"]:
        output = RVIZ_DISPLAYS.get(display["Name"], "")
        if output == "":
            continue
        display["Topic"]["Value"] = image if output is None else \
            node_topic(namespace, f"{camera}/{output}" if camera else output)
    return yaml.safe_dump(config, sort_keys=False)
