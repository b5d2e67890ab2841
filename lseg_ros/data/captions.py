"""Image-caption data (no masks): what ViL-Seg learns to segment from.

Three layouts, found in a dataset root in this order:

* ``captions.jsonl``: one JSON object per line, ``{"image": "path", "caption": "text"}`` or
  ``{"image": "path", "captions": ["text", ...]}``; several lines may name the same image.
* ``captions.csv``: a header with ``image`` and ``caption`` columns (others ignored); one row
  per caption.
* ``captions.txt``: ``<image><TAB><caption>`` per line; ``name.jpg#2`` (Flickr/COCO-style
  caption numbers) counts as ``name.jpg``.

Image paths are relative to the root (or to ``root/images`` when not found there). With a
``splits/<split>.txt`` file (image stems or paths, one per line) only those images are used.
Each item is ``{"image": uint8 [H, W, 3] (or the transform's output), "caption": str,
"captions": all of the image's captions, "path": str}``; the caption of an item is drawn per
epoch from the image's captions (seeded by index and epoch).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from .datasets import DatasetError, _read_image
from .transforms import image_to_tensor

CAPTION_FILES = ("captions.jsonl", "captions.csv", "captions.txt")


class CaptionDataset:
    """Images with one or more captions each (see the module docstring)."""

    def __init__(self, samples: Sequence[Tuple[Path, Sequence[str]]], transform: Optional[Callable] = None,
                 name: str = "captions", seed: int = 0) -> None:
        if not samples:
            raise DatasetError(f"{name}: no image with a caption")
        self.samples = [(Path(path), [str(c) for c in captions]) for path, captions in samples]
        for path, captions in self.samples:
            if not captions or not all(c.strip() for c in captions):
                raise DatasetError(f"{name}: image {path} has an empty caption")
        self.transform = transform
        self.name = name
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.samples)

    def rng_for(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, int(index), 7])

    def __getitem__(self, index: int) -> dict:
        path, captions = self.samples[index]
        rng = self.rng_for(index)
        caption = captions[int(rng.integers(len(captions)))]
        image = _read_image(path)
        if self.transform is not None:
            image = self.transform(image, rng)
        return dict(image=image, caption=caption, captions=list(captions), path=str(path))

    def __repr__(self) -> str:
        count = sum(len(captions) for _, captions in self.samples)
        return f"CaptionDataset({self.name!r}, {len(self)} images, {count} captions)"


class CaptionImageTransform:
    """A captioned image, whole, resized to ``size`` (height, width) -> float tensor [3, H, W]
    in [0, 1]. (Random views are made on the batch by the training objective; a crop here
    could cut away what the caption names.)"""

    def __init__(self, size: Sequence[int]) -> None:
        if len(size) != 2 or min(int(v) for v in size) < 1:
            raise ValueError(f"image size must be (height, width) with both >= 1, got {size!r}")
        self.size = (int(size[0]), int(size[1]))

    def __call__(self, image: np.ndarray, rng: Optional[np.random.Generator] = None) -> torch.Tensor:
        height, width = self.size
        if image.shape[:2] != (height, width):
            image = np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))
        return image_to_tensor(image)

    def __repr__(self) -> str:
        return f"CaptionImageTransform(size={self.size})"


def collate_captions(items: Sequence[dict]) -> dict:
    """DataLoader collate: images stacked [B, 3, H, W], captions and paths as lists."""
    return dict(image=torch.stack([item["image"] for item in items]),
                caption=[item["caption"] for item in items],
                captions=[item["captions"] for item in items],
                path=[item["path"] for item in items])


def read_caption_dataset(root, split: Optional[str] = None, transform: Optional[Callable] = None,
                         seed: int = 0) -> CaptionDataset:
    """The caption dataset in ``root`` (layouts in the module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"caption dataset root {str(root)!r} is not a folder")
    for file_name in CAPTION_FILES:
        path = root / file_name
        if path.is_file():
            pairs = {"captions.jsonl": _read_jsonl, "captions.csv": _read_csv, "captions.txt": _read_txt}[file_name](path)
            break
    else:
        raise DatasetError(f"no captions file in {str(root)!r}: expected one of {', '.join(CAPTION_FILES)}")
    grouped: Dict[str, List[str]] = {}
    for image, caption in pairs:
        grouped.setdefault(image, []).append(caption)
    wanted = _split_names(root, split)
    samples = []
    for image, captions in grouped.items():
        resolved = _resolve_image(root, image, path)
        if wanted is not None and not ({resolved.stem, image, Path(image).stem} & wanted):
            continue
        samples.append((resolved, captions))
    if wanted is not None and not samples:
        raise DatasetError(f"split {split!r} of {str(root)!r} names no image of {path.name}")
    return CaptionDataset(samples, transform, name=f"{root.name}:{split or 'all'}", seed=seed)


def _split_names(root: Path, split: Optional[str]):
    if not split or split == "all":
        return None
    path = root / "splits" / f"{split}.txt"
    if not path.is_file():
        raise DatasetError(f"split {split!r}: {path} does not exist")
    return {line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}


def _resolve_image(root: Path, image: str, source: Path) -> Path:
    for candidate in (root / image, root / "images" / image):
        if candidate.is_file():
            return candidate
    raise DatasetError(f"{source.name} names image {image!r}, which is neither {root / image} nor "
                       f"{root / 'images' / image}")


def _read_jsonl(path: Path) -> List[Tuple[str, str]]:
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as error:
            raise DatasetError(f"{path}:{number}: not JSON ({error.msg})") from None
        if not isinstance(entry, dict) or not isinstance(entry.get("image"), str):
            raise DatasetError(f"{path}:{number}: expected an object with an 'image' path")
        captions = entry.get("captions", entry.get("caption"))
        captions = [captions] if isinstance(captions, str) else captions
        if not isinstance(captions, list) or not captions or not all(isinstance(c, str) and c.strip()
                                                                    for c in captions):
            raise DatasetError(f"{path}:{number}: expected a non-empty 'caption' string or 'captions' list")
        pairs.extend((entry["image"], caption.strip()) for caption in captions)
    return pairs


def _read_csv(path: Path) -> List[Tuple[str, str]]:
    with open(path, newline="", encoding="utf-8") as stream:
        reader = csv.DictReader(stream)
        if not reader.fieldnames or not {"image", "caption"} <= set(reader.fieldnames):
            raise DatasetError(f"{path}: the header must name 'image' and 'caption' columns, got {reader.fieldnames}")
        pairs = []
        for number, row in enumerate(reader, 2):
            if not (row.get("image") or "").strip() or not (row.get("caption") or "").strip():
                raise DatasetError(f"{path}:{number}: empty image or caption")
            pairs.append((row["image"].strip(), row["caption"].strip()))
    return pairs


def _read_txt(path: Path) -> List[Tuple[str, str]]:
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        image, tab, caption = line.partition("\t")
        if not tab or not caption.strip():
            raise DatasetError(f"{path}:{number}: expected '<image><TAB><caption>'")
        image = image.strip()
        if "#" in image and image.rsplit("#", 1)[1].isdigit():  # Flickr/COCO caption number
            image = image.rsplit("#", 1)[0]
        pairs.append((image, caption.strip()))
    return pairs
