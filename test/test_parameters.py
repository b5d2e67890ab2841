"""lseg_node's declared parameters as a ROS client sees them (rclpy, no model): on/off
settings given as booleans, descriptor ranges and read-only flags from the config fields,
typed empty lists. Each test uses its own context and localhost-only discovery."""
import contextlib
import os
import time
import typing

import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from lseg_ros.config import SegmenterConfig, switch_fields  # noqa: E402
from lseg_ros.ros.params import (DYNAMIC_PARAMETERS, NodeConfig, declare_parameters, declared_fields,  # noqa: E402
                                 declared_metadata, parameter_overrides, read_configs)

from helpers import domain_id  # noqa: E402

pytestmark = pytest.mark.ros

SWITCHES = switch_fields(SegmenterConfig)
_DOMAIN = domain_id()  # one for the module's nodes


@contextlib.contextmanager
def declared_node(cli_args=(), overrides=()):
    """A plain node named lseg_node with lseg_node's parameters declared."""
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    context = rclpy.Context()
    context.init(args=[], domain_id=_DOMAIN)
    try:
        node = Node("lseg_node", context=context, cli_args=["--ros-args", *cli_args] if cli_args else None,
                    parameter_overrides=list(overrides))
        declare_parameters(node)
        yield node
        node.destroy_node()
    finally:
        context.try_shutdown()


def test_on_off_settings_from_a_params_file_read_as_on_off(tmp_path):
    # rcl reads an unquoted on/off in a params file as a boolean; docs/python_api.md writes them so
    params_file = tmp_path / "params.yaml"
    params_file.write_text("/**:\n  ros__parameters:\n    attribute_prompts: on\n    mha_fastpath: off\n"
                           "    stage_timings: off\n")
    with declared_node(["--params-file", str(params_file)]) as node:
        assert node.get_parameter("attribute_prompts").type_ == Parameter.Type.BOOL  # what rcl made of it
        config, _ = read_configs(node)
    assert (config.attribute_prompts, config.mha_fastpath, config.stage_timings) == ("on", "off", "off")


def test_on_off_settings_from_command_line_overrides_read_as_on_off():
    with declared_node(["-p", "mha_fastpath:=off", "-p", "attribute_prompts:=on"]) as node:
        config, _ = read_configs(node)
    assert (config.mha_fastpath, config.attribute_prompts) == ("off", "on")


@pytest.mark.parametrize("name", SWITCHES)
def test_on_off_settings_given_as_boolean_parameter_overrides_read_as_on_off(name):
    with declared_node(overrides=[Parameter(name, value=False)]) as node:
        assert getattr(read_configs(node)[0], name) == "off"
    with declared_node(overrides=parameter_overrides({name: "off"})) as node:  # the string still works
        assert getattr(read_configs(node)[0], name) == "off"
    if name != "stage_timings":  # its values are off | events | sync
        with declared_node(overrides=parameter_overrides({name: True})) as node:
            assert getattr(read_configs(node)[0], name) == "on"


def test_descriptors_publish_the_config_ranges_and_read_only_for_restart_parameters():
    with declared_node() as node:
        names = list(declared_fields())
        descriptors = dict(zip(names, node.describe_parameters(names)))
    metadata = declared_metadata()
    for name, (tp, _, _) in declared_fields().items():
        descriptor = descriptors[name]
        assert descriptor.read_only == (name not in DYNAMIC_PARAMETERS), name
        bounds = metadata[name].get("bounds")
        if tp in (int, float) and name not in ("min_stamp_delay", "max_stamp_delay"):  # any seconds, min < max
            assert bounds is not None, f"{name}: a number without bounds"
            (published,) = descriptor.integer_range if tp is int else descriptor.floating_point_range
            if bounds.low is not None:
                assert published.from_value == bounds.low, name
            if bounds.high is not None:
                assert published.to_value == bounds.high, name
            assert descriptor.additional_constraints == f"accepted: {bounds.accepted(tp is int)}", name
    threshold = descriptors["threshold"].floating_point_range[0]
    assert (threshold.from_value, threshold.to_value) == (0.0, 1.0)
    memory = descriptors["memory_budget_mb"].integer_range[0]
    assert (memory.from_value, memory.to_value) == (16, 65536)
    assert descriptors["max_labels"].integer_range[0].to_value == 4096


EMPTY_LISTS_FILE = "/**:\n  ros__parameters:\n    obstacle_labels: []\n    cameras: []\n"


@pytest.mark.parametrize("params_file_text", ["", EMPTY_LISTS_FILE], ids=["defaults", "params file []"])
def test_empty_list_parameters_are_typed_string_arrays(tmp_path, params_file_text):
    params_file = tmp_path / "params.yaml"
    params_file.write_text(params_file_text or "/**:\n  ros__parameters:\n    short_side: 448\n")
    with declared_node(["--params-file", str(params_file)]) as node:
        names = [name for name, (tp, _, _) in declared_fields().items() if typing.get_origin(tp) is list]
        assert {"obstacle_labels", "cameras", "labels"} <= set(names)
        for name, descriptor, parameter_type in zip(names, node.describe_parameters(names),
                                                     node.get_parameter_types(names)):
            expected = Parameter.Type.INTEGER_ARRAY if name == "postprocess.pamr_dilations" else \
                Parameter.Type.STRING_ARRAY
            # get_parameter_types answers ints on Jazzy
            assert descriptor.type == expected.value and Parameter.Type(parameter_type) == expected, name
        assert read_configs(node)[1].obstacle_labels == [] and read_configs(node)[1].cameras == []
        # `ros2 param set ... obstacle_labels "[]"` sends an empty BOOL_ARRAY: it stays typed
        (result,) = node.set_parameters([Parameter("obstacle_labels", Parameter.Type.BOOL_ARRAY, [])])
        assert result.successful
        assert [Parameter.Type(t) for t in node.get_parameter_types(["obstacle_labels"])] == \
            [Parameter.Type.STRING_ARRAY]
        assert node.describe_parameter("obstacle_labels").type == Parameter.Type.STRING_ARRAY.value


def _call(executor, future, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not future.done() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    assert future.done(), "service did not answer"
    return future.result()


def test_a_client_setting_a_value_out_of_range_is_told_the_value_and_range():
    from rcl_interfaces.srv import DescribeParameters, SetParameters

    with declared_node() as node:
        client_node = Node("parameter_client", context=node.context)
        executor = SingleThreadedExecutor(context=node.context)
        executor.add_node(node)
        executor.add_node(client_node)
        try:
            setter = client_node.create_client(SetParameters, "/lseg_node/set_parameters")
            describer = client_node.create_client(DescribeParameters, "/lseg_node/describe_parameters")
            assert setter.wait_for_service(timeout_sec=10.0) and describer.wait_for_service(timeout_sec=10.0)
            # what `ros2 param describe /lseg_node threshold memory_budget_mb` shows
            described = _call(executor, describer.call_async(DescribeParameters.Request(
                names=["threshold", "memory_budget_mb"]))).descriptors
            assert described[0].floating_point_range[0].to_value == 1.0 and not described[0].read_only
            assert described[1].integer_range[0].to_value == 65536 and described[1].read_only
            request = SetParameters.Request(parameters=[Parameter("threshold", value=7.0).to_parameter_msg(),
                                                        Parameter("threshold", value=0.25).to_parameter_msg(),
                                                        Parameter("short_side", value=320).to_parameter_msg()])
            bad, good, restart = _call(executor, setter.call_async(request)).results
            assert not bad.successful
            assert "threshold" in bad.reason and "7.0" in bad.reason and "Max: 1.0" in bad.reason, bad.reason
            assert good.successful and node.get_parameter("threshold").value == 0.25
            assert not restart.successful and "read-only" in restart.reason and "short_side" in restart.reason
        finally:
            executor.shutdown(timeout_sec=1.0)
            client_node.destroy_node()


def test_node_config_upper_bounds_refuse_runaway_values_naming_them():
    from lseg_ros.config import with_overrides

    with pytest.raises(ValueError, match=r"max_labels=100000; accepted: an integer in \[1, 4096\]"):
        with_overrides(NodeConfig(), {"max_labels": 100000}).validate()
    with pytest.raises(ValueError, match=r"max_image_pixels=10000000000; accepted: an integer in \[1, 268435456\]"):
        with_overrides(NodeConfig(), {"max_image_pixels": 10 ** 10}).validate()
    for name, (tp, _, _) in declared_fields().items():  # an integer can allocate memory or time
        if tp is int and name != "min_object_pixels":  # (a larger one allocates nothing)
            assert declared_metadata()[name]["bounds"].high is not None, name


def test_a_start_value_out_of_range_stops_the_node_naming_value_and_range():
    from rclpy.exceptions import ParameterException  # what run_node prints as "cannot start: ..."

    with pytest.raises(ParameterException) as error:
        with declared_node(["-p", "memory_budget_mb:=1000000000000"]):
            pass
    assert "memory_budget_mb" in str(error.value) and "1000000000000" in str(error.value)
    assert "Max: 65536" in str(error.value)
