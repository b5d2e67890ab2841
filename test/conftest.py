"""Fixtures, markers and the test-device check. Shared helpers are in helpers.py (no ROS) and
ros_helpers.py (rclpy); no test imports this file or another test module.

Markers (registered here; select with -m):
    ros    needs rclpy and the built interfaces (the Jazzy pass of scripts/test.sh runs these)
    slow   starts processes, launches, builds or trains (a quick lane: pytest -m "not slow")
    cuda   CUDA only (skipped on the CPU; LSEG_TEST_DEVICE=cuda runs them)
"""
from __future__ import annotations

import pytest
import torch

from helpers import NODE_PARAMETERS, ON_CUDA, TEST_DEVICE, domain_id

MARKERS = {
    "ros": "needs rclpy and the built ROS interfaces (the Jazzy pass of scripts/test.sh runs these)",
    "slow": "starts processes, launches, builds or trains; deselect with -m 'not slow' for a quick lane",
    "cuda": "CUDA only: skipped on the CPU, run with LSEG_TEST_DEVICE=cuda on a GPU",
}


def pytest_configure(config):
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    if TEST_DEVICE != "cpu" and not ON_CUDA:
        raise pytest.UsageError(f"LSEG_TEST_DEVICE={TEST_DEVICE!r}; accepted: cpu, cuda, cuda:N")
    if ON_CUDA and not torch.cuda.is_available():
        raise pytest.UsageError(f"LSEG_TEST_DEVICE={TEST_DEVICE!r} but torch sees no CUDA device "
                                f"(torch {torch.__version__}, CUDA build {torch.version.cuda})")


def pytest_report_header(config):
    if ON_CUDA:
        return f"lseg_ros test device: {TEST_DEVICE} ({torch.cuda.get_device_name(torch.device(TEST_DEVICE))})"
    return "lseg_ros test device: cpu (LSEG_TEST_DEVICE=cuda for a GPU)"


@pytest.fixture
def one_torch_thread():
    """One torch thread for tiny models (on a busy 2-core machine two threads made lmseg's
    training test 15x slower); the previous setting is restored after the test. A module uses
    it for every test with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def train_scenes(tmp_path_factory):
    """16 generated scenes of 48x64: 12 for training (3 steps of 4 per epoch), 4 for validation."""
    from lseg_ros.data.scenes import write_generic_dataset

    return write_generic_dataset(tmp_path_factory.mktemp("scenes"), 16, seed=0, size=(48, 64), val_fraction=0.25)


@pytest.fixture(scope="module")
def ros():
    """``start(namespace="camera", **parameters)``: an lseg_node (NODE_PARAMETERS with these
    changes) in its own namespace and a Probe beside it, spun on a domain of this module's."""
    from lseg_ros.ros.node import LsegNode
    from lseg_ros.ros.params import parameter_overrides
    from ros_helpers import NodeHost, Probe

    host = NodeHost(domain_id())

    def start(namespace="camera", **overrides):
        values = dict(NODE_PARAMETERS, **overrides)
        node = LsegNode("lseg_node", namespace=namespace, parameter_overrides=parameter_overrides(values))
        probe = Probe(namespace)
        host.add(node, probe.node)
        return node, probe

    yield start
    host.close()


@pytest.fixture(scope="module")
def running(ros):
    """The module's lseg_node in /camera with LABELS active, and its probe."""
    node, probe = ros()
    probe.wait_label_info()  # the default labels (LABELS) are active
    return node, probe
