"""Running one node as a program: init, build, spin until done or Ctrl-C, clean shutdown."""
from __future__ import annotations

import os
import sys
from typing import Callable, Tuple, Type

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

#: executor threads: callbacks of one callback group never run concurrently; lseg_node's
#: services that wait (~/set_labels for its label set, ~/encode_text for a text forward,
#: each in its own group) each hold a thread, and the default group's callbacks (frames,
#: labels, timers) keep the third
EXECUTOR_THREADS = 3


def run_node(build: Callable[[], "rclpy.node.Node"], program: str, args=None,
             start_errors: Tuple[Type[BaseException], ...] = (ValueError,)) -> int:
    """Build a node and spin it until its ``done`` attribute turns true (if it has one),
    Ctrl-C or shutdown. A start-up error in ``start_errors`` is printed and gives exit code 1."""
    from rclpy.exceptions import ParameterException

    rclpy.init(args=args)
    try:
        node = build()
    except start_errors + (ParameterException,) as error:
        print(f"{program}: cannot start: {error}", file=sys.stderr)
        rclpy.try_shutdown()
        return 1
    executor = MultiThreadedExecutor(num_threads=EXECUTOR_THREADS)
    executor.add_node(node)
    try:
        while rclpy.ok() and not getattr(node, "done", False):
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()  # stops what waits in callbacks (a ~/set_labels call answers)
        executor.shutdown(timeout_sec=0.2)
        rclpy.try_shutdown()
    busy = node.busy_threads() if hasattr(node, "busy_threads") else []
    if busy:
        # A forward pass cannot be interrupted; waiting for it would make Ctrl-C take seconds
        # (and launch escalate to SIGTERM). Everything the node owns is released: end the
        # process now, without letting the interpreter tear down under the running thread.
        print(f"{program}: stopped; left {', '.join(busy)} mid-computation", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0
