"""run_node, the loop every lseg node program spins in: rclpy's InvalidHandle out of one
spin (an entity destroyed by a lifecycle cleanup while the executor builds its wait set)
does not end the program; any other error out of a callback still does."""

import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy._rclpy_pybind11 import InvalidHandle  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402

from lseg_ros.ros import runner  # noqa: E402

from helpers import domain_id  # noqa: E402

pytestmark = pytest.mark.ros


class _Finite(Node):
    """A node whose program ends (``done``) after ``spins`` spins."""

    def __init__(self, spins: int) -> None:
        super().__init__("runner_probe")
        self.spins = spins
        self.done = False


def _spin_once_raising(first_error):
    calls = []

    def spin_once(self, timeout_sec=None):
        calls.append(timeout_sec)
        node = self.get_nodes()[0]
        if len(calls) == 1:
            raise first_error
        if len(calls) >= node.spins:
            node.done = True
    return spin_once, calls


@pytest.fixture
def localhost(monkeypatch):
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain_id()))
    yield
    assert not rclpy.ok()  # run_node shut its context down


def test_invalid_handle_out_of_a_spin_keeps_the_program_spinning(monkeypatch, localhost):
    spin_once, calls = _spin_once_raising(InvalidHandle("cannot use Destroyable because destruction was requested"))
    monkeypatch.setattr(MultiThreadedExecutor, "spin_once", spin_once)
    assert runner.run_node(lambda: _Finite(spins=3), "probe", args=[]) == 0
    assert len(calls) == 3  # the error on the first spin, then two more until done


def test_other_errors_out_of_a_spin_still_end_the_program(monkeypatch, localhost):
    spin_once, calls = _spin_once_raising(RuntimeError("a callback failed"))
    monkeypatch.setattr(MultiThreadedExecutor, "spin_once", spin_once)
    with pytest.raises(RuntimeError, match="a callback failed"):
        runner.run_node(lambda: _Finite(spins=3), "probe", args=[])
    assert len(calls) == 1
