"""What tests share that needs no ROS: the device they run on, ROS domain ids, frames, the
tiny node and training settings. Test modules import from here (and from ``ros_helpers``
for the rclpy side), never from another test module or from conftest.py, which holds only
fixtures, markers and the device check.

    bash scripts/test.sh                               the CPU (the default; CI)
    LSEG_TEST_DEVICE=cuda bash scripts/test.sh          CUDA: engine, training and node tests there,
                                                        plus the CUDA-only tests (fp16/bf16, pinned
                                                        staging, CUDA graphs)

Tests take ``TEST_DEVICE`` for every Segmenter/trainer they build unless they test the CPU
itself; ``needs_cuda`` marks the CUDA-only ones (``cuda`` marker; skipped on the CPU, saying
how to run them).
"""
from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

TEST_DEVICE = os.environ.get("LSEG_TEST_DEVICE", "cpu").strip() or "cpu"
ON_CUDA = TEST_DEVICE.startswith("cuda")

_cuda_only = pytest.mark.skipif(not ON_CUDA, reason="CUDA only: run with LSEG_TEST_DEVICE=cuda on a GPU")


def needs_cuda(test):
    """A CUDA-only test: marked ``cuda`` and skipped unless LSEG_TEST_DEVICE is a CUDA device."""
    return pytest.mark.cuda(_cuda_only(test))


_domain_calls = itertools.count()


def domain_id() -> int:
    """A ROS domain id in [1, 100] for one test setup (an rclpy context, a node process, a
    launch): a different one on each call in this process (100 calls before one repeats), and
    spread by the process id so that concurrent pytest runs on one host rarely meet."""
    return 1 + (os.getpid() + 37 * next(_domain_calls)) % 100


def scene(seed=0, height=48, width=64):
    """A random RGB frame [height, width, 3] uint8 (the tiny models' masks are deterministic on it)."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


#: the node tests' labels and lseg_node parameters: a tiny dense_clip model with random weights
LABELS = ["floor", "wall", "door"]
NODE_PARAMETERS = {"backend": "dense_clip", "model": "lseg-test-tiny-ViT", "pretrained": "random",
                   "device": TEST_DEVICE, "short_side": 64, "max_long_side": 128, "labels": LABELS,
                   "diagnostics_period": 0.2}


def tiny_train_config(root, out, **overrides):
    """A TrainConfig small enough for the suite: 32-pixel crops, batches of 4, 2 epochs, model
    inputs of 48x64 (the scenes of the ``train_scenes`` fixture)."""
    from lseg_ros.train import TrainConfig

    config = TrainConfig(out=str(out), data_root=str(root), crop_size=32, scale_range=[0.75, 1.25],
                         batch_size=4, epochs=2, device=TEST_DEVICE, progress=False, backbone_lr=2e-3,
                         decoder_lr=5e-3)
    config.model.short_side, config.model.max_long_side = 48, 64
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def fixed_batch(trainer, count=4):
    """The first ``count`` training samples of ``trainer`` as one batch (image, mask)."""
    import torch

    samples = [trainer.train_set[i] for i in range(count)]
    return {"image": torch.stack([s["image"] for s in samples]), "mask": torch.stack([s["mask"] for s in samples])}


# ------------------------------------------------------------- dataset layouts
#: side of the images and masks of the dataset layouts below
DATASET_SIZE = 8


def write_image(path: Path, size=(DATASET_SIZE, DATASET_SIZE), value=100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[0], size[1], 3), value, np.uint8)).save(path)


def write_mask(path: Path, values: np.ndarray, palette: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = Image.fromarray(values.astype(np.uint8))
    if palette:
        mask = mask.convert("P")
        mask.putpalette([c for i in range(256) for c in (i, 255 - i, (7 * i) % 256)])
    mask.save(path)


def write_split(path: Path, stems) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{s}\n" for s in stems))


def voc_layout(root: Path) -> Path:
    """One VOC image in VOCdevkit's layout: background, a 255 border, a person square."""
    values = np.full((DATASET_SIZE, DATASET_SIZE), 255, np.uint8)  # 255 object border all round
    values[1:-1, 1:-1] = 0
    values[2:6, 2:6] = 15  # person
    write_image(root / "JPEGImages" / "2007_000001.jpg")
    write_mask(root / "SegmentationClass" / "2007_000001.png", values, palette=True)
    write_split(root / "ImageSets" / "Segmentation" / "val.txt", ["2007_000001"])
    return root


def generic_layout(root: Path, names=("floor", "wall", "cup")) -> Path:
    """Three images in the generic layout (images/, masks/, labels.txt)."""
    for i, stem in enumerate(["a", "b", "c"]):
        write_image(root / "images" / f"{stem}.png")
        write_mask(root / "masks" / f"{stem}.png", np.full((DATASET_SIZE, DATASET_SIZE), i % len(names)))
    (root / "labels.txt").write_text("\n".join(names) + "\n")
    return root
