"""Labelled synthetic scenes: a wall above a floor, with coloured, patterned objects.

Every pixel carries one of :data:`SCENE_CLASSES`. The classes differ in colour and in
texture or shape so that a small model can learn them in minutes on a CPU, and their
names are plain phrases a text encoder can embed ("red disk", "checkerboard").

    python -m lseg_ros.data.scenes OUT --count 200 --seed 0 --size 128x160

writes the generic dataset layout read by :func:`lseg_ros.data.datasets.generic`.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
from PIL import Image

SCENE_CLASSES = [
    "floor",           # lower part, brown, grainy plank texture
    "wall",            # upper part, pale, smooth with a tint gradient
    "red disk",        # filled circle
    "blue square",     # rotated filled square
    "green triangle",  # rotated filled triangle
    "yellow stripes",  # rotated rectangle with yellow/dark stripes
    "checkerboard",    # rotated black/white checkered square
    "purple ring",     # annulus (the background shows through its hole)
]
FLOOR, WALL = 0, 1
OBJECT_CLASSES = tuple(range(2, len(SCENE_CLASSES)))
BASE_COLORS = {  # RGB before per-object variation
    "red disk": (205, 40, 40),
    "blue square": (40, 70, 210),
    "green triangle": (40, 170, 60),
    "purple ring": (150, 50, 190),
}
STRIPE_COLORS = ((235, 210, 40), (70, 55, 20))
CHECKER_COLORS = ((240, 240, 240), (25, 25, 25))


def generate_scene(rng: np.random.Generator, size: Sequence[int] = (128, 160),
                   max_objects: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """One scene: (image uint8 [H, W, 3], mask uint8 [H, W] of SCENE_CLASSES indices)."""
    height, width = _check_size(size)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)  # [H, W] pixel coordinates
    image, mask = _background(rng, ys, xs)
    for _ in range(int(rng.integers(2, max_objects + 1))):
        class_index = int(rng.choice(OBJECT_CLASSES))
        region, colors = _draw_object(rng, SCENE_CLASSES[class_index], ys, xs)
        image[region] = colors[region]  # later objects occlude earlier ones
        mask[region] = class_index
    image *= rng.uniform(0.85, 1.15)  # global lighting
    image += rng.normal(0.0, 4.0, image.shape)  # sensor noise
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), mask


def _check_size(size: Sequence[int]) -> tuple[int, int]:
    if len(size) != 2 or not all(int(v) >= 8 for v in size):
        raise ValueError(f"scene size must be (height, width) with both >= 8, got {size!r}")
    return int(size[0]), int(size[1])


def _background(rng, ys, xs):
    height, width = ys.shape
    horizon = height * rng.uniform(0.35, 0.65) + (xs - width / 2) * rng.uniform(-0.15, 0.15)
    is_floor = ys >= horizon  # [H, W]
    mask = np.where(is_floor, FLOOR, WALL).astype(np.uint8)

    wall_tint = rng.uniform(185, 235) + rng.normal(0, 10, 3)  # pale, slightly tinted
    gradient = (ys / height)[..., None] * rng.uniform(-25, 10)
    wall = wall_tint + gradient + rng.normal(0, 2.0, ys.shape + (3,))

    floor_tint = np.array([120, 80, 45]) * rng.uniform(0.8, 1.2) + rng.normal(0, 6, 3)
    plank_height = rng.uniform(5, 10)
    planks = np.where((ys % plank_height) < 1.0, -35.0, 0.0)[..., None]  # dark seams
    grain = rng.normal(0, 14, ys.shape)[..., None]  # coarse per-pixel grain
    floor = floor_tint + planks + grain

    image = np.where(is_floor[..., None], floor, wall).astype(np.float32)  # [H, W, 3]
    return image, mask


def _rotated(rng, ys, xs, cy, cx):
    """Pixel coordinates in a frame centred on (cy, cx) and rotated by a random angle."""
    angle = rng.uniform(0, np.pi)
    cos, sin = np.cos(angle), np.sin(angle)
    dy, dx = ys - cy, xs - cx
    return cos * dy - sin * dx, sin * dy + cos * dx  # (v, u)


def _draw_object(rng, name, ys, xs):
    """A boolean region [H, W] and its colours [H, W, 3] for one object."""
    height, width = ys.shape
    radius = rng.uniform(0.08, 0.25) * min(height, width)
    cy, cx = rng.uniform(0, height), rng.uniform(0, width)
    v, u = _rotated(rng, ys, xs, cy, cx)
    distance = np.hypot(v, u)
    if name == "red disk":
        region = distance <= radius
    elif name == "purple ring":
        region = (distance <= radius) & (distance >= 0.55 * radius)
    elif name in ("blue square", "checkerboard"):
        region = (np.abs(u) <= radius * 0.85) & (np.abs(v) <= radius * 0.85)
    elif name == "green triangle":  # equilateral, circumradius = radius
        edges = [np.cos(a) * u + np.sin(a) * v for a in (np.pi / 2, np.pi * 7 / 6, np.pi * 11 / 6)]
        region = np.max(edges, axis=0) <= radius / 2
    elif name == "yellow stripes":
        region = (np.abs(u) <= radius) & (np.abs(v) <= radius * 0.7)
    else:
        raise ValueError(f"unknown scene object {name!r}; accepted: "
                         f"{[SCENE_CLASSES[i] for i in OBJECT_CLASSES]}")
    if not region.any():  # too small to cover a pixel centre: mark the nearest pixel
        region[int(np.clip(cy, 0, height - 1)), int(np.clip(cx, 0, width - 1))] = True

    if name == "yellow stripes":
        period = max(3.0, radius / 2.5)
        colors = _two_tone(rng, (u % period) < period / 2, *STRIPE_COLORS)
    elif name == "checkerboard":
        period = max(2.0, radius / 2.5)
        checks = ((np.floor(u / period) + np.floor(v / period)) % 2) == 0
        colors = _two_tone(rng, checks, *CHECKER_COLORS)
    else:
        base = np.array(BASE_COLORS[name], dtype=np.float32) + rng.normal(0, 12, 3)
        shading = 1.0 - 0.15 * (distance / max(radius, 1.0))[..., None]
        colors = base * shading
    colors = colors + rng.normal(0, 5.0, ys.shape + (1,))
    return region, colors.astype(np.float32)


def _two_tone(rng, first, color_a, color_b):
    variation = rng.normal(0, 10, 3)
    a = np.array(color_a, dtype=np.float32) + variation
    b = np.array(color_b, dtype=np.float32) + variation
    return np.where(first[..., None], a, b)


def scene_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of scene ``index`` of a seeded set (stream and dataset agree)."""
    return np.random.default_rng([int(seed), int(index)])


def generate_scene_stream(seed: int = 0, size: Sequence[int] = (128, 160)
                          ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Endless (image, mask) scenes for a camera simulator; frame i equals image i of
    ``write_generic_dataset`` with the same seed and size."""
    index = 0
    while True:
        yield generate_scene(scene_rng(seed, index), size)
        index += 1


def write_generic_dataset(root, n_images: int, seed: int = 0,
                          size: Sequence[int] = (128, 160), val_fraction: float = 0.2) -> Path:
    """Writes ``n_images`` scenes in the generic layout: images/scene_NNNNN.png,
    masks/scene_NNNNN.png (mode L), labels.txt, dataset.yaml, splits/{train,val}.txt.
    The val split is a seeded random ``val_fraction`` of the images."""
    if n_images < 1:
        raise ValueError(f"n_images must be >= 1, got {n_images}")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    root = Path(root)
    for folder in ("images", "masks", "splits"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    stems = [f"scene_{i:05d}" for i in range(n_images)]
    for stem, (image, mask) in zip(stems, generate_scene_stream(seed, size)):
        Image.fromarray(image).save(root / "images" / f"{stem}.png")
        Image.fromarray(mask).save(root / "masks" / f"{stem}.png")
    n_val = int(round(n_images * val_fraction))
    val_indices = set(np.random.default_rng(seed).permutation(n_images)[:n_val].tolist())
    train = [s for i, s in enumerate(stems) if i not in val_indices]
    val = [s for i, s in enumerate(stems) if i in val_indices]
    (root / "splits" / "train.txt").write_text("".join(f"{s}\n" for s in train))
    (root / "splits" / "val.txt").write_text("".join(f"{s}\n" for s in val))
    (root / "labels.txt").write_text("".join(f"{name}\n" for name in SCENE_CLASSES))
    (root / "dataset.yaml").write_text(
        f"# synthetic scenes from lseg_ros.data.scenes (seed {seed}, size "
        f"{size[0]}x{size[1]})\nignore_index: 255\n")
    return root


def parse_size(text: str) -> tuple[int, int]:
    """'HxW' -> (H, W)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like HxW (e.g. 128x160), got {text!r}")
    return height, width


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m lseg_ros.data.scenes",
        description="Write labelled synthetic scenes in the generic dataset layout.")
    parser.add_argument("out", type=Path, help="output dataset root")
    parser.add_argument("--count", type=int, default=200, help="number of scenes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=parse_size, default=(128, 160), help="HxW")
    parser.add_argument("--val-fraction", type=float, default=0.2)
    args = parser.parse_args(argv)
    try:
        _check_size(args.size)
    except ValueError as err:
        parser.error(str(err))
    root = write_generic_dataset(args.out, args.count, args.seed, args.size, args.val_fraction)
    print(f"wrote {args.count} scenes ({len(SCENE_CLASSES)} classes) to {root}")


if __name__ == "__main__":
    main()
