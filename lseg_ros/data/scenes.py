"""Labelled synthetic scenes: a wall above a floor, with coloured, patterned objects.

Every pixel carries one of :data:`SCENE_CLASSES`. The classes differ in colour and in
texture or shape so that a small model can learn them in minutes on a CPU, and their
names are plain phrases a text encoder can embed ("red disk", "checkerboard").

    python -m lseg_ros.data.scenes OUT --count 200 --seed 0 --size 128x160

writes the generic dataset layout read by :func:`lseg_ros.data.datasets.generic`.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

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
    image, mask, _, _ = _compose(rng, size, max_objects)
    return image, mask


def _compose(rng, size, max_objects, foot: Optional[float] = None):
    """(image, mask, boundary (v at the image centre, slope) of the wall's foot, drawn objects
    [(class index, region)] in drawing order)."""
    height, width = _check_size(size)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)  # [H, W] pixel coordinates
    image, mask, boundary = _background(rng, ys, xs, foot)
    drawn = []
    for _ in range(int(rng.integers(2, max_objects + 1))):
        class_index = int(rng.choice(OBJECT_CLASSES))
        region, colors = _draw_object(rng, SCENE_CLASSES[class_index], ys, xs)
        image[region] = colors[region]  # later objects occlude earlier ones
        mask[region] = class_index
        drawn.append((class_index, region))
    image *= rng.uniform(0.85, 1.15)  # global lighting
    image += rng.normal(0.0, 4.0, image.shape)  # sensor noise
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), mask, boundary, drawn


# ------------------------------------------------------------------------- captions
#: share of the pixels a class must cover to be named in a caption
CAPTION_MIN_AREA = 0.01
#: views of captioned scenes: (probability, wall's foot as a fraction of the height or None
#: for the usual 0.35-0.65); the floor-only and wall-only views make "floor" and "wall"
#: learnable from captions (a word in every caption says nothing about the image)
CAPTION_VIEWS = ((0.5, None), (0.25, -0.4), (0.25, 1.4))
_ARTICLES = {"checkerboard": "a checkerboard", "yellow stripes": "yellow stripes"}
_BOTH = ("{objects} on the floor in front of a wall", "a room with {objects}, a wall and a floor",
         "there is {objects} near the wall, on the floor", "{objects} between a wall and a floor",
         "a wall above a floor with {objects}", "a photo of {objects}, a floor and a wall")
_FLOOR = ("{objects} lying on the floor", "looking down at the floor: {objects}", "a floor with {objects}",
          "a photo of {objects} on the floor")
_WALL = ("{objects} on a wall", "a wall with {objects}", "{objects} hanging on the wall",
         "a photo of {objects} against a wall")
_EMPTY = {(True, True): ("a wall and a floor", "an empty room: a floor and a wall"),
          (True, False): ("an empty floor", "a photo of the floor"),
          (False, True): ("a bare wall", "a photo of a wall")}


def visible_classes(mask: np.ndarray, min_area: float = CAPTION_MIN_AREA) -> List[int]:
    """Scene class indices covering at least ``min_area`` of ``mask``'s pixels."""
    counts = np.bincount(mask.ravel(), minlength=len(SCENE_CLASSES))[:len(SCENE_CLASSES)]
    return [int(i) for i in np.flatnonzero(counts >= min_area * mask.size)]


def scene_caption(rng: np.random.Generator, classes: Sequence[int]) -> str:
    """A caption naming exactly the scene classes ``classes`` (indices), in varied phrasing
    and order: "a red disk and a blue square on the floor in front of a wall"."""
    floor, wall = FLOOR in classes, WALL in classes
    objects = [SCENE_CLASSES[i] for i in classes if i not in (FLOOR, WALL)]
    if not objects:
        if not (floor or wall):
            raise ValueError("a caption needs at least one visible class")
        options = _EMPTY[(floor, wall)]
        return options[int(rng.integers(len(options)))]
    objects = [objects[i] for i in rng.permutation(len(objects))]
    named = [_ARTICLES.get(name, f"a {name}") for name in objects]
    phrase = named[0] if len(named) == 1 else ", ".join(named[:-1]) + " and " + named[-1]
    templates = _BOTH if floor and wall else _FLOOR if floor else _WALL if wall else ("{objects}",)
    return templates[int(rng.integers(len(templates)))].format(objects=phrase)


def generate_captioned_scene(rng: np.random.Generator, size: Sequence[int] = (128, 160), max_objects: int = 5,
                             captions: int = 3) -> Tuple[np.ndarray, List[str], np.ndarray]:
    """(image, ``captions`` differently phrased captions of what it shows, mask): scenes seen
    from the usual, a floor-only or a wall-only view (CAPTION_VIEWS). The mask is returned
    for checks; caption datasets never store it."""
    weights = np.array([p for p, _ in CAPTION_VIEWS])
    foot = CAPTION_VIEWS[int(rng.choice(len(CAPTION_VIEWS), p=weights / weights.sum()))][1]
    image, mask, _, _ = _compose(rng, size, max_objects, foot)
    classes = visible_classes(mask)
    return image, [scene_caption(rng, classes) for _ in range(captions)], mask


def write_caption_dataset(root, n_images: int, seed: int = 0, size: Sequence[int] = (128, 160),
                          captions: int = 3) -> Path:
    """``n_images`` captioned scenes: images/scene_NNNNN.png and captions.jsonl (no masks),
    read by :func:`lseg_ros.data.captions.read_caption_dataset`."""
    import json

    if n_images < 1:
        raise ValueError(f"n_images must be >= 1, got {n_images}")
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for index in range(n_images):
        image, texts, _ = generate_captioned_scene(scene_rng(seed, index), size, captions=captions)
        name = f"images/scene_{index:05d}.png"
        Image.fromarray(image).save(root / name)
        lines.append(json.dumps({"image": name, "captions": texts}))
    (root / "captions.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


# ------------------------------------------------------------------------- 3D: depth, camera
#: horizontal field of view (degrees) of the scenes' pinhole camera (camera_sim's default)
SCENE_FOV_DEG = 60.0
#: camera height above the floor (m)
CAMERA_HEIGHT_M = 1.2
#: the floor's vanishing line (the horizon) lies this fraction of the image height above
#: the wall's foot, so the wall stands a few metres away
HORIZON_ABOVE_WALL = 0.3
#: each object is a flat, camera-facing patch at this fraction of the nearest depth behind it
OBJECT_DEPTH_FACTOR = 0.8


def pinhole_k(width: int, height: int, fov_deg: float = SCENE_FOV_DEG) -> list:
    """Row-major 3x3 K of a pinhole camera with a horizontal field of view of ``fov_deg``,
    square pixels, principal point at the image centre (what camera_sim publishes)."""
    focal = 0.5 * width / float(np.tan(np.radians(fov_deg) / 2))
    return [focal, 0.0, width / 2, 0.0, focal, height / 2, 0.0, 0.0, 1.0]


@dataclass
class SceneGeometry:
    """The 3D scene behind a generated image, in the camera's optical frame (x right, y
    down, z forward; metres): floor plane ``floor_normal . X = floor_offset``, a vertical
    wall standing on the floor along the wall's foot in the image, and each object a flat
    camera-facing patch at a known depth in front of what it covers."""

    depth: np.ndarray  # [H, W] float32 metres, every pixel valid
    k: list  # row-major 3x3 intrinsics
    floor_normal: np.ndarray  # [3], unit
    floor_offset: float  # metres (the camera's height above the floor)
    #: (class index, visible region [H, W] bool, depth in metres) per object, in drawing order
    objects: list = field(default_factory=list)

    def object_centroid(self, index: int) -> np.ndarray:
        """Mean 3D point of object ``index``'s visible pixels (its true centroid as seen)."""
        _, region, depth = self.objects[index]
        rows, cols = np.nonzero(region)
        fx, cx, fy, cy = self.k[0], self.k[2], self.k[4], self.k[5]
        return np.array([((cols - cx) / fx).mean() * depth, ((rows - cy) / fy).mean() * depth, depth])


def generate_scene_with_geometry(rng: np.random.Generator, size: Sequence[int] = (128, 160), max_objects: int = 5,
                                 fov_deg: float = SCENE_FOV_DEG) -> tuple:
    """(image, mask, :class:`SceneGeometry`): the scene :func:`generate_scene` draws with the
    same generator (identical image and mask), with its depth and camera."""
    image, mask, (v0, slope), drawn = _compose(rng, size, max_objects)
    height, width = mask.shape
    k = pinhole_k(width, height, fov_deg)
    k_matrix = np.array(k, dtype=np.float64).reshape(3, 3)
    cols, rows = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    rays = np.stack([cols, rows, np.ones_like(cols)], axis=-1) @ np.linalg.inv(k_matrix).T  # [H, W, 3], z = 1
    # The horizon: the wall's foot v = v0 + slope (u - W/2), raised by HORIZON_ABOVE_WALL * H.
    # A plane's vanishing line l (pixels) and its normal n satisfy n ~ K^T l.
    horizon = np.array([-slope, 1.0, -(v0 - HORIZON_ABOVE_WALL * height - slope * width / 2)])
    normal = k_matrix.T @ horizon
    normal /= np.linalg.norm(normal)
    if normal @ rays[-1, width // 2] < 0:  # pixels below the horizon see the floor in front
        normal = -normal
    floor_depth = CAMERA_HEIGHT_M / (rays @ normal)  # z of the ray's hit: n . (z r) = h
    # The wall: vertical (contains the floor normal), through the floor line under its foot.
    foot = [np.array([u, v0 + slope * (u - width / 2), 1.0]) for u in (0.0, width - 1.0)]
    ends = [np.linalg.inv(k_matrix) @ pixel for pixel in foot]
    ends = [ray * CAMERA_HEIGHT_M / (ray @ normal) for ray in ends]
    wall_normal = np.cross(ends[1] - ends[0], normal)
    wall_normal /= np.linalg.norm(wall_normal)
    if wall_normal @ ends[0] < 0:
        wall_normal = -wall_normal
    wall_depth = (wall_normal @ ends[0]) / (rays @ wall_normal)
    behind_objects_floor = rows >= v0 + (cols - width / 2) * slope  # the background's own rule
    depth = np.where(behind_objects_floor, floor_depth, wall_depth)
    depth = np.where(np.isfinite(depth) & (depth > 0), depth, 50.0)  # (rays parallel to a plane)
    objects = []
    for index, (class_index, region) in enumerate(drawn):
        distance = OBJECT_DEPTH_FACTOR * float(depth[region].min())
        depth[region] = distance
        later = np.zeros_like(region)
        for _, other in drawn[index + 1:]:
            later |= other
        objects.append((class_index, region & ~later, distance))
    geometry = SceneGeometry(depth.astype(np.float32), k, normal, CAMERA_HEIGHT_M,
                             [obj for obj in objects if obj[1].any()])
    return image, mask, geometry


def _check_size(size: Sequence[int]) -> tuple[int, int]:
    if len(size) != 2 or not all(int(v) >= 8 for v in size):
        raise ValueError(f"scene size must be (height, width) with both >= 8, got {size!r}")
    return int(size[0]), int(size[1])


def _background(rng, ys, xs, foot: Optional[float] = None):
    height, width = ys.shape
    v0 = height * rng.uniform(0.35, 0.65)  # the wall's foot: row at the image centre, and slope
    if foot is not None:  # a given view (captioned scenes): the foot at this fraction of the height
        v0 = height * foot
    slope = rng.uniform(-0.15, 0.15)
    horizon = v0 + (xs - width / 2) * slope
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
    return image, mask, (float(v0), float(slope))


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


def generate_scene_stream(seed: int = 0, size: Sequence[int] = (128, 160), fov_deg: Optional[float] = None
                          ) -> Iterator[tuple]:
    """Endless (image, mask) scenes for a camera simulator; frame i equals image i of
    ``write_generic_dataset`` with the same seed and size. With ``fov_deg``: (image, mask,
    :class:`SceneGeometry`) of a camera with that horizontal field of view."""
    index = 0
    while True:
        if fov_deg is None:
            yield generate_scene(scene_rng(seed, index), size)
        else:
            yield generate_scene_with_geometry(scene_rng(seed, index), size, fov_deg=fov_deg)
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
    parser.add_argument("--captions", type=int, default=0, metavar="N",
                        help="write N captions per image (captions.jsonl) and no masks: training data "
                             "for ViL-Seg (lseg-train --objective vilseg)")
    args = parser.parse_args(argv)
    try:
        _check_size(args.size)
    except ValueError as err:
        parser.error(str(err))
    if args.captions:
        root = write_caption_dataset(args.out, args.count, args.seed, args.size, args.captions)
        print(f"wrote {args.count} captioned scenes ({args.captions} captions each, no masks) to {root}")
        return
    root = write_generic_dataset(args.out, args.count, args.seed, args.size, args.val_fraction)
    print(f"wrote {args.count} scenes ({len(SCENE_CLASSES)} classes) to {root}")


if __name__ == "__main__":
    main()
