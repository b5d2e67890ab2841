"""Launch lseg_node on a camera stream, optionally with rviz.

    ros2 launch lseg_ros lseg.launch.py image:=/camera/color/image_raw \
        camera_info:=/camera/color/camera_info labels:="door, chair, floor" rviz:=true
    ros2 launch lseg_ros lseg.launch.py profile:=naclip short_side:=336 image_transport:=compressed
    ros2 launch lseg_ros lseg.launch.py lifecycle:=true   # managed node: configure, then activate
    ros2 launch lseg_ros lseg.launch.py cameras:="[front, rear]" \
        remaps:="front/image:=/front/color/image_raw, rear/image:=/rear/color/image_raw"

Every lseg_node parameter is a launch argument of the same name (lseg_ros.ros.launch_args
derives them from the parameter dataclasses); left empty, a value comes from the params
file (config/lseg.yaml by default) and the profile, so no default is written twice.
`ros2 launch lseg_ros lseg.launch.py --show-args` lists every argument with its description.
"""
import functools
import os
import shutil
import tempfile

import yaml
from ament_index_python.packages import PackageNotFoundError, get_package_prefix, get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnShutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node

from lseg_ros.ros.launch_args import (EXECUTABLES, NODE_NAME, launch_arguments, node_parameters, parameter_arguments,
                                      parse_launch_bool, parse_log_level, parse_remaps, remappings,
                                      render_rviz_config)


def _launch_file(files, name):
    """Path of this launch's generated file `name` (params file, rviz config) in its own
    directory (made when first needed), which _remove_launch_files removes at shutdown."""
    if files.get("directory") is None:
        files["directory"] = tempfile.mkdtemp(prefix="lseg_launch_")
    return os.path.join(files["directory"], name)


def _remove_launch_files(files, *event_and_context):
    """OnShutdown handler: remove this launch's generated files (the launch ended or was stopped)."""
    directory = files.pop("directory", None)
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)


def _any_namespace_params_file(path, files):
    """The params file with its `lseg_node:` section keyed `/**/lseg_node:`.

    rcl matches a bare `lseg_node:` key only to /lseg_node, so under a namespace (the
    `namespace` argument, or an including file's PushRosNamespace) the file would be
    ignored without a word. Files without such a key are used as they are; a rewritten
    one is one of this launch's generated files (`files`: see _launch_file).
    """
    with open(path, encoding="utf-8") as stream:
        content = yaml.safe_load(stream) or {}
    bare_keys = [key for key in content if key in (NODE_NAME, "/" + NODE_NAME)]
    if not bare_keys:
        return path
    rewritten = {("/**/" + NODE_NAME if key in bare_keys else key): value for key, value in content.items()}
    rewritten_path = _launch_file(files, "lseg_params.yaml")
    with open(rewritten_path, "w", encoding="utf-8") as stream:
        yaml.safe_dump(rewritten, stream, default_flow_style=False)
    return rewritten_path


def _installed(package):
    try:
        get_package_prefix(package)
        return True
    except PackageNotFoundError:
        return False


def _value(context, name):
    return LaunchConfiguration(name).perform(context)


def _nodes(context, files):
    parameters = node_parameters({name: _value(context, name) for name in parameter_arguments()})
    parameters["use_sim_time"] = parse_launch_bool("use_sim_time", _value(context, "use_sim_time"))
    share = get_package_share_directory("lseg_ros")
    managed = parse_launch_bool("lifecycle", _value(context, "lifecycle"))
    actions = [(LifecycleNode if managed else Node)(
        package="lseg_ros",
        executable=EXECUTABLES[managed],
        name=NODE_NAME,
        namespace=_value(context, "namespace"),
        output="screen",
        parameters=[_any_namespace_params_file(_value(context, "params_file"), files), parameters],
        remappings=remappings(_value(context, "image"), _value(context, "camera_info"),
                              _value(context, "labels_topic"), _value(context, "depth"), _value(context, "remaps")),
        ros_arguments=["--log-level", parse_log_level(_value(context, "log_level"))],
    )]
    if parse_launch_bool("rviz", _value(context, "rviz")):
        if not _installed("rviz2"):  # a missing executable would take the launch down and orphan the node
            actions.append(LogInfo(msg="rviz:=true but rviz2 is not installed: lseg_node runs without it"))
        else:
            # several cameras: rviz shows the first one (its image as remapped by the remaps argument)
            camera = (parameters.get("cameras") or [""])[0]
            image = dict(parse_remaps(_value(context, "remaps"))).get(f"{camera}/image", f"{camera}/image") \
                if camera else _value(context, "image")
            with open(os.path.join(share, "config", "lseg.rviz"), encoding="utf-8") as stream:
                rendered = render_rviz_config(stream.read(), image, _value(context, "namespace"),
                                              _value(context, "rviz_fixed_frame"), camera)
            rviz_config = _launch_file(files, "lseg.rviz")
            with open(rviz_config, "w", encoding="utf-8") as stream:
                stream.write(rendered)  # the displays follow this launch's image remap and namespace
            actions.append(Node(package="rviz2", executable="rviz2", name="lseg_rviz", output="screen",
                                namespace=_value(context, "namespace"), arguments=["-d", rviz_config],
                                parameters=[{"use_sim_time": parameters["use_sim_time"]}]))
    return actions


def generate_launch_description():
    share = get_package_share_directory("lseg_ros")
    arguments = [DeclareLaunchArgument(name, default_value=default, description=description)
                 for name, (default, description) in
                 launch_arguments(os.path.join(share, "config", "lseg.yaml")).items()]
    files = {}  # this launch's generated files: made by _nodes, removed when the launch shuts down
    return LaunchDescription(arguments + [
        OpaqueFunction(function=_nodes, kwargs={"files": files}),
        RegisterEventHandler(OnShutdown(on_shutdown=functools.partial(_remove_launch_files, files)))])
