"""``lseg-train``: train LSeg's image encoder against a frozen text encoder, or (``--objective
vilseg``) a ViL-Seg model from image captions alone.

    lseg-train --data_root scenes/ --out runs/scenes --epochs 20 --batch_size 8
    lseg-train --config train.yaml --model.model lseg_vitl16_384 --model.pretrained demo_e200.ckpt
    lseg-train --resume runs/scenes/epoch_005          # continues from that step
    lseg-train --resume runs/scenes                    # from the run's last complete epoch

LSeg's objective: the label embeddings of the dataset's class names are computed once
with the backend's (frozen) text tower; the logits are the engine's own
``Segmenter.classify`` (LSeg's logit scale x cosine of normalized pixel and label
embeddings), upsampled bilinearly to the label resolution; the loss is cross-entropy
with the dataset's ignore index (a backend with a learned label head, lmseg's cost aggregation:
CAT-Seg's per-class binary cross-entropy, :func:`per_class_bce`). ``unseen_classes`` hold classes out for zero-shot
evaluation: their pixels are ignored and their names are not in the training label set.

Per epoch ``<out>/`` gets ``epoch_NNN.safetensors`` (the network's state dict, loadable
with ``pretrained:=<that file>``), ``epoch_NNN.train_state.pt`` (optimizer, schedule,
step, RNG; tensors and plain Python only), a row of ``metrics.csv`` and ``model.yaml``
(an inference SegmenterConfig for the latest checkpoint); ``config.yaml`` holds the run's
TrainConfig. Every TrainConfig field is an option (``--name value``) and a YAML key.

ViL-Seg's objective (``--objective vilseg --model.backend vilseg``) reads a caption dataset
(:mod:`lseg_ros.data.captions`; no masks) from ``data_root`` and trains image encoder,
heads and text tower with the losses of :class:`lseg_ros.vilseg_objective.VilSegObjective`;
``val_data_root`` names a labelled dataset whose masks only score validation.

A kill at any moment leaves the run resumable: every file is written to a temporary
name, flushed and renamed (weights, then training state, then model.yaml), so an epoch
whose ``.train_state.pt`` exists is complete, and ``model.yaml`` names the last complete
epoch. ``metrics.csv`` is only ever appended to; a run resumed from an earlier epoch
appends that epoch's successors again (the last row of an epoch is the current one).
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import math
import re
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from .deps import require_engine_packages

require_engine_packages("lseg-train")  # one line instead of a ModuleNotFoundError traceback
import torch  # noqa: E402
import torch.nn.functional as F
import yaml

from . import atomic
from .config import (SegmenterConfig, add_config_arguments, check_values, load_yaml_config, setting,
                     with_overrides)
from .data import TrainTransform, build_dataset
from .data.captions import CaptionImageTransform, collate_captions, read_caption_dataset
from .evaluate import class_indices, evaluate_segmenter
from .vilseg_objective import VilSegObjective
from .segmenter import Segmenter, resolve_device
from .weights import WeightsError


@dataclass
class TrainModelConfig(SegmenterConfig):
    """The model to train: a SegmenterConfig whose defaults are a trainable LSeg."""

    backend: str = setting("Registered backend to train: lseg or lmseg (objective lseg), vilseg (objective "
                           "vilseg).", "lseg")
    model: str = setting("LSeg preset: lseg_tiny (CPU demos), lseg_vitb32_384, lseg_vitb16_384, "
                         "lseg_vitl16_384; LMSeg preset (backend lmseg): lmseg_tiny, lmseg_vitb16_sam_b, "
                         "lmseg_vitb16_sam_l.", "lseg_tiny")
    pretrained: str = setting("Initial weights: 'random' or a local checkpoint to fine-tune.", "random")
    labels: List[str] = setting("Ignored in training: the label set is the dataset's class names "
                                "(minus unseen_classes).", factory=list)


@dataclass
class VilSegTrainConfig:
    """ViL-Seg's objective (``objective: vilseg``): loss weights and views."""

    cross_modal_weight: float = setting("Weight of the cross-modal contrast (pooled image embedding vs its "
                                        "caption's, InfoNCE over the batch).", 1.0)
    vision_weight: float = setting("Weight of the vision-based contrast (global view vs local crops, "
                                   "InfoNCE over the batch).", 0.5)
    cluster_weight: float = setting("Weight of the clustering head's loss (negative mutual information of "
                                    "the cluster assignments of two views, IIC).", 1.0)
    cluster_entropy: float = setting("IIC's lambda: weight of the cluster marginals' entropy in the clustering "
                                     "loss (1 = plain mutual information; more keeps small classes apart).", 2.0)
    local_crops: int = setting("Local crops per image for the vision-based contrast.", 2)
    local_scale: List[float] = setting("Side of a local crop as a fraction of the image's (low, high).",
                                       factory=lambda: [0.35, 0.65])
    vision_temperature: float = setting("Temperature of the vision-based contrast.", 0.1)
    pooling: str = setting("Image embedding of the cross-modal contrast: mean (of all patch embeddings: "
                           "large regions dominate) | clusters (of the clustering head's soft cluster means, "
                           "each cluster alike, as a caption names each thing once).", "mean")
    image_size: List[int] = setting("Training image size (height, width): captioned images are resized to "
                                    "it whole (a crop could cut away what the caption names); multiples of "
                                    "the patch size.", factory=lambda: [128, 160])


@dataclass
class TrainConfig:
    out: str = setting("Output folder for checkpoints, config.yaml, model.yaml and metrics.csv.", "runs/lseg")
    objective: str = setting("lseg (masks: per-pixel cross-entropy against the frozen text tower's label "
                             "embeddings) | vilseg (captions only, no masks: ViL-Seg's contrastive and "
                             "clustering losses; trains the text tower too; needs model.backend vilseg).", "lseg")
    dataset: str = setting("Dataset kind: ade20k | voc | pascal_context59 | generic (objective vilseg: the "
                           "kind of the validation dataset).", "generic")
    data_root: str = setting("Dataset root folder (objective vilseg: a caption dataset, see "
                             "lseg_ros.data.captions).", "")
    val_data_root: str = setting("Labelled dataset root for validation; empty = data_root (objective vilseg: "
                                 "empty = no validation, captions have no masks).", "")
    train_split: str = setting("Training split (objective vilseg: used when the caption dataset has "
                               "splits/<split>.txt, else all its images).", "train")
    val_split: str = setting("Validation split, evaluated after each epoch; empty disables.", "val")
    val_max_images: int = setting("Validate on the first N images only; 0 = all.", 0)
    unseen_classes: List[str] = setting("Class names held out of training (ignored pixels, not in the "
                                        "label set), evaluated as unseen.", factory=list)
    crop_size: int = setting("Square training crop in pixels (a multiple of the patch size).", 128)
    scale_range: List[float] = setting("Random rescale factors (low, high) before cropping.",
                                       factory=lambda: [0.75, 1.5])
    flip: bool = setting("Random horizontal flips.", True)
    jitter: float = setting("Brightness/contrast/saturation jitter strength in [0, 1).", 0.2)
    batch_size: int = setting("Images per forward pass.", 8)
    grad_accum: int = setting("Forward passes accumulated per optimizer step.", 1)
    epochs: int = setting("Training epochs (ignored when max_steps > 0).", 10)
    max_steps: int = setting("Optimizer steps in total; 0 = epochs x steps per epoch.", 0)
    optimizer: str = setting("sgd | adamw.", "adamw")
    backbone_lr: float = setting("Learning rate of the ViT backbone (image_parameters).", 1e-3)
    decoder_lr: float = setting("Learning rate of the reassemble stages and decoder (decoder_parameters).", 3e-3)
    text_lr: float = setting("Learning rate of the text tower and contrast temperature (objective vilseg; "
                             "objective lseg keeps the text tower frozen).", 1e-3)
    momentum: float = setting("SGD momentum.", 0.9)
    weight_decay: float = setting("Weight decay.", 1e-4)
    lr_power: float = setting("Poly schedule: lr x (1 - step/total)^power.", 0.9)
    warmup_steps: int = setting("Linear warm-up steps before the poly decay.", 0)
    workers: int = setting("DataLoader worker processes (0 = load in the main process).", 0)
    threads: int = setting("CPU threads of torch (torch.set_num_threads); 0 = torch's default. "
                           "1 is much faster on a busy machine.", 0)
    seed: int = setting("Seed of initialization, data order and augmentation.", 0)
    device: str = setting("auto | cpu | cuda | cuda:N.", "auto")
    precision: str = setting("fp32 | bf16 | fp16: autocast (fp16 with GradScaler) on CUDA; "
                             "the CPU always trains in fp32.", "fp32")
    progress: bool = setting("Show a tqdm progress bar.", True)
    vilseg: VilSegTrainConfig = setting("ViL-Seg objective settings (objective vilseg).",
                                        factory=VilSegTrainConfig)
    model: TrainModelConfig = setting("The model (an inference SegmenterConfig; see model.*).",
                                      factory=TrainModelConfig)

    @classmethod
    def from_yaml(cls, path) -> "TrainConfig":
        """The file's training configuration (:func:`lseg_ros.config.load_yaml_config`); its paths
        stay relative to the working directory, as lseg-train has always read them."""
        return load_yaml_config(cls, path, relative_to_file=False)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> "TrainConfig":
        checks = [
            (self.crop_size > 0, "crop_size", "a positive integer"),
            (len(self.scale_range) == 2 and 0 < self.scale_range[0] <= self.scale_range[1], "scale_range",
             "two factors 0 < low <= high"),
            (0 <= self.jitter < 1, "jitter", "a value in [0, 1)"),
            (self.batch_size >= 1, "batch_size", ">= 1"),
            (self.grad_accum >= 1, "grad_accum", ">= 1"),
            (self.epochs >= 1 or self.max_steps >= 1, "epochs", ">= 1 (or max_steps >= 1)"),
            (self.max_steps >= 0, "max_steps", ">= 0"),
            (self.optimizer in ("sgd", "adamw"), "optimizer", "sgd, adamw"),
            (self.backbone_lr >= 0 and self.decoder_lr >= 0, "backbone_lr/decoder_lr", ">= 0"),
            (self.weight_decay >= 0, "weight_decay", ">= 0"),
            (self.warmup_steps >= 0, "warmup_steps", ">= 0"),
            (self.workers >= 0, "workers", ">= 0"),
            (self.threads >= 0, "threads", ">= 0"),
            (self.precision in ("fp32", "bf16", "fp16"), "precision", "fp32, bf16, fp16"),
            (self.objective in ("lseg", "vilseg"), "objective", "lseg, vilseg"),
            (self.objective != "vilseg" or self.model.backend == "vilseg", "objective/model.backend",
             "objective vilseg with model.backend vilseg"),
            (self.text_lr >= 0, "text_lr", ">= 0"),
            (min(self.vilseg.cross_modal_weight, self.vilseg.vision_weight, self.vilseg.cluster_weight) >= 0,
             "vilseg.*_weight", ">= 0"),
            (self.vilseg.cluster_entropy > 0, "vilseg.cluster_entropy", "> 0"),
            (self.vilseg.local_crops >= 0, "vilseg.local_crops", ">= 0"),
            (len(self.vilseg.local_scale) == 2 and 0 < self.vilseg.local_scale[0] <= self.vilseg.local_scale[1] <= 1,
             "vilseg.local_scale", "two fractions 0 < low <= high <= 1"),
            (self.vilseg.vision_temperature > 0, "vilseg.vision_temperature", "> 0"),
            (self.vilseg.pooling in ("mean", "clusters"), "vilseg.pooling", "mean, clusters"),
            (len(self.vilseg.image_size) == 2 and min(self.vilseg.image_size) > 0, "vilseg.image_size",
             "(height, width), both > 0"),
        ]
        check_values(self, checks, "training config value")
        self.model.validate()
        return self


class PolySchedule:
    """LR factor: linear warm-up, then (1 - step/total)^power (a class, so LambdaLR's
    state_dict stores its plain attributes)."""

    def __init__(self, total_steps: int, power: float, warmup_steps: int = 0) -> None:
        self.total_steps, self.power, self.warmup_steps = int(total_steps), float(power), int(warmup_steps)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        return max(0.0, 1.0 - step / max(1, self.total_steps)) ** self.power


def per_class_bce(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """CAT-Seg's loss (cat_seg_model.py) for a backend with a learned label head: binary
    cross-entropy of every label's logit [B, N, H, W] against the one-hot target [B, H, W],
    averaged over all pixels and labels; an ignored pixel's target is all zeros, as CAT-Seg
    leaves it (``_targets[mask] = one_hot``)."""
    one_hot = torch.zeros_like(logits)
    valid = targets != ignore_index
    index = torch.where(valid, targets, torch.zeros_like(targets)).unsqueeze(1)  # [B, 1, H, W]
    one_hot.scatter_(1, index, valid.unsqueeze(1).to(logits.dtype))
    return F.binary_cross_entropy_with_logits(logits, one_hot)


def rng_state() -> dict:
    """Every global RNG as tensors and plain Python (torch.load(weights_only=True) safe)."""
    name, keys, position, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(cached)],
            "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def checkpoint_paths(stem) -> tuple:
    """(weights .safetensors, .train_state.pt) of ``<out>/epoch_NNN`` (either file name works
    too), or of the last complete epoch when ``stem`` is a run folder."""
    if Path(stem).is_dir():
        stem = last_complete_epoch(stem)
    stem = str(stem)
    for suffix in (".safetensors", ".train_state.pt"):
        if stem.endswith(suffix):
            stem = stem[:-len(suffix)]
    return Path(stem + ".safetensors"), Path(stem + ".train_state.pt")


def last_complete_epoch(run: str | Path) -> Path:
    """``<run>/epoch_NNN`` of the highest epoch with both its weights and its training state
    (the state is renamed into place last, so its presence marks a complete epoch)."""
    epochs = sorted((int(match.group(1)), path) for path in Path(run).glob("epoch_*.train_state.pt")
                    if (match := re.fullmatch(r"epoch_(\d+)\.train_state\.pt", path.name)))
    for _, state_path in reversed(epochs):
        stem = state_path.with_name(state_path.name[:-len(".train_state.pt")])
        if stem.with_suffix(".safetensors").is_file():
            return stem
    raise FileNotFoundError(f"no complete epoch in {str(run)!r} (an epoch_NNN.safetensors with its "
                            "epoch_NNN.train_state.pt); --resume takes a run folder or <out>/epoch_NNN")


class Trainer:
    """Builds data, model and optimizer from a TrainConfig; ``fit()`` trains."""

    def __init__(self, config: TrainConfig, resume: Optional[str] = None) -> None:
        self.config = config.validate()
        self.out = Path(config.out)
        self.device = resolve_device(config.device)
        amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.precision)
        self.amp_dtype = amp if self.device.type == "cuda" else None
        if amp is not None and self.amp_dtype is None:
            print(f"lseg-train: precision {config.precision} needs CUDA; training in fp32", file=sys.stderr)
        if config.threads:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        random.seed(config.seed)
        np.random.seed(config.seed)

        self.vilseg = config.objective == "vilseg"
        val_root = config.val_data_root or ("" if self.vilseg else config.data_root)
        self.val_set = build_dataset(config.dataset, val_root, config.val_split) \
            if config.val_split and val_root else None
        if self.vilseg:  # captions only: the label set is the validation dataset's class names
            split = config.train_split if (Path(config.data_root) / "splits" / f"{config.train_split}.txt").is_file() \
                else None
            self.train_set = read_caption_dataset(config.data_root, split, CaptionImageTransform(
                config.vilseg.image_size), seed=config.seed)
            self.ignore_index = self.val_set.ignore_index if self.val_set is not None else 255
            self.class_names = list(self.val_set.class_names) if self.val_set is not None \
                else list(config.model.labels)
        else:
            self.train_set = build_dataset(config.dataset, config.data_root, config.train_split)
            self.ignore_index = self.train_set.ignore_index
            self.train_set.transform = TrainTransform(config.crop_size, config.scale_range, config.flip,
                                                      config.jitter, config.seed, self.ignore_index)
            self.class_names = list(self.train_set.class_names)
        unseen = set(class_indices(config.unseen_classes, self.class_names))
        seen = [i for i in range(len(self.class_names)) if i not in unseen]
        #: the training label set: the dataset's class names without the unseen ones
        self.train_label_names = [self.class_names[i] for i in seen]
        self.target_lut = torch.full((len(self.class_names),), self.ignore_index, dtype=torch.long)
        self.target_lut[seen] = torch.arange(len(seen))

        weights_path, state_path = checkpoint_paths(resume) if resume else (None, None)
        model_config = dataclasses.replace(config.model, device=str(self.device), precision="fp32", labels=[])
        if weights_path is not None:
            model_config.pretrained = str(weights_path)
        self.segmenter = Segmenter(model_config)
        self.backend = self.segmenter.backend
        if not self.backend.trainable:
            raise ValueError(f"backend {config.model.backend!r} has no trainable image/decoder parameters; "
                             "accepted for training: lseg, lmseg, vilseg")
        name, value = ("vilseg.image_size", list(config.vilseg.image_size)) if self.vilseg \
            else ("crop_size", config.crop_size)
        if any(size % self.backend.input_multiple for size in (value if self.vilseg else [value])):
            raise ValueError(f"{name} {value} must be a multiple of the patch size {self.backend.input_multiple}")
        image_params, decoder_params = list(self.backend.image_parameters()), list(self.backend.decoder_parameters())
        text_params = list(self.backend.text_parameters()) if self.vilseg else []
        for parameter in image_params + decoder_params + text_params:
            parameter.requires_grad_(True)
        if self.vilseg:
            settings = config.vilseg
            self.objective = VilSegObjective(
                self.backend.net, self.backend.image_mean, self.backend.image_std,
                cross_modal_weight=settings.cross_modal_weight, vision_weight=settings.vision_weight,
                cluster_weight=settings.cluster_weight, cluster_entropy=settings.cluster_entropy,
                local_crops=settings.local_crops, local_scale=settings.local_scale,
                vision_temperature=settings.vision_temperature, jitter=config.jitter, flip=config.flip,
                pooling=settings.pooling)
        else:
            self.backend.freeze_text()
            # [N, D] normalized, computed once with the frozen text tower (cloned out of inference mode);
            # with attribute_prompts on, the prompt bank's descriptions as the segmenter uses them
            descriptions = self.segmenter.bank_descriptions(self.train_label_names,
                                                            [[] for _ in self.train_label_names])
            self.label_embeddings = self.segmenter.label_encoder.encode(self.train_label_names, descriptions).clone()

        self.batches_per_epoch = len(self.train_set) // config.batch_size
        self.steps_per_epoch = self.batches_per_epoch // config.grad_accum
        if self.steps_per_epoch < 1:
            raise ValueError(f"{len(self.train_set)} training images give no full step of batch_size "
                             f"{config.batch_size} x grad_accum {config.grad_accum}")
        self.total_steps = config.max_steps or config.epochs * self.steps_per_epoch
        groups = [dict(params=image_params, lr=config.backbone_lr, name="backbone"),
                  dict(params=decoder_params, lr=config.decoder_lr, name="decoder")]
        if text_params:
            groups.append(dict(params=text_params, lr=config.text_lr, name="text"))
        if config.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(groups, lr=config.decoder_lr, momentum=config.momentum,
                                             weight_decay=config.weight_decay)
        else:
            self.optimizer = torch.optim.AdamW(groups, lr=config.decoder_lr, weight_decay=config.weight_decay)
        self.schedule = PolySchedule(self.total_steps, config.lr_power, config.warmup_steps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.schedule)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.step, self.epoch, self.next_batch, self.elapsed = 0, 1, 0, 0.0
        #: mean training loss of every optimizer step of this process
        self.step_losses: List[float] = []
        self._resumed_row: Optional[dict] = None  # the metrics row saved with the resumed checkpoint
        if state_path is not None:
            self._load_state(state_path)

    # ------------------------------------------------------------- one step
    def training_targets(self, mask: torch.Tensor) -> torch.Tensor:
        """Dataset class indices -> training label indices; unseen classes -> ignore_index."""
        targets = torch.full_like(mask, self.ignore_index)
        valid = mask != self.ignore_index
        targets[valid] = self.target_lut.to(mask.device)[mask[valid]]
        return targets

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Training logits [B, N, H, W] for images [B, 3, H, W] in [0, 1]: normalize, then the
        engine's logits path (Segmenter.input_logits: image side, classify, the backend's own
        upsampling (LSeg: x2, align_corners=True, as upstream trains), bilinear to the image size)."""
        mean = torch.tensor(self.backend.image_mean, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(self.backend.image_std, device=images.device).view(1, 3, 1, 1)
        model_input = (images - mean) / std
        return self.segmenter.input_logits(model_input, self.label_embeddings)  # [B, N, H, W]

    def loss(self, batch: dict) -> torch.Tensor:
        if self.vilseg:
            return self.caption_loss(batch)
        images = batch["image"].to(self.device, non_blocking=True)  # [B, 3, H, W]
        targets = self.training_targets(batch["mask"].to(self.device, non_blocking=True))  # [B, H, W]
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            logits = self.logits(images)  # [B, N, H, W]
        if self.backend.label_head:
            return per_class_bce(logits.float(), targets, self.ignore_index)
        return F.cross_entropy(logits.float(), targets, ignore_index=self.ignore_index)

    def caption_loss(self, batch: dict) -> torch.Tensor:
        """ViL-Seg's loss on images [B, 3, H, W] in [0, 1] and one caption per image."""
        images = batch["image"].to(self.device, non_blocking=True)
        token_ids = self.backend.tokenize(batch["caption"]).to(self.device)
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            loss, self.loss_terms = self.objective(images, token_ids)
        return loss.float()

    # ---------------------------------------------------------------- loop
    def epoch_order(self, epoch: int) -> List[int]:
        """The sample order of ``epoch`` (seeded by seed and epoch), whole steps only."""
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.train_set), generator=generator).tolist()
        return order[:self.steps_per_epoch * self.config.grad_accum * self.config.batch_size]

    def fit(self) -> List[dict]:
        """Train to total_steps; returns the metrics rows of this process."""
        from torch.utils.data import DataLoader
        from tqdm import tqdm

        config = self.config
        self.out.mkdir(parents=True, exist_ok=True)
        atomic.remove_stale_temporaries(self.out)  # a killed save's .epoch_NNN.*.tmp files
        atomic.write_text(self.out / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
        if self._resumed_row is not None:  # killed after the checkpoint, before its metrics row
            self._append_metrics(self._resumed_row, only_if_missing=True)
        self._started = time.perf_counter() - self.elapsed
        bar = tqdm(total=self.total_steps, initial=self.step, unit="step", desc="lseg-train",
                   disable=not config.progress, dynamic_ncols=True)
        rows = []
        self.backend.train()
        while self.step < self.total_steps:
            epoch, first_batch = self.epoch, self.next_batch
            self.train_set.set_epoch(epoch)
            order = self.epoch_order(epoch)[first_batch * config.batch_size:]
            loader = DataLoader(self.train_set, batch_size=config.batch_size, sampler=order,
                                num_workers=config.workers, drop_last=True,
                                pin_memory=self.device.type == "cuda",
                                collate_fn=collate_captions if self.vilseg else None)
            epoch_losses, accumulated = [], []
            epoch_terms: List[Dict[str, float]] = []  # objective vilseg: each loss term per batch
            batch_index = first_batch
            for batch in loader:
                loss = self.loss(batch)
                self.scaler.scale(loss / config.grad_accum).backward()
                accumulated.append(loss.item())
                if self.vilseg:
                    epoch_terms.append(self.loss_terms)
                batch_index += 1
                if len(accumulated) < config.grad_accum:
                    continue
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
                self.scheduler.step()
                self.step += 1
                step_loss = float(np.mean(accumulated))
                self.step_losses.append(step_loss)
                epoch_losses.append(step_loss)
                accumulated = []
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{step_loss:.4f}")
                if self.step >= self.total_steps:
                    break
            finished_epoch = batch_index >= self.steps_per_epoch * config.grad_accum
            self.epoch, self.next_batch = (epoch + 1, 0) if finished_epoch else (epoch, batch_index)
            rows.append(self._end_of_epoch(epoch, epoch_losses, bar, epoch_terms))
        bar.close()
        return rows

    def _end_of_epoch(self, epoch: int, losses: List[float], bar,
                      terms: Optional[List[Dict[str, float]]] = None) -> dict:
        validation = self.validate()
        self.backend.train()
        row = {"epoch": epoch, "step": self.step, "train_loss": float(np.mean(losses)) if losses else math.nan}
        if self.vilseg:  # each term of ViL-Seg's loss, unweighted
            row.update({f"loss_{name}": float(np.mean([t.get(name, math.nan) for t in terms])) if terms else math.nan
                        for name in self.objective.weights})
        row.update({
               "val_miou": validation.get("miou", math.nan),
               "val_pixel_accuracy": validation.get("pixel_accuracy", math.nan)})
        if self.config.unseen_classes:
            row.update(val_miou_seen=validation.get("miou_seen", math.nan),
                       val_miou_unseen=validation.get("miou_unseen", math.nan))
        row.update({f"lr_{group['name']}": group["lr"] for group in self.optimizer.param_groups})
        self.elapsed = time.perf_counter() - self._started
        row["seconds"] = round(self.elapsed, 3)
        self.save_checkpoint(epoch, row)
        self._append_metrics(row)
        bar.write(f"epoch {epoch} step {self.step}: loss {row['train_loss']:.4f}, val mIoU {row['val_miou']:.4f}, "
                  f"pixel acc {row['val_pixel_accuracy']:.4f}, {row['seconds']:.0f} s")
        return row

    def validate(self) -> Dict[str, float]:
        """mIoU etc. on the val split through the engine's own inference path."""
        if self.val_set is None:
            return {}
        self.backend.eval()
        if self.vilseg:  # the text tower trains: label embeddings of earlier epochs are stale
            self.segmenter.label_encoder.clear()
        return evaluate_segmenter(self.segmenter, self.val_set, max_images=self.config.val_max_images,
                                  unseen=self.config.unseen_classes or None)

    # ---------------------------------------------------------- checkpoints
    def save_checkpoint(self, epoch: int, metrics_row: Optional[dict] = None) -> Path:
        """Weights, then training state, then model.yaml, each written whole or not at all."""
        from safetensors.torch import save_file

        weights_path, state_path = checkpoint_paths(self.out / f"epoch_{epoch:03d}")
        tensors = {key: value.detach().cpu().contiguous() for key, value in self.backend.net_state_dict().items()}
        with atomic.atomic_path(weights_path) as temporary:
            save_file(tensors, str(temporary))
        state = {"epoch": self.epoch, "next_batch": self.next_batch, "step": self.step,
                 "elapsed": self.elapsed, "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                 "rng": rng_state(), "metrics_row": metrics_row or {}}
        with atomic.atomic_path(state_path) as temporary:
            torch.save(state, temporary)
        bank = self.config.model.prompt_bank  # absolute: model.yaml's relative paths are relative to it
        inference = dataclasses.replace(self.config.model, pretrained=str(weights_path.resolve()),
                                        labels=list(self.class_names),
                                        prompt_bank=str(Path(bank).expanduser().resolve()) if bank else "")
        atomic.write_text(self.out / "model.yaml", yaml.safe_dump(dataclasses.asdict(inference), sort_keys=False))
        atomic.remove_stale_temporaries(self.out)
        return weights_path

    def _load_state(self, state_path: Path) -> None:
        if not state_path.is_file():
            raise FileNotFoundError(f"training state {state_path} does not exist; --resume takes "
                                    f"a run folder or <out>/epoch_NNN of a previous run")
        try:
            state = torch.load(state_path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict) or not {"optimizer", "scheduler", "step", "rng"} <= set(state):
                raise ValueError("not a training state written by lseg-train")
        except Exception as error:  # truncated, zero bytes, or not ours
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise ValueError(f"training state {str(state_path)!r} is damaged or incomplete ({first_line}); "
                             "resume from an earlier epoch or the run folder") from None
        self._resumed_row = state.get("metrics_row") or None
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.schedule.total_steps = self.total_steps  # the config may extend the run
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch, self.next_batch = state["step"], state["epoch"], state["next_batch"]
        self.elapsed = float(state["elapsed"])
        set_rng_state(state["rng"])

    def _append_metrics(self, row: dict, only_if_missing: bool = False) -> None:
        """Append ``row`` to metrics.csv (header first for a new file); never rewrites it."""
        path = self.out / "metrics.csv"
        fieldnames = list(row)
        if path.is_file() and path.stat().st_size:
            with open(path, newline="") as stream:
                reader = csv.DictReader(stream)
                fieldnames = list(reader.fieldnames or row)
                if only_if_missing and any(r.get("step") == str(row["step"]) for r in reader):
                    return
        else:
            atomic.append_line(path, ",".join(fieldnames))
        line = io.StringIO()
        csv.DictWriter(line, fieldnames=fieldnames, extrasaction="ignore", lineterminator="\n").writerow(row)
        atomic.append_line(path, line.getvalue())


# ------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lseg-train", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, help="TrainConfig YAML (a run's config.yaml works)")
    parser.add_argument("--resume", help="continue from <out>/epoch_NNN (its config.yaml is the default config)")
    add_config_arguments(parser, TrainConfig)
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    path = args.config
    if path is None and args.resume:
        candidate = checkpoint_paths(args.resume)[0].parent / "config.yaml"
        path = candidate if candidate.is_file() else None
    config = TrainConfig.from_yaml(path) if path else TrainConfig()
    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg:") and v is not None}
    return (with_overrides(config, overrides) if overrides else config).validate()


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
        if not config.data_root:
            raise ValueError("no dataset given; set --data_root (and --dataset)")
        trainer = Trainer(config, resume=args.resume)
    except (ValueError, OSError, WeightsError) as error:
        print(f"lseg-train: {error}", file=sys.stderr)
        return 2
    rows = trainer.fit()
    if rows:
        print(f"lseg-train: {trainer.step} steps, val mIoU {rows[-1]['val_miou']:.4f}; "
              f"checkpoints and metrics.csv in {trainer.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
