"""The ROS 2 layer: message conversion, the node, its parameters and small tools.

Everything here imports rclpy or ROS message packages; the rest of lseg_ros does not.
  * :mod:`lseg_ros.ros.conversions`: camera frames -> numpy arrays -> messages
  * :mod:`lseg_ros.ros.params`: ROS parameters declared from the config dataclasses
  * :mod:`lseg_ros.ros.node`: ``lseg_node`` (wiring and lifecycle); its parts: ``worker``
    (frames), ``outputs``, ``labels`` and ``label_inputs`` (label sets), ``status``
    (/diagnostics), ``runtime_params`` (parameters changed while running), ``cameras``
  * :mod:`lseg_ros.ros.camera_sim`, :mod:`lseg_ros.ros.recorder`: ``camera_sim``,
    ``overlay_recorder``
  * :mod:`lseg_ros.ros.launcher`: the installed programs' entry point
"""
