"""The installed programs' entry point (lseg_ros.ros.launcher): Ctrl-C while a program's
module imports ends with one line; the CMake wrappers name exactly its programs."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lseg_ros.ros import launcher

ROOT = Path(__file__).resolve().parent.parent


def test_ctrl_c_while_the_program_imports_exits_0_with_one_line(monkeypatch, capsys):
    def interrupted(name):
        assert name == "lseg_ros.ros.node"
        raise KeyboardInterrupt

    monkeypatch.setattr(launcher.importlib, "import_module", interrupted)
    assert launcher.main(["lseg_node", "--ros-args", "-p", "device:=cpu"]) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines() == ["lseg_node: stopped during start-up"]
    assert captured.out == ""


def test_the_program_runs_with_its_own_name_and_arguments(monkeypatch):
    seen = {}

    class Program:
        @staticmethod
        def main():
            seen["argv"] = list(sys.argv)
            return 7

    monkeypatch.setattr(launcher.importlib, "import_module", lambda name: Program)
    monkeypatch.setattr(sys, "argv", ["launcher"])
    assert launcher.main(["camera_sim", "--rate", "5"]) == 7
    assert seen["argv"] == ["camera_sim", "--rate", "5"]


def test_an_unknown_program_is_named_and_exits_2(capsys):
    assert launcher.main(["lseg_nod"]) == 2
    assert "unknown program 'lseg_nod'; accepted: lseg_node" in capsys.readouterr().err
    assert launcher.main([]) == 2


def test_the_cmake_wrappers_are_the_launchers_programs():
    cmake = (ROOT / "CMakeLists.txt").read_text()
    listed = re.search(r"set\(_lseg_executables ([^)]*)\)", cmake).group(1).split()
    assert listed == list(launcher.PROGRAMS)
    assert "-m lseg_ros.ros.launcher ${_executable}" in cmake


def test_every_program_module_has_a_main():
    for program, module in launcher.PROGRAMS.items():
        source = (ROOT / (module.replace(".", "/") + ".py")).read_text()
        assert re.search(r"^def main\(", source, re.M), program


@pytest.mark.slow
def test_the_launcher_runs_a_program_as_a_process():
    result = subprocess.run([sys.executable, "-m", "lseg_ros.ros.launcher", "nothing"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "unknown program 'nothing'" in result.stderr
