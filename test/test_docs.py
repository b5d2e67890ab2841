"""The README's generated parts and its two commands stay true."""
from pathlib import Path

from lseg_ros.ros.params import render_parameter_table

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_parameter_table_is_the_generated_one():
    start = README.index("<!-- parameter-table:start")
    start = README.index("\n", start) + 1
    end = README.index("<!-- parameter-table:end -->")
    assert README[start:end] == render_parameter_table(), "run: python scripts/update_readme_table.py"


def test_readme_names_the_two_commands_and_ci_runs_the_test_command():
    assert "bash scripts/test.sh" in README and "bash scripts/demo.sh" in README
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/test.sh" in ci
    for script in ("scripts/test.sh", "scripts/demo.sh", "scripts/setup_env.sh", "scripts/build_interfaces.sh"):
        assert (ROOT / script).is_file()
