"""Launch lseg_node on a camera stream, optionally with rviz.

    ros2 launch lseg_ros lseg.launch.py image:=/camera/color/image_raw \
        camera_info:=/camera/color/camera_info labels:="door, chair, floor" rviz:=true

Model arguments left empty keep the values of the params file (config/lseg.yaml by
default), so no default is written twice. `ros2 launch lseg_ros lseg.launch.py --show-args`
lists every argument.
"""
import os
import tempfile

import yaml
from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

NODE_NAME = "lseg_node"

# launch argument -> (lseg_node parameter, description); passed only when not empty
PARAMETER_ARGUMENTS = {
    "profile": ("profile", "robot | naclip | sclip | clearclip | maskclip | lseg (settings beneath the others)"),
    "backend": ("backend", "Registered backend: dense_clip | lseg"),
    "model": ("model", "open_clip model name (dense_clip) or LSeg preset"),
    "pretrained": ("pretrained", "open_clip tag, local weights file, or random"),
    "device": ("device", "auto | cpu | cuda | cuda:N"),
    "precision": ("precision", "fp32 | fp16 | bf16"),
    "image_transport": ("image_transport", "raw | compressed (subscribes to <image>/compressed)"),
    "image_qos": ("image_qos", "sensor_data | reliable (large frames between processes)"),
    "use_compressed": ("use_compressed", "deprecated: use image_transport:=compressed"),
}
BOOL_PARAMETERS = ("use_compressed",)


def _parse_labels(text):
    """'person; man, door' -> ['person; man', 'door'], as the node parses its labels topic:
    ',' or newlines separate labels, ';' separates one label's synonyms."""
    labels = []
    for part in text.replace("\n", ",").split(","):
        names = [name.strip() for name in part.split(";") if name.strip()]
        if names:
            labels.append("; ".join(names))
    return labels


def _parse_bool(argument, value):
    """'true' | 'false' | '1' | '0' (any case), as launch's IfCondition reads them."""
    if value.lower() not in ("true", "false", "1", "0"):
        raise ValueError(f"launch argument {argument}:={value!r}; accepted: true | false")
    return value.lower() in ("true", "1")


def _any_namespace_params_file(path):
    """The params file with its `lseg_node:` section keyed `/**/lseg_node:`.

    rcl matches a bare `lseg_node:` key only to /lseg_node, so under a namespace (the
    `namespace` argument, or an including file's PushRosNamespace) the file would be
    ignored without a word. Files without such a key are used as they are.
    """
    with open(path, encoding="utf-8") as stream:
        content = yaml.safe_load(stream) or {}
    bare_keys = [key for key in content if key in (NODE_NAME, "/" + NODE_NAME)]
    if not bare_keys:
        return path
    rewritten = {("/**/" + NODE_NAME if key in bare_keys else key): value for key, value in content.items()}
    with tempfile.NamedTemporaryFile("w", prefix="lseg_params_", suffix=".yaml", delete=False) as stream:
        yaml.safe_dump(rewritten, stream, default_flow_style=False)
        return stream.name


def _node(context, *args, **kwargs):
    params_file = LaunchConfiguration("params_file").perform(context)
    overrides = {}
    for argument, (parameter, _) in PARAMETER_ARGUMENTS.items():
        value = LaunchConfiguration(argument).perform(context)
        if value != "":
            overrides[parameter] = _parse_bool(argument, value) if parameter in BOOL_PARAMETERS else value
    labels = _parse_labels(LaunchConfiguration("labels").perform(context))
    if labels:
        overrides["labels"] = labels
    image = LaunchConfiguration("image").perform(context)
    node = Node(
        package="lseg_ros",
        executable="lseg_node",
        name=NODE_NAME,
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=[_any_namespace_params_file(params_file), overrides],
        remappings=[
            ("image", image),  # the compressed transport follows it: <image>/compressed
            ("camera_info", LaunchConfiguration("camera_info")),
            ("labels", LaunchConfiguration("labels_topic")),
        ],
    )
    return [node]


def generate_launch_description():
    share = get_package_share_directory("lseg_ros")
    arguments = [
        DeclareLaunchArgument("image", default_value="/camera/color/image_raw",
                              description="camera image topic (sensor_msgs/Image); with "
                                          "image_transport:=compressed <image>/compressed is used"),
        DeclareLaunchArgument("camera_info", default_value="/camera/color/camera_info",
                              description="camera info topic (optional; rescaled to ~/camera_info)"),
        DeclareLaunchArgument("labels_topic", default_value="labels",
                              description="std_msgs/String topic with comma-separated labels"),
        DeclareLaunchArgument("labels", default_value="",
                              description="initial labels, e.g. 'door, chair' (empty: from params file)"),
        DeclareLaunchArgument("namespace", default_value="", description="node namespace"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "lseg.yaml"),
                              description="lseg_node parameters YAML"),
        DeclareLaunchArgument("rviz", default_value="false", description="start rviz2 with config/lseg.rviz"),
    ]
    arguments += [DeclareLaunchArgument(name, default_value="", description=doc + " (empty: from params file)")
                  for name, (_, doc) in PARAMETER_ARGUMENTS.items()]
    rviz = Node(package="rviz2", executable="rviz2", name="lseg_rviz", output="screen",
                arguments=["-d", os.path.join(share, "config", "lseg.rviz")],
                condition=IfCondition(LaunchConfiguration("rviz")))
    return LaunchDescription(arguments + [OpaqueFunction(function=_node), rviz])
