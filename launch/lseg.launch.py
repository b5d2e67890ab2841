"""Launch lseg_node on a camera stream, optionally with rviz.

    ros2 launch lseg_ros lseg.launch.py image:=/camera/color/image_raw \
        camera_info:=/camera/color/camera_info labels:="door, chair, floor" rviz:=true

Model arguments left empty keep the values of the params file (config/lseg.yaml by
default), so no default is written twice.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

# launch argument -> lseg_node parameter, passed only when the argument is not empty
PARAMETER_ARGUMENTS = {
    "backend": ("backend", "Registered backend: dense_clip | lseg"),
    "model": ("model", "open_clip model name (dense_clip) or LSeg preset"),
    "pretrained": ("pretrained", "open_clip tag, local weights file, or random"),
    "device": ("device", "auto | cpu | cuda | cuda:N"),
    "precision": ("precision", "fp32 | fp16 | bf16"),
    "use_compressed": ("use_compressed", "true: subscribe to <image>/compressed"),
}


def _node(context, *args, **kwargs):
    share = get_package_share_directory("lseg_ros")
    params_file = LaunchConfiguration("params_file").perform(context) or os.path.join(share, "config", "lseg.yaml")
    overrides = {}
    for argument, (parameter, _) in PARAMETER_ARGUMENTS.items():
        value = LaunchConfiguration(argument).perform(context)
        if value != "":
            overrides[parameter] = value.lower() == "true" if parameter == "use_compressed" else value
    labels = LaunchConfiguration("labels").perform(context)
    if labels:
        overrides["labels"] = [label.strip() for label in labels.split(",") if label.strip()]
    image = LaunchConfiguration("image").perform(context)
    node = Node(
        package="lseg_ros",
        executable="lseg_node",
        name="lseg_node",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=[params_file, overrides],
        remappings=[
            ("image", image),
            ("image/compressed", image + "/compressed"),
            ("camera_info", LaunchConfiguration("camera_info")),
            ("labels", LaunchConfiguration("labels_topic")),
        ],
    )
    return [node]


def generate_launch_description():
    share = get_package_share_directory("lseg_ros")
    arguments = [
        DeclareLaunchArgument("image", default_value="/camera/color/image_raw", description="camera image topic"),
        DeclareLaunchArgument("camera_info", default_value="/camera/color/camera_info",
                              description="camera info topic"),
        DeclareLaunchArgument("labels_topic", default_value="labels",
                              description="std_msgs/String topic with comma-separated labels"),
        DeclareLaunchArgument("labels", default_value="", description="initial labels, e.g. 'door, chair'"),
        DeclareLaunchArgument("namespace", default_value="", description="node namespace"),
        DeclareLaunchArgument("params_file", default_value="",
                              description="parameters YAML (default: share/lseg_ros/config/lseg.yaml)"),
        DeclareLaunchArgument("rviz", default_value="false", description="start rviz2 with config/lseg.rviz"),
    ]
    arguments += [DeclareLaunchArgument(name, default_value="", description=doc + " (empty: from params file)")
                  for name, (_, doc) in PARAMETER_ARGUMENTS.items()]
    rviz = Node(package="rviz2", executable="rviz2", name="lseg_rviz", output="screen",
                arguments=["-d", os.path.join(share, "config", "lseg.rviz")],
                condition=IfCondition(LaunchConfiguration("rviz")))
    return LaunchDescription(arguments + [OpaqueFunction(function=_node), rviz])
