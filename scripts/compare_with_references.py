"""Compare lseg_ros with the papers' public code, stage by stage, on the same random weights.

    python scripts/compare_with_references.py --lang-seg PATH --naclip PATH --sclip PATH --clearclip PATH

Each PATH is a checkout of isl-org/lang-seg, sinahmr/NACLIP, wangf3014/SCLIP or
mc-lan/ClearCLIP (a work tree, or a git directory: files are then read from HEAD). Not part
of the test suite (the references cannot be fetched there): run it when a model path or
the pipeline around it changes, and keep the figures in the issue notes. Only the pieces
under comparison are taken from the references (a class or a method, executed with stubs
for their mmseg / CUDA surroundings); nothing of theirs is imported into lseg_ros.

Prints one line per check: the largest absolute difference and whether outputs are equal.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lseg_ros.config import DenseClipConfig, SegmenterConfig
from lseg_ros.models.dense_clip import build_dense_clip
from lseg_ros.models.lseg import LSegBackend, get_preset
from lseg_ros.preprocess import to_model_input
from lseg_ros.segmenter import Segmenter


def read(repo: Path, path: str) -> str:
    if (repo / path).is_file():
        return (repo / path).read_text()
    return subprocess.run(["git", "-C", str(repo), "show", f"HEAD:{path}"], check=True, capture_output=True,
                          text=True).stdout


def method_source(source: str, name: str) -> str:
    """A class's method (4-space indented) as a module-level function."""
    start = source.index(f"    def {name}(")
    end = re.compile(r"\n    (def |@)").search(source, start + 10)
    return "\n".join(line[4:] for line in source[start:end.start() if end else len(source)].splitlines())


def report(name: str, ours: torch.Tensor, reference: torch.Tensor) -> None:
    difference = float((ours.float() - reference.float()).abs().max())
    print(f"{name}: max |difference| {difference:.3g}{'  (equal)' if torch.equal(ours, reference) else ''}")


def check_lseg_head(repo: Path) -> None:
    source = read(repo, "modules/models/lseg_net.py")
    namespace = {"nn": nn, "torch": torch}
    exec(source[source.index("class depthwise_conv(nn.Module)"):source.index("class BaseModel")], namespace)
    for arch, cls in ((1, "bottleneck_block"), (2, "depthwise_block")):
        for depth in (0, 1, 3):
            torch.manual_seed(arch * 10 + depth)
            ours = LSegBackend(get_preset("lseg_tiny"), block_depth=depth, activation="lrelu", arch_option=arch)
            upstream = namespace[cls](activation="lrelu")
            upstream.load_state_dict({k[len("head_block."):]: v for k, v in ours.net.scratch.state_dict().items()
                                      if k.startswith("head_block.")})
            logits = torch.randn(2, 5, 16, 24) * 3
            with torch.no_grad():
                expected = logits
                for _ in range(depth - 1):  # LSeg.forward's loop
                    expected = upstream(expected)
                expected = upstream(expected, False)
                report(f"lang-seg arch_option {arch} block_depth {depth}", ours.refine_logits(logits), expected)


def check_positional_resize(repos: dict) -> None:
    for name, (repo, path, mode, patch) in repos.items():
        namespace = {"nn": nn, "math": math, "torch": torch}
        exec(method_source(read(repo, path), "interpolate_pos_encoding"), namespace)
        torch.manual_seed(0)
        backend = build_dense_clip(SegmenterConfig(model="lseg-test-tiny-ViT", pretrained="random",
                                                   dense_clip=DenseClipConfig(mode=mode)))
        table = backend.clip.visual.positional_embedding.detach()
        stub = types.SimpleNamespace(positional_embedding=table, patch_size=patch)
        for grid in ((9, 21), (28, 37), (21, 28)):
            expected = namespace["interpolate_pos_encoding"](stub, torch.zeros(1, 1 + grid[0] * grid[1], 64),
                                                             grid[0] * 16, grid[1] * 16)[0]
            report(f"{name} positional embedding {grid}", backend.positional_embedding(grid), expected)


def check_sliding_window(repo: Path) -> None:
    """NACLIP's forward_slide (window tiling and merging) around our per-window cosine logits."""
    namespace = {"nn": nn, "torch": torch}
    exec(method_source(read(repo, "naclip.py"), "forward_slide"), namespace)
    torch.manual_seed(0)
    segmenter = Segmenter(SegmenterConfig(model="lseg-test-tiny-ViT", pretrained="random", device="cpu",
                                          labels=["wall", "floor", "door"],
                                          dense_clip=DenseClipConfig(window=48, stride=32)))
    text = segmenter.label_set.label_embeddings

    def forward_feature(img):
        features = F.normalize(segmenter.backend.dense_embeddings(img), dim=1)
        logits = torch.einsum("bdhw,nd->bnhw", features, text)
        return F.interpolate(logits, size=img.shape[-2:], mode="bilinear", align_corners=False)

    stub = types.SimpleNamespace(num_queries=3, forward_feature=forward_feature)
    for size in ((64, 128), (80, 112), (48, 200)):
        x = torch.randn(1, 3, *size)
        with torch.no_grad():
            expected = namespace["forward_slide"](stub, x, stride=32, crop_size=48) * segmenter.logit_scale
            ours = segmenter.sliding_window_logits(x, text, 48, 32)
        report(f"NACLIP forward_slide {size}", ours, expected)


def check_pamr(repo: Path) -> None:
    """NACLIP's PAMR module (pamr.py) vs lseg_ros.postprocess.pamr, as NACLIP calls it."""
    from lseg_ros.postprocess import pamr

    namespace = {}
    exec(compile(read(repo, "pamr.py"), "pamr.py", "exec"), namespace)
    torch.manual_seed(0)
    image, logits = torch.randn(1, 3, 60, 90), torch.randn(1, 7, 60, 90)
    with torch.no_grad():
        expected = namespace["PAMR"](10, dilations=(8, 16))(image, logits)
    report("NACLIP PAMR 10 x (8, 16)", pamr(image, logits, 10, [8, 16]), expected)


def check_sclip_postprocess(repo: Path) -> None:
    """SCLIP's postprocess_result (synonyms, area filter, prob_thd) vs the segmenter's label rules."""
    source = read(repo, "clip_segmentor.py")
    namespace = {"nn": nn, "torch": torch}
    exec(method_source(source, "postprocess_result"), namespace)

    class Sample:
        def set_data(self, data):
            self.data = data

    labels = ["background; sky; wall", "person; man; woman", "door", "chair; stool"]
    for area, threshold in ((None, 0.0), (0.1, 0.1), (0.3, 0.2)):
        torch.manual_seed(1)
        segmenter = Segmenter(SegmenterConfig(model="lseg-test-tiny-ViT", pretrained="random", device="cpu",
                                              short_side=64, max_long_side=96, labels=labels, logit_scale=65.0,
                                              threshold=threshold, threshold_label=0, area_threshold=area or 0.0))
        image = np.random.default_rng(5).integers(0, 256, (60, 90, 3), dtype=np.uint8)
        x = segmenter.model_input([image])
        with torch.no_grad():
            cosine = segmenter.classify(segmenter.backend(x), segmenter.label_set.label_embeddings) / 65.0
            cosine = F.interpolate(cosine, size=(60, 90), mode="bilinear", align_corners=False)
        stub = types.SimpleNamespace(logit_scale=65.0, query_idx=segmenter.label_set.name_groups, prob_thd=threshold,
                                     area_thd=area)
        sample = Sample()
        namespace["PixelData"] = lambda **kw: kw["data"]
        namespace["postprocess_result"](stub, cosine, [sample])
        result = segmenter.segment(image)
        report(f"SCLIP postprocess area {area} prob_thd {threshold}: confidences",
               torch.from_numpy(result.confidences), sample.data["seg_logits"])
        agreement = (torch.from_numpy(result.mask.astype(np.int64)) == sample.data["pred_sem_seg"][0]).float().mean()
        print(f"SCLIP postprocess area {area} prob_thd {threshold}: mask agreement {float(agreement):.6f}")


def check_lseg_multiscale(repo: Path) -> None:
    from lseg_ros.evaluate import lseg_multiscale_logits

    namespace = {}
    exec(compile(read(repo, "additional_utils/encoding_models.py"), "encoding_models.py", "exec"), namespace)
    torch.manual_seed(0)
    segmenter = Segmenter(SegmenterConfig(backend="lseg", model="lseg_tiny", pretrained="random", device="cpu",
                                          labels=["wall", "floor", "a chair", "sky"]))
    text = segmenter.backend.encode_text(segmenter.backend.tokenize(segmenter.labels))

    class Module:
        mean, std, _up_kwargs = [0.5] * 3, [0.5] * 3, {"mode": "bilinear", "align_corners": True}

        def evaluate(self, x):
            return segmenter.backend.net.label_logits(x, text)

    with contextlib.ExitStack() as stack:  # the upstream code calls .cuda() and device_of()
        stack.enter_context(_patched(torch.Tensor, "cuda", lambda self, *a, **k: self))
        stack.enter_context(_patched(torch.cuda, "device_of", lambda *a, **k: contextlib.nullcontext()))
        for size in ((75, 100), (130, 90), (60, 61)):
            image = np.random.default_rng(size[0]).integers(0, 256, (*size, 3), dtype=np.uint8)
            x = to_model_input([image], size, (0.5,) * 3, (0.5,) * 3, torch.device("cpu"), torch.float32)
            this = types.SimpleNamespace(nclass=4, base_size=104, crop_size=96, flip=True, module=Module(),
                                         scales=[0.5, 0.75, 1.0, 1.25, 1.5, 1.75])
            with torch.no_grad():
                expected = namespace["MultiEvalModule"].forward(this, x)[0]
            ours = lseg_multiscale_logits(segmenter, image, flip=True, base_size=104, crop_size=96)
            report(f"lang-seg MultiEvalModule {size}", ours, expected)


@contextlib.contextmanager
def _patched(owner, name, value):
    old = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, old)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name in ("lang-seg", "naclip", "sclip", "clearclip"):
        parser.add_argument(f"--{name}", type=Path, help=f"checkout of the {name} repository")
    args = parser.parse_args()
    if args.lang_seg:
        check_lseg_head(args.lang_seg)
        check_lseg_multiscale(args.lang_seg)
    repos = {}
    if args.naclip:
        repos["NACLIP"] = (args.naclip, "clip/model.py", "naclip", 16)
        check_sliding_window(args.naclip)
        check_pamr(args.naclip)
    if args.sclip:
        repos["SCLIP"] = (args.sclip, "clip/model.py", "sclip", 16)
        check_sclip_postprocess(args.sclip)
    if args.clearclip:
        repos["ClearCLIP"] = (args.clearclip, "open_clip/transformer.py", "clearclip", (16, 16))
    check_positional_resize(repos)
    return 0


if __name__ == "__main__":
    sys.exit(main())
