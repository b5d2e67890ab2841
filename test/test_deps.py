"""The start-up dependency check and the torch build line the node logs (lseg_ros/deps.py)."""
import sys
from types import SimpleNamespace

import pytest

from lseg_ros.deps import require_engine_packages, torch_build_summary


def fake_torch(version, cuda=None, hip=None, available=False, device="Orin", error=None):
    """A stand-in for the torch module: only what torch_build_summary reads."""
    def is_available():
        if error is not None:
            raise error
        return available

    return SimpleNamespace(__version__=version, version=SimpleNamespace(cuda=cuda, hip=hip),
                           cuda=SimpleNamespace(is_available=is_available, get_device_name=lambda index: device))


def test_torch_build_summary_names_a_jetpack_build_with_usable_cuda_and_its_device():
    summary = torch_build_summary(fake_torch("2.5.0a0+nv24.08", cuda="12.6", available=True, device="Orin"))
    assert summary == "torch 2.5.0a0+nv24.08 (CUDA 12.6, CUDA usable: yes, device Orin)"


def test_torch_build_summary_says_a_cpu_build_cannot_use_cuda():
    assert torch_build_summary(fake_torch("2.5.1+cpu")) == "torch 2.5.1+cpu (cpu build, CUDA usable: no)"


def test_torch_build_summary_says_a_cuda_build_without_a_device_cannot_use_cuda():
    summary = torch_build_summary(fake_torch("2.14.1+cu130", cuda="13.0", available=False))
    assert summary == "torch 2.14.1+cu130 (CUDA 13.0, CUDA usable: no, no CUDA device or driver found)"


def test_torch_build_summary_reports_a_failing_cuda_query_instead_of_raising():
    broken = fake_torch("2.5.0", cuda="12.4", error=RuntimeError("CUDA driver version is insufficient\ndetails"))
    assert torch_build_summary(broken) == ("torch 2.5.0 (CUDA 12.4, CUDA usable: no, "
                                           "RuntimeError: CUDA driver version is insufficient)")


def test_torch_build_summary_names_a_rocm_build():
    summary = torch_build_summary(fake_torch("2.4.0+rocm6.1", hip="6.1.40091", available=True, device="MI210"))
    assert summary == "torch 2.4.0+rocm6.1 (ROCm 6.1.40091, CUDA usable: yes, device MI210)"


def test_torch_build_summary_of_the_installed_torch_names_its_version_and_cuda_state():
    torch = pytest.importorskip("torch")
    summary = torch_build_summary()
    assert summary.startswith(f"torch {torch.__version__} (")
    assert ("CUDA usable: yes" in summary) == torch.cuda.is_available()


def test_a_missing_torchvision_stops_the_start_naming_torchvision(monkeypatch, capsys):
    """open_clip imports torchvision: without it the one line must name torchvision itself."""
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import torchvision -> ImportError
    with pytest.raises(SystemExit) as stop:
        require_engine_packages("lseg_node")
    assert stop.value.code == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith("lseg_node: cannot start: Python package(s) torchvision") and "\n" not in line
    assert "docs/install.md" in line


# Python libraries the ROS layer imports: their rosdep key in package.xml, or None for the
# ones installed with pip (requirements/robot.txt) or optional (cv2: camera_sim's video files)
PYTHON_LIBRARY_KEYS = {"numpy": "python3-numpy", "PIL": "python3-pil", "yaml": "python3-yaml",
                       "scipy": "python3-scipy", "tqdm": "python3-tqdm", "matplotlib": "python3-matplotlib",
                       "torch": None, "cv2": None}


def _imported_top_level_modules(paths):
    import ast

    modules = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - {"lseg_ros", "__future__"}


def test_package_xml_declares_every_ros_package_and_library_the_ros_layer_imports():
    """What lseg_ros/ros/*.py and the launch file import must be installable by rosdep from
    package.xml (a ROS package of the same name, or the library's python3-* key)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    declared = set(re.findall(r"<(?:depend|exec_depend)>([^<]+)</", (root / "package.xml").read_text()))
    imported = _imported_top_level_modules([*(root / "lseg_ros" / "ros").glob("*.py"), *(root / "launch").glob("*.py")])
    assert {"rclpy", "builtin_interfaces", "sensor_msgs", "launch_ros"} <= imported  # the scan sees imports
    wanted = {PYTHON_LIBRARY_KEYS.get(module, module) for module in imported} - {None}
    assert wanted - declared == set(), f"imported but not declared in package.xml: {sorted(wanted - declared)}"


def test_robot_requirements_name_every_engine_package():
    """requirements/robot.txt installs what the start-up check requires (torchvision included)."""
    import re
    from pathlib import Path

    from lseg_ros.deps import ENGINE_PACKAGES

    text = (Path(__file__).resolve().parent.parent / "requirements" / "robot.txt").read_text()
    listed = {re.split(r"[<>=!~ ]", line.strip())[0] for line in text.splitlines()
              if line.strip() and not line.startswith("#")}
    assert {package for _, package in ENGINE_PACKAGES} <= listed
    assert not any("==" in line for line in text.splitlines() if line.startswith("torch")), "no torch pins"
