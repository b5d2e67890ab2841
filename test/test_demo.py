"""The demo as a user runs it: lseg_node in its own process, camera and recorder in the demo's."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("rclpy")
pytest.importorskip("lseg_ros.msg", reason="ROS interfaces not built (run scripts/setup_env.sh)")

from helpers import domain_id  # noqa: E402

pytestmark = pytest.mark.slow  # each test runs the demo, which starts lseg_node as a process

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def demo_env():
    """This interpreter's environment in a domain of its own (localhost only), offline."""
    return dict(os.environ, ROS_DOMAIN_ID=str(domain_id()), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
                HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
                PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))


def demo_command(*args):
    return [sys.executable, "-m", "lseg_ros.ros.demo", *args]


def node_pid(output: str) -> int:
    match = re.search(r"\[demo\] lseg_node started as process (\d+)", output)
    assert match, f"the demo did not say which process lseg_node is:\n{output}"
    return int(match.group(1))


def assert_gone(pid: int) -> None:
    """The process ``pid`` has ended (the demo reaped it: no /proc entry, not even a zombie)."""
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists(), f"lseg_node process {pid} left behind"


@pytest.mark.ros  # the demo runs on every distro
def test_demo_streams_into_a_node_process_and_reports_latency_engine_time_and_accuracy(demo_env, tmp_path):
    out = tmp_path / "overlays"
    result = subprocess.run(demo_command("--frames", "5", "--timeout", "120", "--out", str(out)), env=demo_env,
                            capture_output=True, text=True, timeout=400)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    latency = re.search(r"\[demo\] (\d+) frames in .* latency median ([\d.]+) ms, p90 ([\d.]+) ms.*"
                        r"frames in (\d+), processed (\d+), dropped (\d+)", output)
    assert latency, output
    frames, median, p90, frames_in, processed, dropped = latency.groups()
    assert int(frames) >= 5 and 0 < float(median) <= float(p90)
    # counters from the node's /diagnostics, published after the last overlay arrived
    assert int(processed) >= int(frames) and int(frames_in) >= int(processed) + int(dropped), output
    engine = re.search(r"\[demo\] engine: segment\(\) median ([\d.]+) ms on the same \d+ frames", output)
    ratio = re.search(r"\[demo\] node latency / engine time: ([\d.]+)x", output)
    assert engine and ratio and float(engine.group(1)) > 0, output
    assert float(ratio.group(1)) == pytest.approx(float(median) / float(engine.group(1)), rel=0.05, abs=0.06)
    assert re.search(r"the node's diagnostics: inference [\d.]+ ms, frame received to outputs published [\d.]+ ms",
                     output), output
    accuracy = re.search(r"pixel accuracy against the scenes' ground truth: ([\d.]+) over (\d+) frames", output)
    assert accuracy and float(accuracy.group(1)) > 0.9, output  # the shipped model on its own scenes
    assert re.search(r"3D: \d+ labelled points and [\d.]+ objects per frame", output), output
    assert re.search(r"of the points labelled 'floor', [\d.]+ % lie within 5 cm", output), output
    overlays = sorted(out.glob("overlay_*.png"))
    assert len(overlays) == int(frames) and len(list(out.glob("topdown_*.png"))) >= 1
    assert_gone(node_pid(output))


def test_failed_node_start_gives_one_clear_line_and_exit_1(demo_env, tmp_path):
    result = subprocess.run(demo_command("--frames", "3", "--timeout", "120", "--device", "cpu",
                                         "--pretrained", "/nonexistent/weights.safetensors", "--out", str(tmp_path)),
                            env=demo_env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("[demo]")]
    assert len(lines) == 1 and lines[0].startswith("[demo] cannot start lseg_node: "), result.stderr
    assert "/nonexistent/weights.safetensors" in lines[0] and "Traceback" not in result.stderr, result.stderr
    assert_gone(node_pid(result.stdout))


def test_ctrl_c_of_the_demo_stops_the_node_process(demo_env, tmp_path):
    process, lines = start_streaming_demo(demo_env, tmp_path)
    try:
        assert any(line.startswith("frame ") for line in lines), "".join(lines)  # streaming
        process.send_signal(signal.SIGINT)
        output = "".join(lines) + process.communicate(timeout=60)[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130 and "[demo] interrupted" in output, output
    assert "Traceback" not in output, output
    assert_gone(node_pid(output))


def start_streaming_demo(env, out):
    """The demo streaming (a first "frame" line printed): (process, its output lines so far)."""
    process = subprocess.Popen(demo_command("--frames", "1000", "--timeout", "300", "--out", str(out)),
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not any(line.startswith("frame ") for line in lines):
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
    return process, lines


def test_node_process_dying_during_the_stream_ends_the_demo_with_one_line_and_exit_1(demo_env, tmp_path):
    process, lines = start_streaming_demo(demo_env, tmp_path)
    try:
        assert any(line.startswith("frame ") for line in lines), "".join(lines)
        os.kill(node_pid("".join(lines)), signal.SIGKILL)
        output = "".join(lines) + process.communicate(timeout=60)[0]  # not the 300 s timeout
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 1, output
    assert "[demo] lseg_node exited with code -9 during the stream" in output and "Traceback" not in output, output


def test_node_process_ends_when_the_demo_is_killed(demo_env, tmp_path):
    """SIGKILL leaves the demo no chance to stop the node: the kernel's parent-death signal does."""
    process, lines = start_streaming_demo(demo_env, tmp_path)
    try:
        assert any(line.startswith("frame ") for line in lines), "".join(lines)
        pid = node_pid("".join(lines))
        process.kill()
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stat = Path(f"/proc/{pid}/stat")
    deadline = time.monotonic() + 20
    while stat.exists() and time.monotonic() < deadline:
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":  # ended; its new parent reaps it
                break
        except OSError:  # reaped meanwhile
            break
        time.sleep(0.1)
    else:
        assert not stat.exists(), f"lseg_node process {pid} still running after the demo was killed"
