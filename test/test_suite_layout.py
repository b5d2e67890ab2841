"""The test suite's own rules: shared code lives in helpers.py / ros_helpers.py, never in another
test module or conftest.py, and every marker a test uses is registered in test/conftest.py."""
import ast
import re
from pathlib import Path

TEST_DIR = Path(__file__).resolve().parent
BUILTIN_MARKERS = {"parametrize", "skipif", "skip", "xfail", "usefixtures", "filterwarnings"}


def imported_modules(path: Path) -> set:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_no_test_module_imports_another_test_module_or_conftest():
    offenders = {path.name: sorted(name for name in imported_modules(path)
                                   if name == "conftest" or name.startswith("test_"))
                 for path in sorted(TEST_DIR.glob("*.py"))}
    assert not {name: found for name, found in offenders.items() if found}


def test_every_marker_used_is_registered(pytestconfig):
    registered = {line.split(":")[0].strip() for line in pytestconfig.getini("markers")}
    used = set()
    for path in TEST_DIR.glob("test_*.py"):
        used.update(re.findall(r"pytest\.mark\.(\w+)", path.read_text()))
    assert {"ros", "slow", "cuda"} <= registered
    assert used - BUILTIN_MARKERS <= registered, used - BUILTIN_MARKERS - registered
