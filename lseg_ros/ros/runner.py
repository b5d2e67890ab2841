"""Running one node as a program: init, build, spin until done or Ctrl-C, clean shutdown."""
from __future__ import annotations

import os
import sys
from typing import Callable, Tuple, Type

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

#: ~/set_labels calls that may wait for their label sets at once (the encoding one and the
#: one waiting after it, plus one arriving); a further call is refused at once
SET_LABELS_MAX_WAITING = 3
#: executor threads: callbacks of one callback group never run concurrently. lseg_node's
#: waiting ~/set_labels calls (reentrant group) hold at most SET_LABELS_MAX_WAITING threads,
#: ~/encode_text (its own group) one for a text forward; the default group's callbacks
#: (frames, labels, timers, parameters) keep one, and one more answers a ~/set_labels call
#: at once (refused, superseded) while the others wait: frames never stop for service calls
EXECUTOR_THREADS = SET_LABELS_MAX_WAITING + 3


def run_node(build: Callable[[], "rclpy.node.Node"], program: str, args=None,
             start_errors: Tuple[Type[BaseException], ...] = (ValueError,)) -> int:
    """Build a node and spin it until its ``done`` attribute turns true (if it has one),
    Ctrl-C or shutdown. A start-up error in ``start_errors`` is printed and gives exit code 1;
    Ctrl-C during start-up (model load, label encoding) one line and exit code 0."""
    from rclpy.exceptions import ParameterException

    rclpy.init(args=args)
    try:
        node = build()
    except BaseException as error:  # noqa: B902 (Ctrl-C included)
        stopped = isinstance(error, (KeyboardInterrupt, ExternalShutdownException)) or not rclpy.ok()
        if not stopped and not isinstance(error, start_errors + (ParameterException,)):
            raise
        message = str(error)
        _shutdown_quietly()  # rclpy (Kilted) destroys the half-built node here: it cleans up quietly
        if stopped:  # Ctrl-C: the error is a consequence of the shutdown, not a start-up problem
            print(f"{program}: stopped during start-up", file=sys.stderr)
            return 0
        print(f"{program}: cannot start: {message}", file=sys.stderr)
        return 1
    executor = MultiThreadedExecutor(num_threads=EXECUTOR_THREADS)
    executor.add_node(node)
    try:
        while rclpy.ok() and not getattr(node, "done", False):
            try:
                executor.spin_once(timeout_sec=0.1)
            except RuntimeError as error:
                if not _destroyed_while_waiting(error):
                    raise
                # An entity the node destroyed (a lifecycle cleanup) was in the wait set being
                # built; the next wait set no longer holds it: go on spinning.
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


def _destroyed_while_waiting(error: RuntimeError) -> bool:
    """Whether ``error`` is rclpy's InvalidHandle: a subscription with event callbacks (the
    incompatible-QoS warnings) destroyed from a callback thread while the executor adds it to
    the wait set it is building ("cannot use Destroyable because destruction was requested").
    Not a node fault: the entity is gone, and the next wait set is built without it."""
    return type(error).__name__ == "InvalidHandle"


def _shutdown_quietly() -> None:
    """rclpy.try_shutdown, also when a second Ctrl-C comes during it."""
    try:
        rclpy.try_shutdown()
    except KeyboardInterrupt:
        pass
