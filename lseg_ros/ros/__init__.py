"""The ROS 2 layer: message conversion, the node, its parameters and small tools.

The rest of lseg_ros imports no ROS. Here, cameras, diagnostics, labels, launch_args,
launcher, runtime_params and twins import no ROS package at module level either (they are
tested without rclpy); the others import rclpy or ROS message packages.
  * :mod:`lseg_ros.ros.conversions`: camera frames -> numpy arrays -> messages
  * :mod:`lseg_ros.ros.params`: ROS parameters declared from the config dataclasses
  * :mod:`lseg_ros.ros.launch_args`: the launch file's arguments, derived from those dataclasses
  * :mod:`lseg_ros.ros.node`: ``lseg_node`` (wiring and lifecycle); its parts:
    :mod:`lseg_ros.ros.worker` (frames in, the batched forward), :mod:`lseg_ros.ros.outputs`
    (publishers, one camera's outputs), :mod:`lseg_ros.ros.labels` (the label scheduler) and
    :mod:`lseg_ros.ros.label_inputs` (label topics and services), :mod:`lseg_ros.ros.status`
    (/diagnostics), :mod:`lseg_ros.ros.runtime_params` (parameters changed while running),
    :mod:`lseg_ros.ros.cameras` (one camera's share of it)
  * :mod:`lseg_ros.ros.lifecycle`: ``lseg_lifecycle_node``, the same node as a managed node
  * :mod:`lseg_ros.ros.diagnostics`: input-rate and time-stamp health
  * :mod:`lseg_ros.ros.twins`: hearing latched and plain publishers on one topic
  * :mod:`lseg_ros.ros.camera_sim`, :mod:`lseg_ros.ros.recorder`: ``camera_sim``,
    ``overlay_recorder``; :mod:`lseg_ros.ros.demo`: the offline demo pipeline
  * :mod:`lseg_ros.ros.runner`: running one node as a program (spin, Ctrl-C, clean shutdown)
  * :mod:`lseg_ros.ros.launcher`: the installed programs' entry point
"""
