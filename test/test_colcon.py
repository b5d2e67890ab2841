"""The package as a ROS user builds it: a fresh colcon workspace, both install modes.

`colcon build --symlink-install` (the usual development workflow) links the installed
executables to files in the build tree, so those files themselves must be executable;
`colcon test` must run the pytest suite (registered with ament_cmake_pytest, one ctest
per file) and `colcon test-result` report it. Each build takes about 30 s on two cores.

The robot install path (docs/install.md) is built too: a venv made with
--system-site-packages, activated for `colcon build`; the installed executables must then
run that venv's Python without it being activated. Here the development venv plays
/opt/ros/<distro> (its site-packages on PYTHONPATH, its libraries on LD_LIBRARY_PATH, as
`source /opt/ros/<distro>/setup.bash` sets them); not covered: apt's ROS, rosdep, Python
3.10/3.12, pip inside the new venv (torch and the rest come from the "/opt/ros" path here).
"""
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from helpers import domain_id  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
VENV = pathlib.Path(sys.prefix)
COLCON = VENV / "bin" / "colcon"
EXECUTABLES = ("lseg_node", "lseg_lifecycle_node", "camera_sim", "overlay_recorder")

pytestmark = [pytest.mark.ros, pytest.mark.slow, pytest.mark.skipif(
    not COLCON.exists() or not (VENV / "share" / "ament_cmake_pytest").is_dir() or shutil.which("cmake") is None,
    reason="colcon, ament_cmake_pytest or cmake missing: install requirements/dev.txt (scripts/setup_env.sh)")]


def _environment():
    env = dict(os.environ)
    # the ROS 2 wheels' CMake packages are found only through these (shared notes: ros2-toolchain)
    env.update(AMENT_PREFIX_PATH=str(VENV), CMAKE_PREFIX_PATH=str(VENV), PATH=f"{VENV / 'bin'}:{env['PATH']}",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.pop("PYTHONPATH", None)
    return env


def _in_workspace(workspace, command, timeout=300):
    """Run ``command`` in bash with the workspace's install/setup.bash sourced, outside the repository."""
    return subprocess.run(["bash", "-c", f"source {workspace}/install/setup.bash && {command}"], cwd=workspace,
                          env=_environment(), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module", params=["symlink-install", "copy-install"])
def workspace(request, tmp_path_factory):
    symlink = request.param == "symlink-install"
    workspace = tmp_path_factory.mktemp(request.param)
    (workspace / "src").mkdir()
    (workspace / "src" / "lseg_ros").symlink_to(ROOT)
    command = [str(COLCON), "build", "--event-handlers", "console_direct-", "--cmake-args",
               f"-DPython3_EXECUTABLE={sys.executable}", f"-DBUILD_TESTING={'OFF' if symlink else 'ON'}"]
    if symlink:
        command.insert(2, "--symlink-install")
    result = subprocess.run(command, cwd=workspace, env=_environment(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"colcon build failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return workspace, symlink


def test_every_executable_is_installed_executable(workspace):
    workspace, symlink = workspace
    executables = workspace / "install" / "lseg_ros" / "lib" / "lseg_ros"
    for name in EXECUTABLES:
        path = executables / name
        assert path.exists(), name
        assert path.is_symlink() == symlink, name
        assert os.access(path, os.X_OK), f"{name} is not executable ({'symlink' if symlink else 'copy'} install)"


def test_the_installed_package_and_interfaces_are_the_ones_imported(workspace):
    workspace, symlink = workspace
    result = _in_workspace(workspace, f"{sys.executable} -c 'import lseg_ros, lseg_ros.msg, lseg_ros.srv, "
                                      "lseg_ros.ros.launch_args; print(lseg_ros.__file__)'")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(str(workspace / "install")), result.stdout


def test_the_node_executable_found_as_launch_finds_it_starts(workspace):
    """launch_ros looks executables up in <package prefix>/lib/<package> (ament index); run it
    with weights that do not exist: it must get as far as loading them, and say so in one line."""
    workspace, _ = workspace
    find = ("python -c 'from ament_index_python.packages import get_package_prefix; "
            "print(get_package_prefix(\"lseg_ros\"))'")
    result = _in_workspace(workspace, find)
    assert result.returncode == 0, result.stderr
    prefix = pathlib.Path(result.stdout.strip())
    assert prefix == workspace / "install" / "lseg_ros"
    result = _in_workspace(workspace, f"{prefix}/lib/lseg_ros/lseg_node --ros-args -p pretrained:=/no/such.safetensors",
                           timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "lseg_node: cannot start: weights file '/no/such.safetensors' does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_colcon_test_runs_the_suite_and_reports_it(workspace):
    workspace, symlink = workspace
    if symlink:
        pytest.skip("tests are built in the copy-install workspace")
    # two quick files of the suite (the whole suite takes minutes): the installed interfaces
    # and a ROS-free module
    result = _in_workspace(workspace, f"{COLCON} test --packages-select lseg_ros --event-handlers console_direct- "
                                      "--ctest-args -R 'test_(interfaces|twins)$'", timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = workspace / "build" / "lseg_ros" / "test_results" / "lseg_ros"
    assert sorted(path.name for path in results.glob("*.xunit.xml")) == ["test_interfaces.xunit.xml",
                                                                         "test_twins.xunit.xml"]
    result = _in_workspace(workspace, f"{COLCON} test-result --test-result-base build/lseg_ros --verbose")
    assert result.returncode == 0, result.stdout + result.stderr
    summary = [line for line in result.stdout.splitlines() if line.startswith("Summary:")]
    assert summary, result.stdout
    tests = int(summary[-1].split()[1])
    assert tests >= 15 and "0 errors, 0 failures" in summary[-1], summary
    # every test file of the suite is registered
    listed = _in_workspace(workspace, "ctest --test-dir build/lseg_ros -N")
    registered = set(re.findall(r"Test\s+#\d+:\s+(\S+)", listed.stdout))
    assert registered == {path.stem for path in (ROOT / "test").glob("test_*.py")}


def _ros_setup_environment():
    """The environment `source /opt/ros/<distro>/setup.bash` makes, with the development venv
    as /opt/ros/<distro>: its packages on PYTHONPATH (not a site directory: its .pth files
    stay unread, as /opt/ros has none), its libraries on LD_LIBRARY_PATH, its prefix on
    AMENT_PREFIX_PATH and CMAKE_PREFIX_PATH. No venv is active."""
    site_packages = VENV / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    libraries = [VENV / "lib", *sorted(site_packages.glob("ros_*.libs"))]  # the wheels' bundled libraries
    env = {key: value for key, value in os.environ.items() if key not in ("VIRTUAL_ENV", "PYTHONHOME")}
    env.update(PYTHONPATH=str(site_packages), LD_LIBRARY_PATH=":".join(map(str, libraries)),
               AMENT_PREFIX_PATH=str(VENV), CMAKE_PREFIX_PATH=str(VENV), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               ROS_DOMAIN_ID=str(domain_id()), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    return env


@pytest.fixture(scope="module")
def robot_workspace(tmp_path_factory):
    """docs/install.md's steps: venv with --system-site-packages inside the workspace, marked
    COLCON_IGNORE, activated for `colcon build` (no -DPython3_EXECUTABLE)."""
    workspace = tmp_path_factory.mktemp("robot")
    (workspace / "src").mkdir()
    (workspace / "src" / "lseg_ros").symlink_to(ROOT)
    env = _ros_setup_environment()
    # --without-pip: nothing is pip-installed in this test (no network); saves ~10 s
    result = subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", "venv"],
                            cwd=workspace, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    (workspace / "venv" / "COLCON_IGNORE").touch()
    build = (f"source venv/bin/activate && {COLCON} build --event-handlers console_direct- "
             "--cmake-args -DBUILD_TESTING=OFF")
    result = subprocess.run(["bash", "-c", build], cwd=workspace, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"colcon build failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return workspace


def test_installed_node_execs_the_python_of_the_venv_active_at_build(robot_workspace):
    wrapper = (robot_workspace / "install" / "lseg_ros" / "lib" / "lseg_ros" / "lseg_node").read_text()
    exec_line = [line for line in wrapper.splitlines() if line.startswith("exec ")]
    assert len(exec_line) == 1, wrapper
    interpreter = pathlib.Path(exec_line[0].split('"')[1])
    assert interpreter.parent == robot_workspace / "venv" / "bin" and interpreter.name.startswith("python"), exec_line
    probe = subprocess.run([str(interpreter), "-c", "import sys; print(sys.prefix)"], env=_ros_setup_environment(),
                           capture_output=True, text=True, timeout=60)
    assert probe.stdout.strip() == str(robot_workspace / "venv"), probe.stderr


def test_installed_node_runs_without_the_venv_activated_and_logs_its_torch_build(robot_workspace):
    """Only install/setup.bash sourced (as `ros2 run` would be used): the node starts, and its
    start-up log names the torch build and whether CUDA is usable."""
    import torch

    command = (f"source install/setup.bash && exec install/lseg_ros/lib/lseg_ros/lseg_node --ros-args "
               "-p model:=lseg-test-tiny-ViT -p pretrained:=random -p device:=cpu -p short_side:=64")
    process = subprocess.Popen(["bash", "-c", command], cwd=robot_workspace, env=_ros_setup_environment(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any("lseg_node ready" in line for line in lines):
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    output = "".join(lines)
    assert "lseg_node ready" in output, output[-3000:]
    torch_lines = [line for line in lines if f"]: torch {torch.__version__} (" in line]
    assert len(torch_lines) == 1, output[-3000:]
    assert ("CUDA usable: yes" in torch_lines[0]) == torch.cuda.is_available(), torch_lines[0]
