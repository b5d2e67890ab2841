"""``lseg_lifecycle_node``: lseg_node as a managed (lifecycle) node.

Same parameters, topics and service as :mod:`lseg_ros.ros.node`; the work is split over
the standard transitions (``ros2 lifecycle set /lseg_node configure``, or a lifecycle
manager such as nav2_lifecycle_manager):

- configure: read the parameters, load the model, encode the labels, create the
  publishers, the label inputs (``labels``, ``~/label_query``, ``~/set_labels``) and
  /diagnostics. A failure (missing weights, a bad parameter) is a failed transition with
  the reason logged; the node stays unconfigured and keeps answering.
- activate: subscribe to ``image``, ``camera_info`` and ``depth`` (each camera's, with the
  ``cameras`` parameter); frames are segmented.
- deactivate: unsubscribe; nothing more is published for frames. Labels may still change.
- cleanup: drop the model and free its memory (CUDA cache included), back to unconfigured.
- shutdown: as cleanup, from any state.

While inactive, /diagnostics says so at OK level (an intended state, not a fault).
"""
from __future__ import annotations

import sys

from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn

from ..deps import require_engine_packages

require_engine_packages("lseg_lifecycle_node")
from ..weights import WeightsError  # noqa: E402
from .node import LsegCore  # noqa: E402
from .runner import run_node  # noqa: E402


class LsegLifecycleNode(LsegCore, LifecycleNode):
    def __init__(self, node_name: str = "lseg_node", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        self._init_core()
        self.get_logger().info("lseg_lifecycle_node unconfigured: configure to load the model")

    def on_configure(self, state) -> TransitionCallbackReturn:
        try:
            self._configure()
        except Exception as error:  # any start-up error is a failed transition, never a crash
            self._log("error", f"configure failed: {type(error).__name__}: {error}")
            return TransitionCallbackReturn.FAILURE
        self._log("info", f"configured: {self.segmenter.description} on {self.segmenter.device}; "
                  f"labels {', '.join(self.segmenter.labels) or '(none)'}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        self._activate()
        self._log("info", f"active: segmenting frames from {', '.join(self.input_topics())}")
        return super().on_activate(state)

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self._deactivate()
        self._log("info", "inactive: not subscribed to images")
        return super().on_deactivate(state)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        self._cleanup()
        self._log("info", "cleaned up: model released")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        self._cleanup()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state) -> TransitionCallbackReturn:
        self._cleanup()
        return TransitionCallbackReturn.SUCCESS


def main(args=None) -> int:
    return run_node(LsegLifecycleNode, "lseg_lifecycle_node", args, start_errors=(WeightsError, ValueError))


if __name__ == "__main__":
    sys.exit(main())
