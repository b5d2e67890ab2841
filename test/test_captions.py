"""Image-caption data: the three file layouts, splits, errors naming the bad line, and the
captioned scenes (what ViL-Seg trains on: captions name exactly the visible classes)."""
import json

import numpy as np
import pytest
from PIL import Image

from lseg_ros.data.captions import read_caption_dataset
from lseg_ros.data.datasets import DatasetError
from lseg_ros.data.scenes import (FLOOR, SCENE_CLASSES, WALL, generate_captioned_scene, generate_scene,
                                  scene_caption, scene_rng, visible_classes, write_caption_dataset)


def _image(path, value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 10, 3), value, np.uint8)).save(path)


def test_jsonl_layout_groups_captions_per_image_and_draws_one_per_epoch(tmp_path):
    _image(tmp_path / "images" / "a.png", 10)
    _image(tmp_path / "b.png", 20)
    lines = [{"image": "a.png", "captions": ["a red disk", "a disk on a wall"]},  # found under images/
             {"image": "b.png", "caption": "a floor"}, {"image": "a.png", "caption": "a third one"}]
    (tmp_path / "captions.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    data = read_caption_dataset(tmp_path)
    assert len(data) == 2
    first = data[0]
    assert first["captions"] == ["a red disk", "a disk on a wall", "a third one"]
    assert first["image"].shape == (8, 10, 3) and int(first["image"][0, 0, 0]) == 10
    drawn = set()
    for epoch in range(12):
        data.set_epoch(epoch)
        drawn.add(data[0]["caption"])
    assert drawn == set(first["captions"])  # every caption gets its turn across epochs
    data.set_epoch(3)
    assert data[0]["caption"] == data[0]["caption"]  # same epoch, same draw


def test_csv_and_txt_layouts(tmp_path):
    csv_root, txt_root = tmp_path / "csv", tmp_path / "txt"
    for root in (csv_root, txt_root):
        _image(root / "x.png")
    (csv_root / "captions.csv").write_text("image,caption,source\nx.png,a chair,web\nx.png,\"a chair, red\",web\n")
    assert read_caption_dataset(csv_root)[0]["captions"] == ["a chair", "a chair, red"]
    (txt_root / "captions.txt").write_text("x.png#0\ta door\nx.png#1\tan open door\n")
    assert read_caption_dataset(txt_root)[0]["captions"] == ["a door", "an open door"]


def test_split_file_selects_images(tmp_path):
    for name in ("a", "b"):
        _image(tmp_path / "images" / f"{name}.png")
    (tmp_path / "captions.jsonl").write_text(
        "\n".join(json.dumps({"image": f"images/{n}.png", "caption": n}) for n in "ab"))
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "train.txt").write_text("b\n")
    data = read_caption_dataset(tmp_path, split="train")
    assert len(data) == 1 and data[0]["caption"] == "b"


@pytest.mark.parametrize("file_name, text, message", [
    ("captions.jsonl", '{"image": "a.png", "caption": "ok"}\nnot json\n', r"captions.jsonl:2: not JSON"),
    ("captions.jsonl", '{"image": "a.png", "captions": []}\n', r"captions.jsonl:1: expected a non-empty"),
    ("captions.csv", "path,text\na.png,x\n", r"must name 'image' and 'caption'"),
    ("captions.txt", "a.png a caption without a tab\n", r"captions.txt:1: expected '<image><TAB><caption>'"),
    ("captions.jsonl", '{"image": "missing.png", "caption": "x"}\n', r"names image 'missing.png'"),
])
def test_bad_caption_files_are_refused_naming_the_line(tmp_path, file_name, text, message):
    _image(tmp_path / "a.png")
    (tmp_path / file_name).write_text(text)
    with pytest.raises(DatasetError, match=message):
        read_caption_dataset(tmp_path)


def test_a_root_without_captions_file_is_refused_naming_the_layouts(tmp_path):
    with pytest.raises(DatasetError, match="captions.jsonl, captions.csv, captions.txt"):
        read_caption_dataset(tmp_path)


def test_scene_captions_name_exactly_the_visible_classes():
    views = set()
    for index in range(60):
        image, captions, mask = generate_captioned_scene(scene_rng(3, index))
        classes = visible_classes(mask)
        views.add((FLOOR in classes, WALL in classes))
        for caption in captions:
            for class_index, name in enumerate(SCENE_CLASSES):
                assert (name in caption) == (class_index in classes), (caption, classes)
        assert len(captions) == 3
    assert views >= {(True, True), (True, False), (False, True)}  # floor-only and wall-only views exist


def test_caption_phrasing_varies_and_the_labelled_scenes_are_unchanged():
    rng = np.random.default_rng(0)
    phrasings = {scene_caption(rng, [FLOOR, WALL, 2, 3]) for _ in range(40)}
    assert len(phrasings) >= 6
    image, mask = generate_scene(scene_rng(0, 0))  # the labelled generator draws as before
    again, _ = generate_scene(scene_rng(0, 0))
    np.testing.assert_array_equal(image, again)


def test_written_caption_dataset_has_no_masks_and_reads_back(tmp_path):
    root = write_caption_dataset(tmp_path / "captions", 4, seed=1, size=(32, 40), captions=2)
    assert not (root / "masks").exists()
    data = read_caption_dataset(root)
    assert len(data) == 4 and all(len(data[i]["captions"]) == 2 for i in range(4))
    assert data[0]["image"].shape == (32, 40, 3)
