"""launch/lseg.launch.py, config/lseg.rviz and config/lseg.yaml agree with the node they drive.

launch_ros has no wheel, so the launch description is built and run through its actions only
where launch_ros imports (a ROS 2 installation). Everywhere else the files are checked
structurally (ast, YAML) against the node's own source: the parameters it declares and the
topics it subscribes to and publishes, so renaming one of them fails here.
"""
import ast
import importlib.util
import json
import os
import pathlib
import re
import tempfile

import pytest
import yaml

from lseg_ros.ros import launch_args
from lseg_ros.ros.params import declared_fields, render_params_yaml

from helpers import domain_id  # noqa: E402

pytestmark = pytest.mark.ros

ROOT = pathlib.Path(__file__).resolve().parents[1]
LAUNCH_FILE = ROOT / "launch" / "lseg.launch.py"
RVIZ_FILE = ROOT / "config" / "lseg.rviz"
PARAMS_FILE = ROOT / "config" / "lseg.yaml"
NODE_SOURCE = ROOT / "lseg_ros" / "ros" / "node.py"
CMAKE_FILE = ROOT / "CMakeLists.txt"

# modules a ROS 2 installation provides; the structural checks never import them
ROS_LAUNCH_MODULES = ("launch", "launch_ros", "ament_index_python")


# --------------------------------------------------------------- source readers
def _tree(path):
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


LAUNCH_TREE = _tree(LAUNCH_FILE)
# node.py and the modules that make its topics (each camera's outputs, the label inputs)
NODE_TREE = ast.Module(body=[statement for path in (NODE_SOURCE, NODE_SOURCE.with_name("outputs.py"),
                                                    NODE_SOURCE.with_name("label_inputs.py"))
                             for statement in _tree(path).body], type_ignores=[])


def _calls(tree, name):
    """Every call `name(...)` or `anything.name(...)`."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if (isinstance(func, ast.Name) and func.id == name) or (isinstance(func, ast.Attribute)
                                                                    and func.attr == name):
                yield node


def _keyword(call, name):
    return next((keyword.value for keyword in call.keywords if keyword.arg == name), None)


def node_topics(kind):
    """{topic: message type} of every `create_<kind>(Type, "topic", ...)` in node.py (or of
    its local helper `<kind>(Type, "topic", ...)`, which forwards to create_<kind>)."""
    topics = {}
    for call in list(_calls(NODE_TREE, f"create_{kind}")) + list(_calls(NODE_TREE, kind)):
        msg_type, topic = call.args[:2]
        if ast.unparse(topic) == "topic":  # the helper forwarding its argument
            continue
        if ast.unparse(topic) == "compressed_topic":  # derived from the resolved `image` topic
            topics["<image>/compressed"] = ast.unparse(msg_type)
            continue
        assert isinstance(topic, ast.Constant), f"node.py line {call.lineno}: topic is not a literal"
        topics[topic.value] = ast.unparse(msg_type)
    return topics


def node_default_name():
    for node in ast.walk(NODE_TREE):
        if isinstance(node, ast.FunctionDef) and node.name == "__init__":
            names = [arg.arg for arg in node.args.args]
            defaults = dict(zip(names[len(names) - len(node.args.defaults):], node.args.defaults))
            if "node_name" in defaults:
                return ast.literal_eval(defaults["node_name"])
    raise AssertionError("LsegNode.__init__ has no node_name default")


def launch_arguments():
    """{name: (default, description)} of every launch argument (derived from the dataclasses)."""
    return launch_args.launch_arguments(str(PARAMS_FILE))


def lseg_node_call():
    """The launch file's `(LifecycleNode if managed else Node)(package="lseg_ros", ...)`."""
    (call,) = [node for node in ast.walk(LAUNCH_TREE) if isinstance(node, ast.Call)
               and isinstance(_keyword(node, "package"), ast.Constant) and _keyword(node, "package").value == "lseg_ros"]
    assert ast.unparse(call.func) == "LifecycleNode if managed else Node"
    return call


def launch_helpers():
    """The launch file's plain-Python helpers (label and bool parsing, params file), run without launch."""
    kept = []
    for node in LAUNCH_TREE.body:
        if isinstance(node, ast.Import):
            names = [alias for alias in node.names if alias.name.split(".")[0] not in ROS_LAUNCH_MODULES]
            kept += [ast.Import(names=names)] if names else []
        elif isinstance(node, ast.ImportFrom):
            kept += [] if node.module.split(".")[0] in ROS_LAUNCH_MODULES else [node]
        elif isinstance(node, (ast.Assign, ast.FunctionDef)):
            kept.append(node)
    namespace = {}
    module = ast.fix_missing_locations(ast.Module(body=kept, type_ignores=[]))
    exec(compile(module, str(LAUNCH_FILE), "exec"), namespace)
    return namespace


# ----------------------------------------------------------- launch arguments
def test_launch_file_defines_generate_launch_description():
    assert "generate_launch_description" in [node.name for node in LAUNCH_TREE.body
                                             if isinstance(node, ast.FunctionDef)]


def test_every_launch_argument_is_documented():
    for name, (default, description) in launch_arguments().items():
        assert isinstance(default, str) and description.strip(), name


def test_every_launch_configuration_read_is_declared_and_every_argument_read():
    declared = set(launch_arguments())
    read = set()
    for call in _calls(LAUNCH_TREE, "_value"):  # _value(context, "name")
        if isinstance(call.args[1], ast.Constant):
            read.add(call.args[1].value)
    comprehensions = [node for node in ast.walk(LAUNCH_TREE) if isinstance(node, ast.DictComp)
                      and ast.unparse(node.generators[0].iter) == "parameter_arguments()"]
    assert comprehensions, "the parameter arguments are read in one comprehension"
    read |= set(launch_args.parameter_arguments())
    assert read - declared == set(), "read but not declared"
    assert declared - read == set(), "declared but never used"


# ------------------------------------------------------------- node parameters
def test_every_node_parameter_is_a_launch_argument_plus_the_run_arguments():
    arguments = launch_arguments()
    assert set(declared_fields()) <= set(arguments)
    assert {"use_sim_time", "log_level", "namespace", "image_qos", "params_file", "rviz"} <= set(arguments)
    assert all(arguments[name][0] == "" for name in declared_fields())  # empty: params file and profile decide


_SAMPLES = {bool: ("true", True), int: ("7", 7), float: ("0.25", 0.25), str: ("x", "x")}


def test_launch_argument_strings_are_converted_to_each_parameters_type():
    # Arguments arrive as strings; a string given to a bool or number parameter would stop the node.
    import typing

    for name, (tp, default, _) in declared_fields().items():
        if typing.get_origin(tp) is list:
            (item,) = typing.get_args(tp)
            text, expected = {str: ("a, b", ["a", "b"]), int: ("8, 16", [8, 16]),
                              float: ("0.5, 1", [0.5, 1.0])}[item]
        else:
            text, expected = _SAMPLES[tp]
        value = launch_args.node_parameters({name: text})[name]
        assert value == expected and type(value) is type(expected), name
    assert launch_args.node_parameters({"model": ""}) == {}  # empty: not passed
    with pytest.raises(ValueError, match="short_side:='big'"):
        launch_args.node_parameters({"short_side": "big"})


def test_log_level_argument_is_checked():
    assert launch_args.parse_log_level("WARN") == "warn"
    with pytest.raises(ValueError, match="log_level:='loud'"):
        launch_args.parse_log_level("loud")


def test_node_name_is_the_one_the_params_file_and_node_use():
    node_name = launch_args.NODE_NAME
    assert ast.unparse(_keyword(lseg_node_call(), "name")) == "NODE_NAME" and node_name == node_default_name()
    assert list(yaml.safe_load(PARAMS_FILE.read_text())) == ["/**/" + node_name]  # any namespace


def test_label_argument_is_split_like_the_labels_topic():
    from lseg_ros.segmenter import parse_label_text

    for text in ("door, chair", "door; chair\nfloor", "a red chair , the door;", "person ;man;; woman, car"):
        assert launch_args.node_parameters({"labels": text})["labels"] == parse_label_text(text), text


@pytest.mark.parametrize("text, value", [("true", True), ("True", True), ("1", True), ("false", False),
                                         ("FALSE", False), ("0", False)])
def test_bool_argument_reads_launch_booleans(text, value):
    assert launch_args.parse_launch_bool("use_sim_time", text) is value


def test_bool_argument_rejects_other_words_naming_them():
    with pytest.raises(ValueError, match="use_sim_time:='yes'"):
        launch_args.parse_launch_bool("use_sim_time", "yes")


def test_params_file_for_lseg_node_applies_in_any_namespace(tmp_path, monkeypatch):
    rclpy = pytest.importorskip("rclpy")
    from rclpy.node import Node

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    params_file = tmp_path / "custom.yaml"
    params_file.write_text("lseg_node:\n  ros__parameters:\n    short_side: 224\n")
    rewritten = launch_helpers()["_any_namespace_params_file"](str(params_file), {})
    assert yaml.safe_load(open(rewritten)) == {"/**/lseg_node": {"ros__parameters": {"short_side": 224}}}

    context = rclpy.Context()
    context.init(args=[], domain_id=domain_id())
    try:
        for namespace in ("/", "/robot1", "/a/b"):
            node = Node("lseg_node", namespace=namespace, context=context,
                        cli_args=["--ros-args", "--params-file", rewritten])
            assert node.declare_parameter("short_side", 448).value == 224, namespace
            node.destroy_node()
    finally:
        context.try_shutdown()


def test_params_file_without_a_lseg_node_section_is_used_as_it_is(tmp_path):
    params_file = tmp_path / "wildcard.yaml"
    params_file.write_text("/**:\n  ros__parameters:\n    short_side: 224\n")
    files = {}
    assert launch_helpers()["_any_namespace_params_file"](str(params_file), files) == str(params_file)
    assert files == {}  # nothing generated: nothing to remove


def test_generated_launch_files_are_removed_when_the_launch_shuts_down(tmp_path, monkeypatch):
    # the launch registers an OnShutdown handler removing the files _nodes generates (in one directory)
    (function,) = [node for node in LAUNCH_TREE.body if isinstance(node, ast.FunctionDef)
                   and node.name == "generate_launch_description"]
    source = ast.unparse(function)
    assert "OpaqueFunction(function=_nodes, kwargs={'files': files})" in source
    assert "RegisterEventHandler(OnShutdown(on_shutdown=functools.partial(_remove_launch_files, files)))" in source
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    helpers = launch_helpers()
    params_file = tmp_path / "custom.yaml"
    params_file.write_text("lseg_node:\n  ros__parameters:\n    short_side: 224\n")
    files = {}
    rewritten = helpers["_any_namespace_params_file"](str(params_file), files)
    rviz = helpers["_launch_file"](files, "lseg.rviz")
    pathlib.Path(rviz).write_text("rviz")
    assert pathlib.Path(rewritten).parent == pathlib.Path(rviz).parent == pathlib.Path(files["directory"])
    assert list((tmp_path / "tmp").iterdir()) == [pathlib.Path(files["directory"])]
    helpers["_remove_launch_files"](files, "shutdown event", "context")  # as OnShutdown calls it
    assert list((tmp_path / "tmp").iterdir()) == [] and params_file.is_file()
    helpers["_remove_launch_files"](files, "shutdown event", "context")  # a second shutdown: nothing left


@pytest.mark.parametrize("text, value", [("off", "off"), ("OFF", "off"), ("on", "on"), ("true", "on"),
                                         ("False", "off"), ("yes", "on"), ("0", "off"), ("auto", "auto")])
def test_on_off_launch_arguments_take_boolean_spellings(text, value):
    from lseg_ros.config import SegmenterConfig, switch_fields

    names = switch_fields(SegmenterConfig)
    assert {"mha_fastpath", "attribute_prompts", "stage_timings"} <= set(names)
    for name in names:
        assert launch_args.node_parameters({name: text}) == {name: value}, name
    assert launch_args.node_parameters({"device": "true"}) == {"device": "true"}  # other strings stay as given


# ---------------------------------------------------------------------- topics
def test_remapped_topics_are_the_topics_the_node_subscribes_to():
    assert ast.unparse(_keyword(lseg_node_call(), "remappings")).startswith("remappings(")
    remapped = {relative for relative, _ in launch_args.remappings("/a", "/b", "c", "/d")}
    inputs = node_topics("subscription")
    assert "<image>/compressed" in inputs  # follows the remapped image topic, needs no remapping of its own
    relative_inputs = {topic for topic in inputs if not topic.startswith(("~", "/", "<"))}
    assert relative_inputs == {"image", "camera_info", "labels", "depth"}
    assert remapped == relative_inputs


def test_launch_references_files_that_ship_in_config():
    referenced = [call.args[-1].value for call in _calls(LAUNCH_TREE, "join")
                  if len(call.args) == 3 and ast.unparse(call.args[1]) == "'config'"]
    assert sorted(referenced) == ["lseg.rviz", "lseg.yaml"]
    for name in referenced:
        assert (ROOT / "config" / name).is_file(), name


def test_cmake_installs_the_launched_executable_and_the_launch_and_config_directories():
    cmake = CMAKE_FILE.read_text()
    assert ast.unparse(_keyword(lseg_node_call(), "executable")) == "EXECUTABLES[managed]"
    assert re.search(r"project\(\s*lseg_ros\s*\)", cmake)
    from lseg_ros.ros.launcher import PROGRAMS

    modules = {False: "lseg_ros.ros.node", True: "lseg_ros.ros.lifecycle"}
    listed = re.search(r"set\(_lseg_executables ([^)]*)\)", cmake).group(1).split()
    for managed, executable in launch_args.EXECUTABLES.items():
        assert executable in listed and PROGRAMS[executable] == modules[managed]
    installed = re.search(r"install\(DIRECTORY\s+([^)]*?)\s+DESTINATION\s+share/\$\{PROJECT_NAME\}", cmake)
    assert installed and {"launch", "config"} <= set(installed.group(1).split())


# ------------------------------------------------------------------------ rviz
def _rviz():
    return yaml.safe_load(RVIZ_FILE.read_text())


def test_rviz_config_has_the_rviz2_layout():
    rviz = _rviz()
    assert "rviz_common/Displays" in [panel["Class"] for panel in rviz["Panels"]]
    manager = rviz["Visualization Manager"]
    # the launch's default (a RealSense color camera's optical frame): the file opened by hand
    # shows what the launch shows
    assert manager["Global Options"]["Fixed Frame"] == launch_arguments()["rviz_fixed_frame"][0]
    for display in manager["Displays"]:
        assert display["Class"] in ("rviz_default_plugins/Image", "rviz_default_plugins/PointCloud2",
                                    "rviz_default_plugins/MarkerArray") and display["Enabled"] is True
        assert display["Name"] and display["Topic"]["Value"]
        assert display["Topic"]["Reliability Policy"] in ("Reliable", "Best Effort")


def test_rviz_shows_the_camera_and_the_node_overlay_and_mask():
    image_publishers = {topic for topic, msg_type in node_topics("publisher").items() if msg_type == "Image"}
    assert {"~/overlay", "~/mask", "~/confidence_image"} <= image_publishers
    node_name = launch_args.NODE_NAME
    camera = launch_arguments()["image"][0]
    shown = [display["Topic"]["Value"] for display in _rviz()["Visualization Manager"]["Displays"]]
    assert shown == [camera, f"/{node_name}/overlay", f"/{node_name}/mask", f"/{node_name}/confidence_image",
                     f"/{node_name}/points", f"/{node_name}/markers"]
    publishers = node_topics("publisher")
    assert (publishers["~/points"], publishers["~/markers"]) == ("PointCloud2", "MarkerArray")


# ----------------------------------------------------------------- params file
def test_shipped_params_file_is_the_generated_one():
    assert PARAMS_FILE.read_text() == render_params_yaml(), \
        "regenerate: python -m lseg_ros.ros.params > config/lseg.yaml"


def test_params_file_sets_every_declared_parameter_to_its_default_but_those_of_profiles():
    from lseg_ros.profiles import profile_fields

    (section,) = yaml.safe_load(PARAMS_FILE.read_text()).values()
    values = section["ros__parameters"]
    left = set(profile_fields())
    assert list(values) == [name for name in declared_fields() if name not in left]
    assert "profile" in values and "short_side" in left
    for name, (_, default, _) in declared_fields().items():
        assert name in left or values[name] == default, name


# ---------------------------------------------------- with launch_ros installed
@pytest.fixture
def launch_module(monkeypatch, tmp_path):
    """The launch file, imported with launch_ros; share/lseg_ros is the source tree (same layout)."""
    try:
        import launch_ros.actions  # noqa: F401
    except ImportError as error:
        pytest.skip(f"launch_ros does not import ({error}); it comes with a ROS 2 installation, not PyPI")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # launch's parameter files land here
    spec = importlib.util.spec_from_file_location("lseg_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "get_package_share_directory", lambda package: str(ROOT))
    return module


def _run_arguments(description, arguments):
    """Declare the arguments as `ros2 launch` would, then expand the node actions:
    (context, lseg_node action, the other actions: rviz2 or a note that it is missing)."""
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    context = LaunchContext()
    context.launch_configurations.update(arguments)
    for entity in description.entities:
        if isinstance(entity, DeclareLaunchArgument):
            entity.execute(context)
    (opaque,) = [entity for entity in description.entities if isinstance(entity, OpaqueFunction)]
    lseg_node, *others = opaque.execute(context)
    lseg_node._perform_substitutions(context)
    for other in others:
        if hasattr(other, "_perform_substitutions"):
            other._perform_substitutions(context)
    return context, lseg_node, others


def _command_line(node, context):
    """The node's command line after the executable, without the ros args launch fills in at run time."""
    from launch.substitutions import TextSubstitution
    from launch.utilities import perform_substitutions

    return [perform_substitutions(context, part) for part in node.cmd[1:]
            if all(isinstance(substitution, TextSubstitution) for substitution in part)]


def _options(command_line, flag):
    return [command_line[i + 1] for i, part in enumerate(command_line) if part == flag]


def _parameter_files(command_line):
    """Contents of the --params-file arguments (launch_ros writes lists as !!python/tuple)."""
    return [json.loads(json.dumps(yaml.load(open(path), Loader=yaml.FullLoader)))
            for path in _options(command_line, "--params-file")]


def test_launch_description_declares_documented_arguments(launch_module):
    from launch.actions import DeclareLaunchArgument

    description = launch_module.generate_launch_description()
    arguments = {entity.name: entity for entity in description.entities if isinstance(entity, DeclareLaunchArgument)}
    assert set(arguments) == set(launch_arguments())
    assert all(argument.description.strip() for argument in arguments.values())


def test_launch_runs_lseg_node_with_params_file_overrides_and_remappings(launch_module, tmp_path):
    params_file = tmp_path / "custom.yaml"
    params_file.write_text("lseg_node:\n  ros__parameters:\n    short_side: 224\n")
    context, node, others = _run_arguments(launch_module.generate_launch_description(), {
        "image": "/cam/image", "labels": "door; chair, floor", "model": "lseg-test-tiny-ViT", "pretrained": "random",
        "device": "cpu", "image_transport": "compressed", "short_side": "336", "use_sim_time": "true",
        "log_level": "debug", "namespace": "robot1", "params_file": str(params_file)})
    assert (node.node_package, node.node_executable) == ("lseg_ros", "lseg_node")
    assert node.node_name == "/robot1/lseg_node"
    assert node.expanded_remapping_rules == [("image", "/cam/image"), ("camera_info", "/camera/color/camera_info"),
                                             ("labels", "labels"),
                                             ("depth", "/camera/aligned_depth_to_color/image_raw")]
    command_line = _command_line(node, context)
    file_parameters, overrides = _parameter_files(command_line)
    assert file_parameters == {"/**/lseg_node": {"ros__parameters": {"short_side": 224}}}
    assert overrides == {"/robot1/lseg_node": {"ros__parameters": {
        "model": "lseg-test-tiny-ViT", "pretrained": "random", "device": "cpu", "image_transport": "compressed",
        "short_side": 336, "labels": ["door; chair", "floor"], "use_sim_time": True}}}
    assert "image:=/cam/image" in _options(command_line, "-r")
    assert _options(command_line, "--log-level") == ["debug"]
    assert others == []  # rviz:=false


def test_launch_defaults_use_the_shipped_params_file_and_camera_topics(launch_module):
    context, node, _ = _run_arguments(launch_module.generate_launch_description(), {})
    assert node.node_name == "/lseg_node"
    file_parameters, overrides = _parameter_files(_command_line(node, context))
    assert file_parameters == {"/**/lseg_node": yaml.safe_load(PARAMS_FILE.read_text())["/**/lseg_node"]}
    assert overrides["/lseg_node"]["ros__parameters"] == {"use_sim_time": False}
    assert dict(node.expanded_remapping_rules)["image"] == "/camera/color/image_raw"


def test_rviz_starts_only_when_asked_and_installed(launch_module, monkeypatch):
    monkeypatch.setattr(launch_module, "_installed", lambda package: True)
    context, _, (rviz,) = _run_arguments(launch_module.generate_launch_description(),
                                         {"rviz": "true", "image": "/x/image", "namespace": "robot1"})
    assert (rviz.node_package, rviz.node_executable) == ("rviz2", "rviz2")
    (config_path,) = _options(_command_line(rviz, context), "-d")
    displays = yaml.safe_load(open(config_path))["Visualization Manager"]["Displays"]
    assert [d["Topic"]["Value"] for d in displays] == ["/x/image", "/robot1/lseg_node/overlay",
                                                       "/robot1/lseg_node/mask", "/robot1/lseg_node/confidence_image",
                                                       "/robot1/lseg_node/points", "/robot1/lseg_node/markers"]
    assert yaml.safe_load(open(config_path))["Visualization Manager"]["Global Options"]["Fixed Frame"] == \
        "camera_color_optical_frame"
    monkeypatch.setattr(launch_module, "_installed", lambda package: False)
    _, _, (note,) = _run_arguments(launch_module.generate_launch_description(), {"rviz": "true"})
    assert type(note).__name__ == "LogInfo"  # the node runs; nothing is left orphaned


@pytest.mark.parametrize("image, namespace, expected", [
    ("/camera/color/image_raw", "", ["/camera/color/image_raw", "/lseg_node/overlay", "/lseg_node/mask",
                                     "/lseg_node/confidence_image", "/lseg_node/points", "/lseg_node/markers"]),
    ("/x/image", "robot1", ["/x/image", "/robot1/lseg_node/overlay", "/robot1/lseg_node/mask",
                            "/robot1/lseg_node/confidence_image", "/robot1/lseg_node/points",
                            "/robot1/lseg_node/markers"]),
    ("cam/image", "/a/b/", ["/a/b/cam/image", "/a/b/lseg_node/overlay", "/a/b/lseg_node/mask",
                            "/a/b/lseg_node/confidence_image", "/a/b/lseg_node/points", "/a/b/lseg_node/markers"]),
])
def test_rendered_rviz_config_follows_the_image_remap_and_the_namespace(image, namespace, expected):
    rendered = yaml.safe_load(launch_args.render_rviz_config(RVIZ_FILE.read_text(), image, namespace))
    displays = rendered["Visualization Manager"]["Displays"]
    assert [display["Topic"]["Value"] for display in displays] == expected
    assert rendered["Visualization Manager"]["Global Options"] == _rviz()["Visualization Manager"]["Global Options"]
    template = _rviz()
    template_displays = template["Visualization Manager"]["Displays"]
    for display, original in zip(displays, template_displays):  # only the topics change
        assert {k: v for k, v in display.items() if k != "Topic"} == {k: v for k, v in original.items() if k != "Topic"}
    assert {display["Name"] for display in displays} == set(launch_args.RVIZ_DISPLAYS)


def test_rendered_rviz_config_takes_the_fixed_frame():
    rendered = yaml.safe_load(launch_args.render_rviz_config(RVIZ_FILE.read_text(), "/x", "", "zed_left_optical"))
    assert rendered["Visualization Manager"]["Global Options"]["Fixed Frame"] == "zed_left_optical"


def test_launch_shutdown_removes_the_generated_params_and_rviz_files(launch_module, monkeypatch, tmp_path):
    from launch import LaunchContext
    from launch.actions import RegisterEventHandler
    from launch.events import Shutdown

    monkeypatch.setattr(launch_module, "_installed", lambda package: True)
    params_file = tmp_path / "custom.yaml"
    params_file.write_text("lseg_node:\n  ros__parameters:\n    short_side: 224\n")
    description = launch_module.generate_launch_description()
    context, node, (rviz,) = _run_arguments(description, {"rviz": "true", "params_file": str(params_file)})
    generated = [_options(_command_line(node, context), "--params-file")[0],
                 _options(_command_line(rviz, context), "-d")[0]]
    assert all(os.path.isfile(path) for path in generated)
    (handler,) = [entity for entity in description.entities if isinstance(entity, RegisterEventHandler)]
    handler.event_handler.handle(Shutdown(), LaunchContext())
    assert not any(os.path.exists(path) for path in generated) and params_file.is_file()


def test_lifecycle_argument_runs_the_managed_node(launch_module):
    from launch_ros.actions import LifecycleNode

    context, node, _ = _run_arguments(launch_module.generate_launch_description(),
                                      {"lifecycle": "true", "namespace": "robot1"})
    assert isinstance(node, LifecycleNode)
    assert (node.node_package, node.node_executable) == ("lseg_ros", "lseg_lifecycle_node")
    assert node.node_name == "/robot1/lseg_node"
    _, plain, _ = _run_arguments(launch_module.generate_launch_description(), {})
    assert not isinstance(plain, LifecycleNode) and plain.node_executable == "lseg_node"
