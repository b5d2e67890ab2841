"""lseg-segment on image files: outputs per image, errors that do not stop the batch."""
import importlib.util
import json

import numpy as np
import pytest
from PIL import Image

from lseg_ros.cli import main

from helpers import TEST_DEVICE

TINY = ["--backend", "dense_clip", "--model", "lseg-test-tiny-ViT", "--pretrained", "random", "--device", TEST_DEVICE,
        "--short_side", "64"]


def write_image(path, height=40, width=56, seed=0):
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return path


def test_writes_mask_overlay_heatmaps_and_label_file(tmp_path):
    image = write_image(tmp_path / "hall.png")
    out = tmp_path / "out"
    code = main([str(image), "--labels", "door, chair, floor", "--out", str(out), "--confidence-maps", *TINY])
    assert code == 0
    mask = np.asarray(Image.open(out / "hall_mask.png"))
    assert mask.shape == (40, 56) and mask.max() < 3
    overlay = Image.open(out / "hall_overlay.png")
    assert overlay.size[1] >= 40 and overlay.size[0] > 56  # legend column on the right
    assert sorted(p.name for p in out.glob("hall_conf_*.png")) == [
        "hall_conf_00_door.png", "hall_conf_01_chair.png", "hall_conf_02_floor.png"]
    info = json.loads((out / "labels.json").read_text())
    assert info["labels"] == ["door", "chair", "floor"] and len(info["colors"]) == 3


def test_unreadable_file_is_reported_and_other_images_still_written(tmp_path, capsys):
    good = write_image(tmp_path / "good.png")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    missing = tmp_path / "missing.jpg"
    out = tmp_path / "out"
    code = main([str(broken), str(missing), str(good), "--labels", "door", "--out", str(out), *TINY])
    assert code == 1
    assert (out / "good_mask.png").exists()
    errors = capsys.readouterr().err
    assert "broken.png" in errors and "missing.jpg" in errors and "1 of 3 images" in errors


def test_config_file_values_and_command_line_overrides(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("backend: dense_clip\nmodel: lseg-test-tiny-ViT\npretrained: random\ndevice: cpu\n"
                      "short_side: 64\nlabels: [wall, floor]\n")
    out = tmp_path / "out"
    assert main([str(write_image(tmp_path / "a.png")), "--config", str(config), "--out", str(out),
                 "--dense_clip.mode", "sclip"]) == 0
    assert json.loads((out / "labels.json").read_text())["labels"] == ["wall", "floor"]


@pytest.mark.parametrize("args, message", [
    (["--pretrained", "/nonexistent/weights.safetensors"], "does not exist"),
    (["--backend", "nope"], "unknown backend 'nope'"),
    (["--short_side", "abc"], "short_side expects int"),
    (["--labels", "door, door"], "duplicate label 'door'"),
])
def test_bad_configuration_fails_at_start_with_a_clear_message(tmp_path, capsys, args, message):
    tiny = list(TINY)
    for flag in args[::2]:
        if flag in tiny:
            index = tiny.index(flag)
            del tiny[index:index + 2]
    code = main([str(write_image(tmp_path / "a.png")), "--out", str(tmp_path / "out"), *tiny, *args])
    assert code == 2
    assert message in capsys.readouterr().err


def test_16_bit_png_keeps_its_top_8_bits_like_the_node(tmp_path):
    from lseg_ros.cli import read_rgb
    # the same rule as lseg_ros.ros.conversions.compressed_to_rgb (tested there; no ROS needed here)

    gray = np.array([[0, 255, 256, 4095], [32768, 40000, 65280, 65535]], dtype=np.uint16)
    path = tmp_path / "depthlike.png"
    Image.fromarray(gray).save(path)
    assert Image.open(path).mode.startswith("I")
    rgb = read_rgb(path)
    expected = (gray >> 8).astype(np.uint8)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 4, 3)
    np.testing.assert_array_equal(rgb[..., 0], expected)
    np.testing.assert_array_equal(rgb[..., 2], expected)
    assert main([str(path), "--labels", "door, chair", "--out", str(tmp_path / "out"), *TINY]) == 0


def test_legend_names_a_synonym_label_by_its_first_name():
    from lseg_ros.viz import _legend_text

    assert _legend_text("background; sky; wall") == "background (+2)"
    assert _legend_text("door") == "door" and _legend_text("a; ") == "a; "


def test_legend_measures_labels_with_getsize_where_the_font_has_no_getlength():
    """Pillow < 9.2: the default bitmap font has getsize only."""
    from lseg_ros.viz import _text_width

    class OldBitmapFont:
        def getsize(self, text):
            return 6 * len(text), 11

    assert _text_width(OldBitmapFont(), "door") == 24


@pytest.mark.slow
@pytest.mark.parametrize("module", [pytest.param("lseg_ros.ros.node", marks=pytest.mark.skipif(
    importlib.util.find_spec("rclpy") is None, reason="the node needs rclpy (not in the oldest-deps lane)")),
    "lseg_ros.evaluate", "lseg_ros.train"])
def test_a_missing_engine_package_stops_the_program_with_one_line_naming_it(module):
    import subprocess
    import sys

    code = ("import sys, runpy; sys.modules['open_clip'] = None; "  # None in sys.modules: the import fails
            f"runpy.run_module({module!r}, run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", code, "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if "cannot start" in line]
    assert len(lines) == 1 and "open_clip_torch" in lines[0] and "pip install open_clip_torch" in lines[0]
