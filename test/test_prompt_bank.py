"""Attribute-enriched prompts (LMSeg): the shipped prompt bank, user banks, the config switch,
and the label embeddings the segmenter builds from them (checked against a plain reference
computation with the text tower)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from lseg_ros.config import SegmenterConfig
from lseg_ros.data import load_class_names
from lseg_ros.data.scenes import SCENE_CLASSES
from lseg_ros.prompt_bank import (ATTRIBUTE_KINDS, FORMAT, MAX_BANK_BYTES, ROBOT_LABELS, PromptBankError,
                                  descriptions_for,
                                  load_bank, load_prompt_bank, resolve_attribute_prompts, shipped_bank,
                                  shipped_bank_files)
from lseg_ros.segmenter import Segmenter
from lseg_ros.validation import LabelLimits

REPO = Path(__file__).resolve().parent.parent
BANK_DIR = REPO / "lseg_ros" / "prompt_banks"
CLASS_LISTS = ("ade20k", "pascal_context59", "voc")


def raw_classes():
    """{class name: entry} of every shipped bank file, read with plain json (not the loader)."""
    classes = {}
    for path in sorted(BANK_DIR.glob("*.json")):
        with open(path, encoding="utf-8") as stream:
            data = json.load(stream)
        assert data["format"] == FORMAT, path
        for name, entry in data["classes"].items():
            assert name not in classes, f"{name!r} is in two shipped bank files"
            classes[name] = entry
    return classes


def write_bank(path, classes, fmt=FORMAT):
    path.write_text(json.dumps({"format": fmt, "classes": classes}), encoding="utf-8")
    return path


def tiny_config(**fields):
    return SegmenterConfig(backend="lseg", model="lseg_tiny", pretrained="random", device="cpu", short_side=48,
                           max_long_side=64, labels=[], **fields)


# ------------------------------------------------------------------ the shipped bank
def test_every_shipped_class_list_name_has_all_three_attribute_kinds():
    classes = raw_classes()
    names = {name.lower() for name in classes}
    wanted = [name for kind in CLASS_LISTS for name in load_class_names(kind)] + list(SCENE_CLASSES) + \
        list(ROBOT_LABELS)
    assert len(load_class_names("ade20k")) == 150 and len(load_class_names("voc")) == 21
    missing = sorted({name for name in wanted if name.lower() not in names})
    assert not missing, f"no prompt bank entry for {missing}"
    for name, entry in classes.items():
        for kind in ATTRIBUTE_KINDS:
            assert isinstance(entry.get(kind), list) and len(entry[kind]) >= 2, (name, kind)
        descriptions = [text for kind in ATTRIBUTE_KINDS for text in entry[kind]]
        assert len(descriptions) <= LabelLimits().max_descriptions, name
        for text in descriptions:
            # short (CLIP reads 77 tokens), and not a copy of the bare class name
            assert isinstance(text, str) and 0 < len(text) <= 100 and text.strip() == text, (name, text)
            assert text.lower() != name.lower(), name


def test_shipped_files_parse_and_validate_and_the_loader_sees_every_class():
    assert shipped_bank_files() == sorted(path.name for path in BANK_DIR.glob("*.json"))
    classes = raw_classes()
    bank = shipped_bank()
    assert len(bank) == len(classes) >= 150 + 50
    for path in BANK_DIR.glob("*.json"):
        load_bank(path)  # each file validates on its own
    for name, entry in classes.items():
        assert sorted(bank.descriptions(name)) == sorted(text for kind in ATTRIBUTE_KINDS for text in entry[kind])


def test_look_up_ignores_case_and_spacing_and_takes_the_first_known_synonym():
    bank = shipped_bank()
    door = bank.descriptions("door")
    assert door and bank.descriptions("  DOOR ") == door and descriptions_for("Door") == door
    assert bank.descriptions("Glass   Door") == bank.descriptions("glass door") != []
    assert bank.descriptions("no such class") == [] and "no such class" not in bank
    assert bank.descriptions("portal; door; gate") == door  # 'portal' is unknown: the next name's entry
    # kinds interleaved, so a cap keeps every kind
    first_three = bank.descriptions("door", limit=3)
    entry = raw_classes()["door"]
    assert first_three == [entry["color"][0], entry["shape"][0], entry["material"][0]]
    assert bank.descriptions("door", limit=0) == []


@pytest.mark.slow
def test_package_data_ships_the_banks_and_they_are_found_from_the_installed_package(tmp_path):
    """setup.py's package_data copies the banks (a build like pip's), and the installed copy,
    not the source tree, is what the loader reads. (colcon installs the whole package folder.)"""
    build_lib = tmp_path / "lib"
    subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(build_lib)], cwd=REPO,
                   check=True, capture_output=True, timeout=60)
    installed = sorted(path.name for path in (build_lib / "lseg_ros" / "prompt_banks").glob("*.json"))
    assert installed == shipped_bank_files()
    code = ("import importlib.resources, json, lseg_ros.prompt_bank as p; "
            "print(json.dumps([str(importlib.resources.files('lseg_ros').joinpath('prompt_banks')), "
            "len(p.shipped_bank()), p.descriptions_for('door')]))")
    env = dict(os.environ, PYTHONPATH=str(build_lib))
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    folder, count, door = json.loads(result.stdout)
    assert Path(folder) == build_lib / "lseg_ros" / "prompt_banks"
    assert count == len(shipped_bank()) and door == shipped_bank().descriptions("door")


# ------------------------------------------------------------------ user banks
@pytest.mark.parametrize("content, message", [
    ('{"format": "lseg_ros.prompt_bank/1", "classes": {', "not valid JSON"),
    ('[1, 2]', "a JSON object"),
    ('{"format": "lseg_ros.prompt_bank/2", "classes": {}}', "'lseg_ros.prompt_bank/2' is not supported"),
    ('{"classes": {}}', "format None is not supported"),
    ('{"format": "lseg_ros.prompt_bank/1", "classes": []}', "'classes' must be an object"),
    ('{"format": "lseg_ros.prompt_bank/1", "classes": {}, "extra": 1}', "unknown key(s) ['extra']"),
    ('{"format": "lseg_ros.prompt_bank/1", "classes": {"door": {"color": ["a red door", 7]}}}',
     "class 'door': color description 7 is not a string"),
    ('{"format": "lseg_ros.prompt_bank/1", "classes": {"door": {"shape": ["  "]}}}',
     "class 'door': shape description '  ' is empty"),
    ('{"format": "lseg_ros.prompt_bank/1", "classes": {"door": {"colour": ["a red door"]}}}',
     "class 'door': unknown attribute kind(s) ['colour']"),
    ('{"format": "lseg_ros.prompt_bank/1", "classes": {"door": {"color": "a red door"}}}',
     "class 'door': color must be a list of strings, got 'a red door'"),
    ('{"format": "lseg_ros.prompt_bank/1", "classes": {"door": ["a red door"]}}', "class 'door': an entry is"),
    ('{"format": "lseg_ros.prompt_bank/1", "classes": {"door": {"color": ["a red\\ndoor"]}}}',
     "class 'door': color description 'a red\\ndoor' contains the control character U+000A"),
    ('{"format": "lseg_ros.prompt_bank/1", "classes": {"door": {"color": ["a red door"], '
     '"shape": ["a red door"]}}}', "class 'door': description 'a red door' is given twice"),
    ('{"format": "lseg_ros.prompt_bank/1", "classes": {"Door": {}, "door ": {}}}',
     "class 'door ' repeats class 'Door'"),
    ('{"format": "lseg_ros.prompt_bank/1", "classes": {"person; man": {}}}', "contains ';'"),
    ('{"format": "lseg_ros.prompt_bank/1", "classes": {"": {}}}', "class name '' is empty"),
])
def test_bad_user_banks_are_rejected_naming_file_class_and_value(tmp_path, content, message):
    path = tmp_path / "my_bank.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(PromptBankError) as error:
        load_bank(path)
    assert str(path) in str(error.value) and message in str(error.value), str(error.value)


def test_too_many_or_too_long_descriptions_are_rejected(tmp_path):
    many = write_bank(tmp_path / "many.json", {"door": {"color": [f"a door of color {i}" for i in range(33)]}})
    with pytest.raises(PromptBankError, match=r"many\.json: class 'door': 33 descriptions; at most 32"):
        load_bank(many)
    long = write_bank(tmp_path / "long.json", {"door": {"material": ["a door " + "x" * 300]}})
    with pytest.raises(PromptBankError, match=r"long\.json: class 'door': material description .* 307 "
                                              r"characters long"):
        load_bank(long)
    with pytest.raises(PromptBankError, match=r"absent\.json: prompt bank file not found"):
        load_bank(tmp_path / "absent.json")


def test_an_oversized_bank_is_refused_by_its_size_before_it_is_read(tmp_path, monkeypatch):
    path = tmp_path / "huge.json"
    with open(path, "wb") as stream:
        stream.truncate(100 * 1024 * 1024)  # sparse: 100 MB without writing them

    def no_reading(*args, **kwargs):
        raise AssertionError("the bank was read")

    monkeypatch.setattr(Path, "read_text", no_reading)
    monkeypatch.setattr(Path, "read_bytes", no_reading)
    monkeypatch.setattr(Path, "open", no_reading)
    with pytest.raises(PromptBankError, match=rf"huge\.json: prompt bank file is 104857600 bytes; at most "
                                              rf"{MAX_BANK_BYTES} are accepted"):
        load_bank(path)


def test_deeply_nested_json_is_a_one_line_error_naming_the_file(tmp_path):
    for name, text in (("deep.json", "[" * 200000 + "]" * 200000),
                       ("deep_classes.json", '{"format": "%s", "classes": {"door": %s}}'
                        % (FORMAT, '{"a":' * 100000 + "1" + "}" * 100000))):
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        with pytest.raises(PromptBankError) as error:
            load_bank(path)
        assert name in str(error.value) and "nested too deeply" in str(error.value)
        assert "\n" not in str(error.value) and error.value.__cause__ is None


def test_user_bank_overrides_shipped_entries_adds_classes_and_can_switch_one_off(tmp_path):
    user = write_bank(tmp_path / "user.json", {
        "DOOR": {"color": ["a bright orange door"]},  # replaces the shipped entry as a whole
        "docking station": {"shape": ["a docking station, a low box on the floor"]},
        "chair": {},  # no descriptions for chair
    })
    bank = load_prompt_bank([user])
    assert bank.descriptions("door") == ["a bright orange door"]
    assert bank.descriptions("Docking Station") == ["a docking station, a low box on the floor"]
    assert bank.descriptions("chair") == [] and "chair" in bank
    assert bank.descriptions("table") == shipped_bank().descriptions("table") != []
    assert shipped_bank().descriptions("door") != ["a bright orange door"]  # the shipped bank is untouched
    later = write_bank(tmp_path / "later.json", {"door": {"material": ["a steel door"]}})
    assert load_prompt_bank([user, later]).descriptions("door") == ["a steel door"]  # later banks win


# ------------------------------------------------------------------ the config switch
def test_auto_resolves_on_only_for_lmseg():
    assert resolve_attribute_prompts("auto", "lmseg")
    assert not resolve_attribute_prompts("auto", "lseg") and not resolve_attribute_prompts("auto", "dense_clip")
    assert resolve_attribute_prompts("on", "dense_clip") and not resolve_attribute_prompts("off", "lmseg")
    assert SegmenterConfig().attribute_prompts == "auto" and SegmenterConfig().prompt_bank == ""
    assert SegmenterConfig(backend="lmseg").attribute_prompts_enabled()
    assert not SegmenterConfig(backend="lseg").attribute_prompts_enabled()
    assert not SegmenterConfig(backend="dense_clip").attribute_prompts_enabled()
    assert SegmenterConfig(backend="lseg", attribute_prompts="on").attribute_prompts_enabled()
    assert not SegmenterConfig(backend="lmseg", attribute_prompts="off").attribute_prompts_enabled()


@pytest.mark.parametrize("name, value, message", [
    ("attribute_prompts", "yes", "attribute_prompts='yes'; accepted: auto, on, off"),
    ("prompt_bank", "bank.yaml", "prompt_bank='bank.yaml'; accepted: empty or a .json"),
])
def test_invalid_switch_values_are_rejected_naming_the_value(name, value, message):
    with pytest.raises(ValueError) as error:
        SegmenterConfig(**{name: value}).validate()
    assert message in str(error.value)


def test_relative_prompt_bank_in_yaml_is_relative_to_the_yaml_file(tmp_path, monkeypatch):
    folder = tmp_path / "robot"
    folder.mkdir()
    (folder / "segmenter.yaml").write_text(yaml.safe_dump({"attribute_prompts": "on", "prompt_bank": "banks/my.json"}))
    monkeypatch.chdir(tmp_path)
    config = SegmenterConfig.from_yaml(folder / "segmenter.yaml")
    assert config.prompt_bank == str(folder / "banks" / "my.json") and config.attribute_prompts == "on"


# ------------------------------------------------------------------ label embeddings
@pytest.fixture(scope="module")
def user_bank(tmp_path_factory):
    return write_bank(tmp_path_factory.mktemp("bank") / "user.json", {
        "chair": {"color": ["a bright orange chair"], "material": ["a plastic chair"]},
        "docking station": {"shape": ["a docking station, a low box on the floor"]},
    })


@pytest.fixture(scope="module")
def segmenters(user_bank):
    """(attribute prompts on with a user bank, off): tiny LSeg models with the same random weights."""
    torch.manual_seed(0)
    on = Segmenter(tiny_config(attribute_prompts="on", prompt_bank=str(user_bank)))
    torch.manual_seed(0)
    off = Segmenter(tiny_config())  # auto: off for lseg
    assert on.settings["attribute_prompts"].startswith("on (") and off.settings["attribute_prompts"] == "off"
    return on, off


def reference_embedding(backend, label, descriptions):
    """LabelEncoder's rule written out: the label through the templates ("{}" for LSeg),
    averaged and normalized, then the mean with the normalized description embeddings."""
    with torch.inference_mode():
        label_embedding = F.normalize(backend.encode_text(backend.tokenize([label])).float(), dim=-1)[0]
        if not descriptions:
            return label_embedding
        described = F.normalize(backend.encode_text(backend.tokenize(list(descriptions))).float(), dim=-1)
        return F.normalize(torch.cat([label_embedding[None], described]).mean(0), dim=-1)


def test_bank_descriptions_make_the_label_embedding_and_change_it(segmenters):
    on, off = segmenters
    labels = ["door", "Red Disk", "chair", "docking station", "unknown thing"]
    on_set, off_set = on.prepare_labels(labels), off.prepare_labels(labels)
    raw = raw_classes()
    shipped_door = [text for kind in ATTRIBUTE_KINDS for text in raw["door"][kind]]
    shipped_disk = [text for kind in ATTRIBUTE_KINDS for text in raw["red disk"][kind]]
    assert sorted(on_set.descriptions[0]) == sorted(shipped_door)
    assert sorted(on_set.descriptions[1]) == sorted(shipped_disk)
    assert on_set.descriptions[2:] == [["a bright orange chair", "a plastic chair"],  # the user bank's chair
                                      ["a docking station, a low box on the floor"], []]
    assert off_set.descriptions == [[]] * len(labels)
    for index, label in enumerate(labels):
        expected = reference_embedding(on.backend, label, on_set.descriptions[index])
        torch.testing.assert_close(on_set.label_embeddings[index], expected, atol=1e-5, rtol=1e-5)
        plain = reference_embedding(off.backend, label, [])
        torch.testing.assert_close(off_set.label_embeddings[index], plain, atol=1e-5, rtol=1e-5)
    # same weights: with descriptions the embedding moves; without any (unknown thing) it does not
    cosine = (on_set.label_embeddings * off_set.label_embeddings).sum(-1)
    assert (cosine[:4] < 0.9999).all() and cosine[4] > 0.9999


def test_given_descriptions_win_over_the_bank(segmenters):
    on, off = segmenters
    given = [["a red wooden door"], []]
    on_set = on.prepare_labels(["door", "table"], descriptions=given)
    off_set = off.prepare_labels(["door", "table"], descriptions=given)
    assert on_set.descriptions[0] == ["a red wooden door"]
    assert sorted(on_set.descriptions[1]) == sorted(shipped_bank().descriptions("table"))
    torch.testing.assert_close(on_set.label_embeddings[0], off_set.label_embeddings[0])


def test_synonyms_share_the_bank_entry_of_their_first_known_name_and_the_cap_applies(segmenters):
    on, _ = segmenters
    label_set = on.prepare_labels(["portal; door", "wall"])
    assert label_set.descriptions[0] == shipped_bank().descriptions("door")
    expected = reference_embedding(on.backend, "portal", label_set.descriptions[0])
    torch.testing.assert_close(label_set.label_embeddings[0], expected, atol=1e-5, rtol=1e-5)
    saved = on.limits
    try:
        on.limits = LabelLimits(max_descriptions=2)  # the node sets it from max_prompts_per_label
        assert on.prepare_labels(["door"]).descriptions[0] == shipped_bank().descriptions("door", limit=2)
    finally:
        on.limits = saved


def test_a_bad_user_bank_stops_the_segmenter_and_an_unused_one_is_warned_about(tmp_path):
    bad = write_bank(tmp_path / "bad.json", {"door": {"color": [""]}})
    with pytest.raises(PromptBankError, match=r"bad\.json: class 'door': color description '' is empty"):
        Segmenter(tiny_config(attribute_prompts="on", prompt_bank=str(bad)))
    with pytest.warns(RuntimeWarning, match="prompt_bank .* is not used"):
        segmenter = Segmenter(tiny_config(prompt_bank=str(bad)))  # auto: off for lseg, the file is not read
    assert any("attribute_prompts: on" in warning for warning in segmenter.warnings)


def test_training_matches_labels_as_the_segmenter_encodes_them(tmp_path, monkeypatch):
    """lseg-train with attribute prompts on pulls pixels towards the bank-enriched embeddings
    the segmenter matches with later (the scene classes are in the bank), and its model.yaml
    keeps the switch and the user bank (absolute: model.yaml's relative paths are its own)."""
    from lseg_ros.data.scenes import write_generic_dataset
    from lseg_ros.train import TrainConfig, Trainer

    monkeypatch.chdir(tmp_path)
    write_bank(tmp_path / "user.json", {"checkerboard": {"color": ["a red and white checkerboard"]}})
    root = write_generic_dataset(tmp_path / "scenes", 4, seed=0, size=(32, 32), val_fraction=0.0)
    config = TrainConfig(out=str(tmp_path / "run"), data_root=str(root), crop_size=32, batch_size=2, epochs=1,
                         device="cpu", progress=False, val_split="")
    config.model = tiny_config(attribute_prompts="on", prompt_bank="user.json")
    trainer = Trainer(config)
    label_set = trainer.segmenter.prepare_labels(trainer.train_label_names)
    assert sorted(label_set.descriptions[2]) == sorted(shipped_bank().descriptions("red disk"))
    assert label_set.descriptions[6] == ["a red and white checkerboard"]
    torch.testing.assert_close(trainer.label_embeddings, label_set.label_embeddings)
    trainer.out.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(1)  # what fit() does at the end of each epoch
    model = SegmenterConfig.from_yaml(tmp_path / "run" / "model.yaml")
    assert model.attribute_prompts == "on" and model.prompt_bank == str(tmp_path / "user.json")


def test_the_node_declares_both_fields_as_restart_parameters():
    """lseg_node declares every SegmenterConfig field; these two are read at configure, like
    the other engine settings (read-only while running), and its YAML and table list them."""
    from lseg_ros.ros.params import DYNAMIC_PARAMETERS, configs_from_values, declared_fields, render_params_yaml

    fields = declared_fields()
    assert fields["attribute_prompts"][1] == "auto" and fields["prompt_bank"][1] == ""
    assert "attribute_prompts" not in DYNAMIC_PARAMETERS and "prompt_bank" not in DYNAMIC_PARAMETERS
    assert '    attribute_prompts: "auto"' in render_params_yaml()
    config, _ = configs_from_values({"attribute_prompts": "on", "prompt_bank": "/robot/bank.json"})
    assert config.attribute_prompts_enabled() and config.prompt_bank == "/robot/bank.json"
    with pytest.raises(ValueError, match="attribute_prompts='maybe'"):
        configs_from_values({"attribute_prompts": "maybe"})
