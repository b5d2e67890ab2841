"""The config type is the one source of truth for YAML, CLI options and node parameters."""
import argparse

import pytest

from lseg_ros.config import (SegmenterConfig, add_config_arguments, config_from_args, field_docs, flatten,
                             with_overrides)


def test_every_leaf_field_is_documented():
    for name, (_, _, doc) in field_docs(SegmenterConfig).items():
        assert doc, f"config field {name} has no documentation"


def test_yaml_loads_nested_fields(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("backend: lseg\ndense_clip:\n  mode: sclip\nlabels: [door, chair]\n")
    config = SegmenterConfig.from_yaml(path)
    assert config.backend == "lseg" and config.dense_clip.mode == "sclip"
    assert config.labels == ["door", "chair"]
    assert config.short_side == SegmenterConfig().short_side


def test_yaml_with_unknown_key_names_it(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("dense_clip:\n  mdoe: sclip\n")
    with pytest.raises(ValueError, match="dense_clip.mdoe"):
        SegmenterConfig.from_yaml(path)


def test_command_line_overrides_file_values(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("short_side: 320\ndevice: cpu\n")
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    add_config_arguments(parser)
    args = parser.parse_args(["--config", str(path), "--short_side", "256", "--dense_clip.mode", "maskclip",
                              "--labels", "door, chair"])
    config = config_from_args(args)
    assert config.short_side == 256 and config.device == "cpu"
    assert config.dense_clip.mode == "maskclip" and config.labels == ["door", "chair"]


@pytest.mark.parametrize("name, value, message", [
    ("precision", "fp8", "precision='fp8'"),
    ("short_side", 8, "short_side=8"),
    ("dense_clip.mode", "magic", "dense_clip.mode='magic'"),
    ("dense_clip.partial_patches", "wrap", "dense_clip.partial_patches='wrap'"),
    ("dense_clip.normalization", "coco", "dense_clip.normalization='coco'"),
    ("dense_clip.image_tower", "timm", "dense_clip.image_tower='timm'"),
    ("threshold", 1.5, "threshold=1.5"),
])
def test_invalid_values_are_rejected_naming_field_and_value(name, value, message):
    with pytest.raises(ValueError) as error:
        with_overrides(SegmenterConfig(), {name: value}).validate()
    assert message in str(error.value)


def test_wrongly_typed_value_names_the_field():
    with pytest.raises(ValueError, match="short_side expects int"):
        with_overrides(SegmenterConfig(), {"short_side": "big"})


def test_flatten_uses_dotted_names_for_nested_fields():
    flat = flatten(SegmenterConfig())
    assert flat["dense_clip.mode"] == "naclip"
    assert "postprocess.pamr_iters" in flat and "dense_clip" not in flat


@pytest.mark.parametrize("name, value", [
    ("postprocess.pamr_dilations", []), ("postprocess.pamr_dilations", [0]), ("lseg.activation", "sigmoid"),
    ("lseg.block_depth", -3), ("postprocess.cluster_iters", 0), ("dense_clip.gaussian_std", 0.0),
])
def test_settings_that_would_fail_every_frame_are_rejected_up_front(name, value):
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        with_overrides(SegmenterConfig(), {name: value}).validate()


def test_relative_weights_path_in_yaml_is_relative_to_the_yaml_file(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    path = tmp_path / "models" / "robot.yaml"
    path.write_text("backend: lseg\npretrained: robot.safetensors\n")
    monkeypatch.chdir(tmp_path)
    assert SegmenterConfig.from_yaml("models/robot.yaml").pretrained == str(tmp_path / "models" / "robot.safetensors")
    path.write_text("pretrained: openai\n")
    assert SegmenterConfig.from_yaml(path).pretrained == "openai"


# ------------------------------------------------------------ on/off settings
def _accepts(name, value):
    try:
        with_overrides(SegmenterConfig(), {name: value}).validate()
        return True
    except ValueError:
        return False


def test_switch_fields_are_every_string_setting_that_accepts_on_or_off():
    from lseg_ros.config import switch_fields

    # settings with a fixed set of values (validate() refuses other words) of which on or off is one
    choices = [name for name, (tp, _, _) in field_docs(SegmenterConfig).items()
               if tp is str and not _accepts(name, "no-such-value")]
    accepting = {name for name in choices if _accepts(name, "on") or _accepts(name, "off")}
    assert accepting == set(switch_fields(SegmenterConfig)) == {"mha_fastpath", "attribute_prompts", "stage_timings"}


def test_yaml_on_off_reads_as_on_off_for_every_switch_setting(tmp_path):
    # YAML 1.1 reads docs/python_api.md's `attribute_prompts: on` as the boolean true
    path = tmp_path / "c.yaml"
    path.write_text("attribute_prompts: on\nmha_fastpath: off\nstage_timings: off\n")
    config = SegmenterConfig.from_yaml(path).validate()
    assert (config.attribute_prompts, config.mha_fastpath, config.stage_timings) == ("on", "off", "off")
    path.write_text("attribute_prompts: yes\nmha_fastpath: true\n")
    config = SegmenterConfig.from_yaml(path).validate()
    assert (config.attribute_prompts, config.mha_fastpath) == ("on", "on")


def test_boolean_for_a_switch_without_on_names_the_accepted_values(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("stage_timings: on\n")
    with pytest.raises(ValueError, match=r"stage_timings='on'; accepted: off, events, sync"):
        SegmenterConfig.from_yaml(path).validate()


def test_boolean_for_another_string_setting_says_to_quote_it(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("device: yes\n")
    with pytest.raises(ValueError, match=r"device expects a string, got the boolean True .*quote"):
        SegmenterConfig.from_yaml(path)


# ------------------------------------------------------------------- ranges
@pytest.mark.parametrize("name, value, accepted", [
    ("memory_budget_mb", 10 ** 12, "an integer in [16, 65536] (MB)"),
    ("short_side", 100000, "an integer in [32, 4096]"),
    ("num_threads", 10 ** 6, "an integer in [0, 1024]"),
    ("output_height", 10 ** 6, "an integer in [0, 16384]"),
    ("postprocess.cluster_k", 10 ** 6, "an integer in [0, 1024]"),
    ("postprocess.pamr_iters", 10 ** 6, "an integer in [0, 100]"),
    ("postprocess.pamr_dilations", [1, 10 ** 6], "a list of integers in [1, 64]"),
    ("dense_clip.stride", 10 ** 6, "an integer in [1, 4096]"),
    ("vilseg.clusters", 10 ** 6, "an integer in [2, 1024]"),
    ("confidence_scale", 0.0, "a value in (0, 1]"),
    ("threshold", 7.0, "a value in [0, 1]"),
])
def test_out_of_range_values_are_refused_naming_value_and_range(name, value, accepted):
    with pytest.raises(ValueError) as error:
        with_overrides(SegmenterConfig(), {name: value}).validate()
    assert f"{name}={value!r}; accepted: {accepted}" in str(error.value)


def test_every_number_setting_has_bounds_and_its_default_lies_within():
    from lseg_ros.config import field_bounds

    bounds = field_bounds(SegmenterConfig)
    for name, (tp, default, _) in field_docs(SegmenterConfig).items():
        if tp in (int, float):
            assert name in bounds, name
            assert bounds[name].contains(default), name
        if tp is int:  # an integer can allocate memory or time: every one is bounded above
            assert bounds[name].high is not None, name


def test_config_is_a_leaf_module_importing_no_other_part_of_the_package_but_profiles():
    """config.py describes settings only: importing it loads neither torch nor weights,
    prompt banks or backends."""
    import ast
    from pathlib import Path

    import lseg_ros.config

    tree = ast.parse(Path(lseg_ros.config.__file__).read_text())
    relative = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level > 0}
    absolute = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    assert relative <= {"profiles"}, relative
    assert "torch" not in absolute


def test_each_sub_config_validates_itself_and_the_segmenter_config_names_the_nested_field():
    from lseg_ros.config import DenseClipConfig, LMSegConfig, LSegConfig, PostprocessConfig

    with pytest.raises(ValueError, match="invalid config value mode='magic'; accepted: maskclip"):
        DenseClipConfig(mode="magic").validate()
    with pytest.raises(ValueError, match="invalid config value activation='gelu'"):
        LSegConfig(activation="gelu").validate()
    with pytest.raises(ValueError, match="invalid config value clip_mode='x'"):
        LMSegConfig(clip_mode="x").validate()
    with pytest.raises(ValueError, match="invalid config value pamr_iters=-1"):
        PostprocessConfig(pamr_iters=-1).validate()
    assert DenseClipConfig().validate() == DenseClipConfig()
    with pytest.raises(ValueError, match="invalid config value dense_clip.mode='magic'"):
        SegmenterConfig(dense_clip=DenseClipConfig(mode="magic")).validate()


def test_one_yaml_loader_resolves_marked_paths_against_the_file_and_a_training_yaml_keeps_them(tmp_path):
    """SegmenterConfig files: relative weights files, prompt banks, ONNX files and the LMSeg part
    weights are relative to the file (tags such as 'openai' stay tags); a TrainConfig file keeps
    its paths relative to the working directory, as lseg-train reads them."""
    from lseg_ros.train import TrainConfig

    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "model.yaml").write_text("pretrained: weights/model.safetensors\nprompt_bank: bank.json\n"
                                       "lmseg:\n  clip_pretrained: openai\n  sam_checkpoint: sam/sam_vit_b.pth\n")
    config = SegmenterConfig.from_yaml(folder / "model.yaml")
    assert config.pretrained == str(folder / "weights" / "model.safetensors")
    assert config.prompt_bank == str(folder / "bank.json")
    assert config.lmseg.sam_checkpoint == str(folder / "sam" / "sam_vit_b.pth")
    assert config.lmseg.clip_pretrained == "openai"
    (folder / "train.yaml").write_text("data_root: data/scenes\nmodel:\n  pretrained: runs/a.safetensors\n")
    train = TrainConfig.from_yaml(folder / "train.yaml")
    assert (train.data_root, train.model.pretrained) == ("data/scenes", "runs/a.safetensors")


def test_parameter_files_have_one_writer_with_the_any_namespace_layout(tmp_path):
    """lseg-export's and the demo's parameter files: /**/<node>: ros__parameters, empty lists
    left out (rclpy cannot type them); the shipped config/lseg.yaml uses the same key."""
    import yaml

    from lseg_ros.config import params_file_data, write_params_file

    path = write_params_file(tmp_path / "p.yaml", {"short_side": 224, "labels": ["door"], "cameras": []},
                             header="# made by a test\n")
    text = path.read_text()
    assert text.startswith("# made by a test\n")
    assert yaml.safe_load(text) == {"/**/lseg_node": {"ros__parameters": {"short_side": 224, "labels": ["door"]}}}
    assert list(params_file_data({}, "other")) == ["/**/other"]
