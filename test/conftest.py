"""The device the engine, training and node tests run on.

    bash scripts/test.sh                               the CPU (the default; CI)
    LSEG_TEST_DEVICE=cuda bash scripts/test.sh          CUDA: engine, training and node tests there,
                                                        plus the CUDA-only tests (fp16/bf16, pinned
                                                        staging, CUDA graphs)

Tests take ``TEST_DEVICE`` for every Segmenter/trainer they build unless they test the CPU
itself; ``needs_cuda`` marks the CUDA-only ones (skipped on the CPU, saying how to run them).
"""
from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager

import pytest
import torch

TEST_DEVICE = os.environ.get("LSEG_TEST_DEVICE", "cpu").strip() or "cpu"
ON_CUDA = TEST_DEVICE.startswith("cuda")

needs_cuda = pytest.mark.skipif(not ON_CUDA, reason="CUDA only: run with LSEG_TEST_DEVICE=cuda on a GPU")


def pytest_configure(config):
    if TEST_DEVICE != "cpu" and not ON_CUDA:
        raise pytest.UsageError(f"LSEG_TEST_DEVICE={TEST_DEVICE!r}; accepted: cpu, cuda, cuda:N")
    if ON_CUDA and not torch.cuda.is_available():
        raise pytest.UsageError(f"LSEG_TEST_DEVICE={TEST_DEVICE!r} but torch sees no CUDA device "
                                f"(torch {torch.__version__}, CUDA build {torch.version.cuda})")


def pytest_report_header(config):
    if ON_CUDA:
        return f"lseg_ros test device: {TEST_DEVICE} ({torch.cuda.get_device_name(torch.device(TEST_DEVICE))})"
    return "lseg_ros test device: cpu (LSEG_TEST_DEVICE=cuda for a GPU)"


@contextmanager
def spinning(domain_id: int, make_nodes, threads: int = 3):
    """rclpy on ``domain_id`` (this host only), the (node, probe) that ``make_nodes()`` builds
    spun by a multi-threaded executor, half a second to discover each other; yields (node,
    probe) and tears everything down after."""
    import rclpy
    from rclpy.executors import MultiThreadedExecutor

    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    rclpy.init(domain_id=domain_id)
    executor = MultiThreadedExecutor(num_threads=threads)
    node, probe = make_nodes()
    executor.add_node(node)
    executor.add_node(probe.node)
    threading.Thread(target=executor.spin, daemon=True).start()
    time.sleep(0.5)
    try:
        yield node, probe
    finally:
        executor.shutdown()
        node.destroy_node()
        probe.node.destroy_node()
        rclpy.try_shutdown()
