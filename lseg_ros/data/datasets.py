"""Semantic segmentation datasets: ADE20K, PASCAL VOC 2012, PASCAL Context 59 and a
generic folder layout, all read into one :class:`SegmentationDataset`.

Every sample is ``dict(image=..., mask=..., path=str)``. Without a transform ``image``
is uint8 ``[H, W, 3]`` and ``mask`` int64 ``[H, W]`` (numpy); a transform (see
:mod:`lseg_ros.data.transforms`) turns them into tensors. Mask values are class indices
``0..len(class_names)-1`` or ``ignore_index``.

Files are validated lazily, one sample at a time in ``__getitem__``; ``check()`` scans
them all and raises :class:`DatasetError` naming the first bad file.
"""
from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import yaml
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MASK_MODES = ("L", "P", "I;16", "I")  # single-channel class-index PNGs


class DatasetError(ValueError):
    """A dataset file or layout is missing or malformed; the message names the file."""


def load_class_names(name: str) -> list[str]:
    """Class names shipped in ``lseg_ros/data/class_names/<name>.txt`` (one per line)."""
    folder = importlib.resources.files(__package__).joinpath("class_names")
    resource = folder.joinpath(f"{name}.txt")
    if not resource.is_file():
        shipped = sorted(Path(p.name).stem for p in folder.iterdir() if p.name.endswith(".txt"))
        raise DatasetError(f"no shipped class-name list {name!r}; available: {shipped}")
    return _read_names(resource.read_text(encoding="utf-8"))


def _read_names(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


#: dataset kind -> stem of the references' class-name file (data/class_names/<source>/<stem>.txt)
REFERENCE_NAME_FILES = {"voc": "voc21", "voc20": "voc20", "pascal_context60": "context60",
                        "pascal_context59": "context59", "coco_object": "coco_object", "ade20k": "ade20k",
                        "cityscapes": "city_scapes", "coco_stuff164k": "coco_stuff"}
#: folders of references' class-name files: 'sclip' (SCLIP's, also NACLIP's: identical
#: files) and 'clearclip' (ClearCLIP's: VOC21, VOC20 and COCO-Object differ); see the README there
NAME_SOURCES = ("sclip", "clearclip", "maskclip", "lseg")


def load_reference_names(kind: str, source: str = "sclip") -> list[str]:
    """Label texts, one per class, from the references' class-name files: a class with
    several names ('person, person in shirt, ...' in those files) reads 'person; person in
    shirt; ...' (the segmenter's synonym syntax)."""
    if source not in NAME_SOURCES:
        raise DatasetError(f"unknown class-name source {source!r}; accepted: {', '.join(NAME_SOURCES)}")
    if kind not in REFERENCE_NAME_FILES:
        raise DatasetError(f"no reference class names for dataset {kind!r}; available for "
                           f"{sorted(REFERENCE_NAME_FILES)}")
    folder = importlib.resources.files(__package__).joinpath("class_names", source)
    resource = folder.joinpath(f"{REFERENCE_NAME_FILES[kind]}.txt")
    if not resource.is_file():
        have = sorted(kind for kind, stem in REFERENCE_NAME_FILES.items() if folder.joinpath(f"{stem}.txt").is_file())
        raise DatasetError(f"{source} has no class-name file for {kind!r}; it has them for {have}")
    text = resource.read_text(encoding="utf-8")
    return ["; ".join(name.strip() for name in line.split(",") if name.strip()) for line in _read_names(text)]


def _display_names(kind: str, background: bool) -> list[str]:
    """One name per class for reports: the first name of each reference line ('background'
    for a background class, whose reference line lists many stuff names)."""
    names = [label.split(";")[0].strip() for label in load_reference_names(kind)]
    return (["background"] + names[1:]) if background else names


def identity_labels(raw: np.ndarray, ignore_index: int) -> np.ndarray:
    """Mask values are already class indices (ignore_index stays as is)."""
    return raw.astype(np.int64)


def reduce_zero_label(raw: np.ndarray, ignore_index: int) -> np.ndarray:
    """mmseg's ``reduce_zero_label``: 0 ('other'/background) -> ignore, k -> k-1."""
    labels = raw.astype(np.int64) - 1
    labels[raw == 0] = ignore_index
    labels[raw == ignore_index] = ignore_index  # an ignore value stays ignored
    return labels


class SegmentationDataset(Dataset):
    """Pairs of (image file, class-index mask file) with a class list.

    ``label_mapping(raw_mask, ignore_index) -> int64 mask`` converts the stored values
    to class indices. ``transform(image, mask, rng)`` may return tensors; when it has a
    ``rng_for(index, epoch)`` method the dataset passes a generator seeded by the sample
    index and ``self.epoch`` so augmentation is reproducible across worker processes.
    """

    def __init__(self, samples: Sequence[tuple[Path, Path]], class_names: Sequence[str],
                 ignore_index: int = 255,
                 label_mapping: Callable[[np.ndarray, int], np.ndarray] = identity_labels,
                 transform: Optional[Callable] = None, name: str = "dataset",
                 prompt_names: Optional[Sequence[str]] = None):
        if not class_names:
            raise DatasetError(f"{name}: class_names is empty; need at least one class")
        if 0 <= ignore_index < len(class_names):
            raise DatasetError(
                f"{name}: ignore_index {ignore_index} collides with class "
                f"{class_names[ignore_index]!r}; use a value outside 0..{len(class_names) - 1}")
        self.samples = [(Path(image), Path(mask)) for image, mask in samples]
        self.class_names = list(class_names)
        #: label text per class for the segmenter ('person; man; woman' with synonyms);
        #: class_names (one name each) are what reports show
        self.prompt_names = list(prompt_names) if prompt_names is not None else list(class_names)
        if len(self.prompt_names) != len(self.class_names):
            raise DatasetError(f"{name}: {len(self.prompt_names)} prompt names for {len(self.class_names)} classes")
        self.ignore_index = int(ignore_index)
        self.label_mapping = label_mapping
        self.transform = transform
        self.name = name
        self.epoch = 0

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def set_epoch(self, epoch: int) -> None:
        """Changes the augmentation draw of every sample (see the class docstring)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        image_path, mask_path = self.samples[index]
        image, mask = self.load(index)
        if self.transform is not None:
            rng_for = getattr(self.transform, "rng_for", None)
            rng = rng_for(index, self.epoch) if rng_for is not None else None
            image, mask = self.transform(image, mask, rng)
        return dict(image=image, mask=mask, path=str(image_path))

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Reads and validates one sample: (uint8 [H, W, 3], int64 [H, W])."""
        image_path, mask_path = self.samples[index]
        image = _read_image(image_path)
        if not mask_path.is_file():
            raise DatasetError(f"missing mask for image {image_path}: expected {mask_path}")
        raw = _read_mask(mask_path)
        if raw.shape != image.shape[:2]:
            raise DatasetError(
                f"mask {mask_path} is {raw.shape[1]}x{raw.shape[0]} (WxH) but its image "
                f"{image_path} is {image.shape[1]}x{image.shape[0]}; they must match")
        mask = self.label_mapping(raw, self.ignore_index)
        bad = (mask != self.ignore_index) & ((mask < 0) | (mask >= self.num_classes))
        if bad.any():
            values = sorted(set(raw[bad].tolist()))[:10]
            raise DatasetError(
                f"mask {mask_path} has class values {values} outside the {self.num_classes} "
                f"classes of {self.name} (accepted: stored values that map to "
                f"0..{self.num_classes - 1}, or ignore_index {self.ignore_index})")
        return image, mask

    def check(self) -> int:
        """Loads every sample; raises DatasetError for the first bad file, else returns
        the number of samples checked."""
        for index in range(len(self)):
            self.load(index)
        return len(self)

    def __repr__(self) -> str:
        return (f"SegmentationDataset({self.name!r}, {len(self)} samples, "
                f"{self.num_classes} classes, ignore_index={self.ignore_index})")


def _read_image(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DatasetError(f"image file {path} does not exist")
    try:
        with Image.open(path) as img:
            return np.array(img.convert("RGB"), dtype=np.uint8)  # [H, W, 3]
    except (UnidentifiedImageError, OSError) as err:
        raise DatasetError(f"cannot read image {path}: {err}") from err


def _read_mask(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as img:
            if img.mode not in MASK_MODES:
                raise DatasetError(
                    f"mask {path} has mode {img.mode}; expected a single-channel "
                    f"class-index PNG, one of modes {list(MASK_MODES)}")
            return np.array(img)  # [H, W]; a palette PNG gives its indices
    except (UnidentifiedImageError, OSError) as err:
        raise DatasetError(f"cannot read mask {path}: {err}") from err


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"{what} directory {path} does not exist")
    return path


def _read_split(split_dir: Path, split: str) -> list[str]:
    split_file = split_dir / f"{split}.txt"
    if not split_file.is_file():
        available = sorted(p.stem for p in split_dir.glob("*.txt")) if split_dir.is_dir() else []
        raise DatasetError(f"split file {split_file} does not exist; available splits: {available}")
    return [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]


def ade20k(root, split: str = "val", transform=None) -> SegmentationDataset:
    """ADEChallengeData2016: images/{training,validation}/*.jpg and annotations/*/*.png.

    Stored values 0..150 where 0 is 'other': 0 -> ignore (255), k -> k-1 (150 classes).
    """
    folders = {"train": "training", "training": "training",
               "val": "validation", "validation": "validation"}
    if split not in folders:
        raise DatasetError(f"ADE20K split {split!r} is unknown; accepted: {sorted(folders)}")
    root = Path(root)
    image_dir = _require_dir(root / "images" / folders[split], "ADE20K image")
    mask_dir = root / "annotations" / folders[split]
    samples = [(p, mask_dir / f"{p.stem}.png") for p in sorted(image_dir.glob("*.jpg"))]
    if not samples:
        raise DatasetError(f"no .jpg images in {image_dir}")
    return SegmentationDataset(samples, load_class_names("ade20k"), 255, reduce_zero_label,
                               transform, name="ade20k", prompt_names=load_reference_names("ade20k"))


def pascal_voc(root, split: str = "val", transform=None) -> SegmentationDataset:
    """VOC2012: JPEGImages/*.jpg, SegmentationClass/*.png (palette indices 0..20, 255 =
    object borders, ignored), ImageSets/Segmentation/<split>.txt. 21 classes incl.
    background."""
    root = Path(root)
    stems = _read_split(root / "ImageSets" / "Segmentation", split)
    samples = [(root / "JPEGImages" / f"{s}.jpg", root / "SegmentationClass" / f"{s}.png")
               for s in stems]
    return SegmentationDataset(samples, load_class_names("voc"), 255, identity_labels,
                               transform, name="voc", prompt_names=load_reference_names("voc"))


def pascal_voc20(root, split: str = "val", transform=None) -> SegmentationDataset:
    """VOC2012 without the background class (mmseg's ``reduce_zero_label``, as SCLIP's
    PascalVOC20Dataset): 0 -> ignore, k -> k-1; 20 classes."""
    voc = pascal_voc(root, split)
    return SegmentationDataset(voc.samples, voc.class_names[1:], 255, reduce_zero_label, transform,
                               name="voc20", prompt_names=load_reference_names("voc20"))


def pascal_context59(root, split: str = "val", transform=None) -> SegmentationDataset:
    """PASCAL Context 59 in the layout mmsegmentation's converter writes: JPEGImages/,
    SegmentationClassContext/*.png, ImageSets/SegmentationContext/<split>.txt.

    Stored values 0..59 with 0 = background. Like mmseg's PascalContextDataset59
    (``reduce_zero_label=True``), 0 -> ignore (255) and k -> k-1 (59 classes).
    """
    root = Path(root)
    stems = _read_split(root / "ImageSets" / "SegmentationContext", split)
    samples = [(root / "JPEGImages" / f"{s}.jpg", root / "SegmentationClassContext" / f"{s}.png")
               for s in stems]
    return SegmentationDataset(samples, load_class_names("pascal_context59"), 255,
                               reduce_zero_label, transform, name="pascal_context59",
                               prompt_names=load_reference_names("pascal_context59"))


def pascal_context60(root, split: str = "val", transform=None) -> SegmentationDataset:
    """PASCAL Context with its background class (mmseg's PascalContextDataset, as the
    references' PascalContext60Dataset): stored values 0..59 are the classes; 60 classes."""
    context59 = pascal_context59(root, split)
    return SegmentationDataset(context59.samples, ["background"] + context59.class_names, 255, identity_labels,
                               transform, name="pascal_context60", prompt_names=load_reference_names("pascal_context60"))


def coco_object(root, split: str = "val", transform=None) -> SegmentationDataset:
    """COCO-Object as the references build it (GroupViT's ``cvt_coco_object.py`` on
    COCO-Stuff164k): images/<split>2017/*.jpg, annotations/<split>2017/<stem>_instanceTrainIds.png
    with 0 = background and 1..80 the COCO thing classes; 81 classes."""
    return _coco_layout(root, split, "_instanceTrainIds.png", "coco_object", background=True, transform=transform)


def coco_stuff164k(root, split: str = "val", transform=None) -> SegmentationDataset:
    """COCO-Stuff164k in mmseg's layout: images/<split>2017/*.jpg,
    annotations/<split>2017/<stem>_labelTrainIds.png with values 0..170; 171 classes."""
    return _coco_layout(root, split, "_labelTrainIds.png", "coco_stuff164k", background=False, transform=transform)


def _coco_layout(root, split, mask_suffix, kind, background, transform):
    if split not in ("train", "val"):
        raise DatasetError(f"{kind} split {split!r} is unknown; accepted: train, val")
    root = Path(root)
    image_dir = _require_dir(root / "images" / f"{split}2017", f"{kind} image")
    mask_dir = root / "annotations" / f"{split}2017"
    samples = [(p, mask_dir / f"{p.stem}{mask_suffix}") for p in sorted(image_dir.glob("*.jpg"))]
    if not samples:
        raise DatasetError(f"no .jpg images in {image_dir}")
    return SegmentationDataset(samples, _display_names(kind, background), 255, identity_labels, transform,
                               name=kind, prompt_names=load_reference_names(kind))


def cityscapes(root, split: str = "val", transform=None) -> SegmentationDataset:
    """Cityscapes in mmseg's layout: leftImg8bit/<split>/<city>/*_leftImg8bit.png and
    gtFine/<split>/<city>/*_gtFine_labelTrainIds.png (cityscapesscripts' train ids 0..18,
    255 ignored); 19 classes."""
    root = Path(root)
    image_dir = _require_dir(root / "leftImg8bit" / split, "Cityscapes image")
    samples = []
    for image in sorted(image_dir.glob("*/*_leftImg8bit.png")):
        stem = image.name[:-len("_leftImg8bit.png")]
        samples.append((image, root / "gtFine" / split / image.parent.name / f"{stem}_gtFine_labelTrainIds.png"))
    if not samples:
        raise DatasetError(f"no <city>/*_leftImg8bit.png images in {image_dir}")
    return SegmentationDataset(samples, _display_names("cityscapes", False), 255, identity_labels, transform,
                               name="cityscapes", prompt_names=load_reference_names("cityscapes"))


def generic(root, split: Optional[str] = None, transform=None) -> SegmentationDataset:
    """root/images/*.{png,jpg,jpeg}, root/masks/<stem>.png (class indices, mode L or P),
    root/labels.txt (one class name a line), optional root/dataset.yaml
    (``ignore_index``, default 255), optional root/splits/<split>.txt (stems).

    ``split`` None or 'all', or no splits/ folder: every image in images/.
    """
    root = Path(root)
    image_dir = _require_dir(root / "images", "generic image")
    labels_file = root / "labels.txt"
    if not labels_file.is_file():
        raise DatasetError(f"class list {labels_file} does not exist; write one class name a line")
    class_names = _read_names(labels_file.read_text(encoding="utf-8"))
    ignore_index = _read_ignore_index(root / "dataset.yaml")
    images = {p.stem: p for p in sorted(image_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    split_dir = root / "splits"
    if split in (None, "all") or not split_dir.is_dir():
        stems = sorted(images)
    else:
        stems = _read_split(split_dir, split)
        missing = [s for s in stems if s not in images]
        if missing:
            raise DatasetError(f"split file {split_dir / f'{split}.txt'} names images not in "
                               f"{image_dir}: {missing[:5]}")
    if not stems:
        raise DatasetError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {image_dir}")
    samples = [(images[s], root / "masks" / f"{s}.png") for s in stems]
    return SegmentationDataset(samples, class_names, ignore_index, identity_labels,
                               transform, name=f"generic:{root.name}")


def _read_ignore_index(config_file: Path) -> int:
    if not config_file.is_file():
        return 255
    config = yaml.safe_load(config_file.read_text()) or {}
    if not isinstance(config, dict):
        raise DatasetError(f"{config_file} must be a mapping such as 'ignore_index: 255'")
    value = config.get("ignore_index", 255)
    if not isinstance(value, int) or isinstance(value, bool):
        raise DatasetError(f"{config_file}: ignore_index must be an integer, got {value!r}")
    return value


DATASETS: dict[str, Callable[..., SegmentationDataset]] = {
    "ade20k": ade20k,
    "voc": pascal_voc,
    "voc20": pascal_voc20,
    "pascal_context59": pascal_context59,
    "pascal_context60": pascal_context60,
    "coco_object": coco_object,
    "coco_stuff164k": coco_stuff164k,
    "cityscapes": cityscapes,
    "generic": generic,
}


def build_dataset(kind: str, root, split: Optional[str] = None,
                  transform=None) -> SegmentationDataset:
    """Builds a dataset by registry name (see ``DATASETS``). ``split`` None means 'val'
    for the benchmark datasets and every image for 'generic'."""
    if kind not in DATASETS:
        raise DatasetError(f"unknown dataset kind {kind!r}; accepted: {sorted(DATASETS)}")
    if split is None and kind != "generic":
        split = "val"
    return DATASETS[kind](root, split, transform)
