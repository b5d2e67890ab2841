"""The documentation's generated parts, its links and its two commands stay true."""
import re
from pathlib import Path

from lseg_ros.ros.params import render_parameter_table

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
PARAMETERS_DOC = (ROOT / "docs" / "parameters.md").read_text()
MAX_README_LINES = 250
# the README's sections before it became a front door (issue 23); each must stay reachable
OLD_SECTIONS = (
    "The two commands", "Weights", "LMSeg", "Python API", "Attribute-enriched prompts (LMSeg)", "Command line",
    "ROS 2 node", "Several cameras", "Mapping and navigation", "Parameters", "Training and evaluation",
    "ViL-Seg: segmentation learned from captions", "Profiles: the papers' settings", "Performance",
    "Deployment speed settings", "Exported runtime (ONNX Runtime, TensorRT)", "Layout",
)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def markdown_files():
    """README.md, docs/*.md and benchmarks/README.md: the files whose links are checked."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]


def headings(text):
    """Markdown heading texts outside fenced code blocks (a `# comment` in a bash block is none)."""
    found, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", line):
            found.append(line.lstrip("#").strip())
    return found


def anchor(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def relative_links(path):
    """(target path, anchor or None) of every relative link in a markdown file, code excluded."""
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    links = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        file_part, _, fragment = target.partition("#")
        links.append((path if not file_part else (path.parent / file_part).resolve(), fragment or None))
    return links


def test_parameter_doc_table_is_the_generated_one():
    start = PARAMETERS_DOC.index("<!-- parameter-table:start")
    start = PARAMETERS_DOC.index("\n", start) + 1
    end = PARAMETERS_DOC.index("<!-- parameter-table:end -->")
    assert PARAMETERS_DOC[start:end] == render_parameter_table(), "run: python scripts/update_readme_table.py"


def test_readme_names_the_two_commands_and_ci_runs_the_test_command():
    assert "bash scripts/test.sh" in README and "bash scripts/demo.sh" in README
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/test.sh" in ci
    for script in ("scripts/test.sh", "scripts/demo.sh", "scripts/setup_env.sh", "scripts/build_interfaces.sh"):
        assert (ROOT / script).is_file()


def test_readme_is_a_front_door_of_at_most_250_lines():
    lines = len(README.splitlines())
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; move detail to docs/ (at most {MAX_README_LINES})"


def test_every_relative_link_resolves_to_a_file_and_heading():
    broken = []
    for path in markdown_files():
        for target, fragment in relative_links(path):
            shown = target.relative_to(ROOT) if target.is_relative_to(ROOT) else target
            where = f"{path.relative_to(ROOT)} -> {shown}{'#' + fragment if fragment else ''}"
            if not target.exists():
                broken.append(f"{where}: no such file")
            elif fragment and target.suffix == ".md" and fragment not in map(anchor, headings(target.read_text())):
                broken.append(f"{where}: no such heading")
    assert not broken, "\n".join(broken)


def test_every_old_readme_section_is_reachable_from_the_readme():
    reachable = set(headings(README))
    for target, _ in relative_links(ROOT / "README.md"):
        if target.suffix == ".md" and target.exists():
            reachable.update(headings(target.read_text()))
    missing = [section for section in OLD_SECTIONS if section not in reachable]
    assert not missing, f"sections no longer reachable from README.md: {missing}"


def test_docs_name_no_unnamed_machine_or_session():
    vague = re.compile(r"this (?:dev |development )?(?:machine|session)|on this machine|measured here|run here",
                       re.I)
    found = [f"{path.relative_to(ROOT)}: {m.group(0)!r}" for path in markdown_files()
             for m in vague.finditer(path.read_text())]
    assert not found, "name the machine (e.g. 'a 2-core Xeon CPU') instead: " + "; ".join(found)


def test_every_result_file_follows_the_naming_scheme_and_is_described():
    scheme = re.compile(r"[a-z0-9_]+_(cpu|cuda)_[a-z0-9]+_\d{4}-\d{2}-\d{2}(_run\d+)?\.(json|csv)")
    described = (ROOT / "benchmarks" / "README.md").read_text()
    results = sorted((ROOT / "benchmarks" / "results").iterdir())
    assert results
    misnamed = [path.name for path in results if not scheme.fullmatch(path.name)]
    assert not misnamed, f"rename to <script>[_<variant>]_<device>_<machine>_<YYYY-MM-DD>[_runN].<ext>: {misnamed}"
    undescribed = [path.name for path in results if path.stem not in described]
    assert not undescribed, f"say in benchmarks/README.md which command produced: {undescribed}"


def test_ros_package_docstring_names_every_module_of_lseg_ros_ros():
    import lseg_ros.ros

    named = set(re.findall(r":mod:`lseg_ros\.ros\.(\w+)`", lseg_ros.ros.__doc__))
    files = {path.stem for path in (ROOT / "lseg_ros" / "ros").glob("*.py") if path.stem != "__init__"}
    assert named == files, f"unlisted: {sorted(files - named)}; listed but absent: {sorted(named - files)}"


def test_class_references_in_docstrings_name_classes_the_module_has():
    import ast

    stale = []
    for path in sorted((ROOT / "lseg_ros").rglob("*.py")):
        tree = ast.parse(path.read_text())
        known = {node.name for node in ast.walk(tree) if isinstance(node, (ast.ClassDef, ast.FunctionDef))}
        known |= {(alias.asname or alias.name).split(".")[0] for node in ast.walk(tree)
                  if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names}
        for name in re.findall(r":class:`(\w+)`", path.read_text()):
            if name not in known:
                stale.append(f"{path.relative_to(ROOT)}: {name}")
    assert not stale, "docstrings name classes that do not exist there: " + "; ".join(stale)
