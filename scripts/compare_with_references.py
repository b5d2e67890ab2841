"""Compare lseg_ros with the papers' public code, stage by stage, on the same random weights.

    python scripts/compare_with_references.py --lang-seg PATH --naclip PATH --sclip PATH --clearclip PATH \
        --maskclip PATH --mmcv PATH

Each PATH is a checkout of isl-org/lang-seg, sinahmr/NACLIP, wangf3014/SCLIP,
mc-lan/ClearCLIP, chongzhou96/MaskCLIP or open-mmlab/mmcv (a work tree, or a git directory:
files are then read from HEAD; mmcv's from its tag v1.4.0, the last version MaskCLIP accepts).
Not part of the test suite (the references cannot be fetched there): run it when a model path or
the pipeline around it changes, and keep the figures in the issue notes. Only the pieces
under comparison are taken from the references (a class or a method, executed with stubs
for their mmseg / CUDA surroundings); nothing of theirs is imported into lseg_ros.

MaskCLIP is compared end to end (``--maskclip``, needs ``--mmcv`` and OpenCV): its weight
conversion, prompt engineering, test pipeline (mmcv's imrescale and imnormalize), mmseg ViT
(mmcv's MultiheadAttention, FFN and build_norm_layer), MaskClipHead and EncoderDecoder
inference are executed from the checkouts' files; only mmcv's registries, BaseModule, the
conv/activation/dropout builders and the ``clip`` package are stubs. The pixel agreement of
the masks is printed per image size and setting.

Prints one line per check: the largest absolute difference and whether outputs are equal.
"""
from __future__ import annotations

import argparse
import contextlib
import inspect
import io
import math
import re
import subprocess
import sys
import tempfile
import types
import warnings
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from torch import nn

from lseg_ros.config import DenseClipConfig, SegmenterConfig
from lseg_ros.data.datasets import load_class_names
from lseg_ros.models.dense_clip import build_dense_clip
from lseg_ros.models.lseg import LSegBackend, get_preset
from lseg_ros.preprocess import to_model_input
from lseg_ros.segmenter import Segmenter


def read(repo: Path, path: str, revision: str = "HEAD") -> str:
    if (repo / path).is_file():
        return (repo / path).read_text()
    return subprocess.run(["git", "-C", str(repo), "show", f"{revision}:{path}"], check=True, capture_output=True,
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


# --------------------------------------------------------------------------- MaskCLIP
MMCV_REVISION = "v1.4.0"  # MaskCLIP's requirements/mminstall.txt: mmcv-full>=1.3.1,<=1.4.0
MASKCLIP_SIZES = ((375, 500), (512, 683), (512, 1024))  # a VOC image, and two sizes its resize keeps


def class_source(source: str, name: str) -> str:
    """A top-level class of ``source``, up to the next top-level statement."""
    start = source.index(f"\nclass {name}(") + 1
    end = re.compile(r"\n(@|class |def )").search(source, start + 10)
    return source[start:end.start() if end else len(source)]


def run_script(source: str, name: str, argv: list, namespace: dict) -> dict:
    """Execute a reference script as ``__main__`` with ``argv``, its output swallowed."""
    namespace.update(__name__="__main__")
    with _patched(sys, "argv", [name, *argv]), contextlib.redirect_stdout(io.StringIO()):
        exec(compile(source, name, "exec"), namespace)
    return namespace


class _Registry:
    """mmcv's Registry, as far as the executed code uses it."""

    def __init__(self):
        self.modules = {}

    def register_module(self, name=None, force=False, module=None):
        if module is not None:
            self.modules[name or module.__name__] = module
            return module
        return lambda cls: self.modules.setdefault(name or cls.__name__, cls)

    def get(self, key):
        return self.modules.get(key)

    def __contains__(self, key):
        return key in self.modules


class _BaseModule(nn.Module):
    """mmcv.runner.BaseModule without its weight-init machinery (weights are loaded here)."""

    def __init__(self, init_cfg=None):
        super().__init__()
        self.init_cfg = init_cfg


class _ModuleList(nn.ModuleList):
    def __init__(self, modules=None, init_cfg=None):
        super().__init__(modules)


def _no_dropout(cfg):
    """mmcv's build_dropout for the inference configs here: every drop probability is 0."""
    assert cfg.get("drop_prob", 0.0) == 0.0, cfg
    return nn.Identity()


def mmcv_namespace(mmcv: Path) -> dict:
    """mmcv 1.4.0's MultiheadAttention, FFN, build_norm_layer, imrescale and imnormalize,
    executed from the checkout, with the stubs they need."""
    import cv2
    from torch.nn.modules.batchnorm import _BatchNorm
    from torch.nn.modules.instancenorm import _InstanceNorm
    from torch.nn.modules.utils import _pair

    namespace = {
        "torch": torch, "nn": nn, "F": F, "math": math, "np": np, "cv2": cv2, "warnings": warnings,
        "inspect": inspect, "numbers": __import__("numbers"), "BaseModule": _BaseModule, "ModuleList": _ModuleList,
        "Sequential": nn.Sequential, "Linear": nn.Linear, "deprecated_api_warning": lambda *a, **k: (lambda f: f),
        "build_dropout": _no_dropout, "build_activation_layer": lambda cfg: {"GELU": nn.GELU}[cfg["type"]](),
        "build_conv_layer": lambda cfg, *args, **kwargs: {"Conv2d": nn.Conv2d}[cfg["type"]](*args, **kwargs),
        "to_2tuple": _pair, "is_tuple_of": lambda seq, kind: all(isinstance(item, kind) for item in seq),
        "SyncBatchNorm": nn.SyncBatchNorm, "_BatchNorm": _BatchNorm, "_InstanceNorm": _InstanceNorm,
        "ATTENTION": _Registry(), "FEEDFORWARD_NETWORK": _Registry(), "NORM_LAYERS": _Registry(),
        "BACKBONES": _Registry(), "imread_backend": "cv2", "Image": None,  # Pillow: not the backend used
    }
    norm = read(mmcv, "mmcv/cnn/bricks/norm.py", MMCV_REVISION)
    exec(norm[norm.index("NORM_LAYERS.register_module('BN'"):norm.index("def is_norm(")], namespace)
    transformer = read(mmcv, "mmcv/cnn/bricks/transformer.py", MMCV_REVISION)
    exec(transformer[transformer.index("@ATTENTION.register_module()"):
                     transformer.index("@TRANSFORMER_LAYER.register_module()")], namespace)
    geometric = read(mmcv, "mmcv/image/geometric.py", MMCV_REVISION)
    exec(geometric[geometric.index("def _scale_size("):geometric.index("def imflip(")], namespace)
    photometric = read(mmcv, "mmcv/image/photometric.py", MMCV_REVISION)
    exec(photometric[photometric.index("def imnormalize("):photometric.index("def imdenormalize(")], namespace)
    return namespace


class MaskClipReference:
    """MaskCLIP's ViT-B/16 segmentor (configs/maskclip/maskclip_vit16_512x512_voc12aug_20.py)
    on the weights of an open_clip model, executed from the MaskCLIP and mmcv checkouts."""

    def __init__(self, repo: Path, mmcv: Path, state_dict: dict, visual: nn.Module, layer_norm_eps=None):
        self.repo = repo
        namespace = mmcv_namespace(mmcv)
        wrappers = read(repo, "mmseg/ops/wrappers.py")
        exec(wrappers[wrappers.index("def resize("):wrappers.index("class Upsample")], namespace)
        embed = read(repo, "mmseg/models/utils/embed.py")
        exec(embed[embed.index("class AdaptivePadding("):embed.index("class PatchMerging(")], namespace)
        vit = read(repo, "mmseg/models/backbones/vit.py")
        exec(vit[vit.index("class TransformerEncoderLayer("):], namespace)
        self.namespace = namespace
        configs = {}
        for path in ("configs/_base_/models/maskclip_vit16.py", "configs/_base_/datasets/pascal_voc12_aug_20.py"):
            exec(read(repo, path), configs)
        self.configs = configs
        converted = self.convert_weights(state_dict)
        backbone = dict(configs["model"]["backbone"])
        assert backbone.pop("type") == "VisionTransformer"
        width = visual.transformer.width  # the open_clip ViT's sizes
        backbone.update(embed_dims=width, num_layers=len(visual.transformer.resblocks),
                        num_heads=visual.transformer.resblocks[0].attn.num_heads, img_size=tuple(visual.image_size),
                        mlp_ratio=visual.transformer.resblocks[0].mlp.c_fc.out_features // width)
        if layer_norm_eps is not None:
            backbone["norm_cfg"] = dict(backbone["norm_cfg"], eps=layer_norm_eps)
        self.backbone = namespace["VisionTransformer"](**backbone)
        self.backbone.load_state_dict({key[len("backbone."):]: value
                                       for key, value in converted["backbone"]["state_dict"].items()})
        self.backbone.eval()
        self.head = self.build_head(converted["head"], width, visual.proj.shape[1])
        self.segmentor = self.build_segmentor()

    def convert_weights(self, state_dict: dict) -> dict:
        """tools/maskclip_utils/convert_clip_weights.py --model ViT16 (with and without --backbone)."""
        source = read(self.repo, "tools/maskclip_utils/convert_clip_weights.py")
        saved = {}
        clip_stub = types.SimpleNamespace(load=lambda name, device: (
            types.SimpleNamespace(state_dict=lambda: dict(state_dict)), None))
        with _patched(torch, "save", lambda obj, path: saved.__setitem__(path, obj)), \
                _patched_module("clip", clip_stub):
            run_script(source, "convert_clip_weights.py", ["--model", "ViT16", "--backbone"], {})
            run_script(source, "convert_clip_weights.py", ["--model", "ViT16"], {})
        return {"backbone": saved["pretrain/ViT16_clip_backbone.pth"], "head": saved["pretrain/ViT16_clip_weights.pth"]}

    def text_embeddings(self, clip_model: nn.Module, model_name: str):
        """(class names, [N, D] text embeddings) of tools/maskclip_utils/prompt_engineering.py
        --model ViT16 --class-set voc, run with ``clip_model``. ``encode_text`` is the trimmed
        forward (equal to the 77-token one: test_trimmed_text_encoding_equals_the_full_77_token_forward)."""
        from lseg_ros.models.clip_text import encode_text_trimmed

        source = read(self.repo, "tools/maskclip_utils/prompt_engineering.py")
        tokenizer = open_clip.get_tokenizer(model_name)
        model = types.SimpleNamespace(encode_text=lambda tokens: encode_text_trimmed(clip_model, tokens))
        clip_stub = types.SimpleNamespace(load=lambda name: (model, None), tokenize=lambda texts: tokenizer(texts))
        saved = {}
        with _patched(torch, "save", lambda obj, path: saved.__setitem__(path, obj)), \
                _patched(torch.Tensor, "cuda", lambda self, *a, **k: self), _patched_module("clip", clip_stub):
            namespace = run_script(source, "prompt_engineering.py", ["--model", "ViT16", "--class-set", "voc"], {})
        return namespace["voc_classes"], saved["pretrain/voc_ViT16_clip_text.pth"]

    def build_head(self, projections: dict, in_channels: int, text_channels: int) -> nn.Module:
        """MaskClipHead's forward, cls_seg, refine_output and load_visual_projs (and
        BaseDecodeHead's _transform_inputs and forward_test) on a module with the config's attributes."""
        namespace = {"torch": torch, "nn": nn, "F": F, "resize": self.namespace["resize"],
                     "print_log": lambda *a, **k: None, "get_root_logger": lambda: None}
        head_source = read(self.repo, "mmseg/models/decode_heads/maskclip_head.py")
        base_source = read(self.repo, "mmseg/models/decode_heads/decode_head.py")
        methods = {}
        for source, names in ((head_source, ("forward", "cls_seg", "refine_output", "load_visual_projs")),
                              (base_source, ("_transform_inputs", "forward_test"))):
            for name in names:
                exec(method_source(source, name), namespace)
                methods[name] = namespace[name]
        head = type("MaskClipHead", (nn.Module,), methods)()
        config = self.configs["model"]["decode_head"]
        head.vit, head.in_index, head.align_corners = config["vit"], config["in_index"], config["align_corners"]
        head.input_transform, head.ks_thresh, head.pd_thresh, head.attn_pooling = None, 0.0, 0.0, False
        head.proj = nn.Conv2d(in_channels, text_channels, 1, bias=False)
        head.visual_projs_path = "pretrain/ViT16_clip_weights.pth"
        with _patched(torch, "load", lambda path, map_location=None: projections):
            head.load_visual_projs()
        return head.eval()

    def build_segmentor(self):
        """EncoderDecoder's inference path (extract_feat ... simple_test), test_cfg mode 'whole'."""
        namespace = {"torch": torch, "F": F, "resize": self.namespace["resize"]}
        source = read(self.repo, "mmseg/models/segmentors/encoder_decoder.py")
        methods = {}
        for name in ("extract_feat", "_decode_head_forward_test", "encode_decode", "whole_inference", "inference",
                     "simple_test"):
            exec(method_source(source, name), namespace)
            methods[name] = namespace[name]
        segmentor = type("EncoderDecoder", (), methods)()
        segmentor.backbone, segmentor.decode_head, segmentor.with_neck = self.backbone, self.head, False
        segmentor.align_corners = self.head.align_corners
        segmentor.test_cfg = types.SimpleNamespace(**self.configs["model"]["test_cfg"])
        return segmentor

    def pipeline(self, rgb: np.ndarray, resized_rgb=None) -> tuple:
        """(image tensor [1, 3, h, w], img_metas) of the config's test_pipeline: Resize(keep_ratio)
        to img_scale with mmcv.imrescale (or ``resized_rgb`` given), Normalize(to_rgb) of the BGR image."""
        transforms = read(self.repo, "mmseg/datasets/pipelines/transforms.py")
        mmcv = types.SimpleNamespace(**{name: self.namespace[name] for name in ("imrescale", "imnormalize")})
        namespace = {"np": np, "mmcv": mmcv}
        exec(method_source(class_source(transforms, "Resize"), "_resize_img"), namespace)
        exec(method_source(class_source(transforms, "Normalize"), "__call__"), namespace)
        (aug,) = [step for step in self.configs["test_pipeline"] if step["type"] == "MultiScaleFlipAug"]
        results = {"img": np.ascontiguousarray(rgb[..., ::-1]), "scale": aug["img_scale"]}  # LoadImageFromFile: BGR
        if resized_rgb is None:
            namespace["_resize_img"](types.SimpleNamespace(keep_ratio=True), results)
        else:
            results["img"] = np.ascontiguousarray(resized_rgb[..., ::-1])
        norm = self.configs["img_norm_cfg"]
        normalize = types.SimpleNamespace(mean=np.array(norm["mean"], dtype=np.float32),
                                          std=np.array(norm["std"], dtype=np.float32), to_rgb=norm["to_rgb"])
        results = namespace["__call__"](normalize, results)
        image = torch.from_numpy(results["img"].transpose(2, 0, 1).copy())[None]  # ImageToTensor, Collect
        return image, [{"ori_shape": rgb.shape, "img_shape": results["img"].shape, "flip": False}]

    @torch.no_grad()
    def segment(self, rgb: np.ndarray, text: torch.Tensor, resized_rgb=None) -> tuple:
        """(mask [H, W], probabilities [N, H, W]) of simple_test at the image's size."""
        self.head.register_buffer("text_embeddings", text.float(), persistent=False)
        image, metas = self.pipeline(rgb, resized_rgb)
        probabilities = torch.from_numpy(self.segmentor.simple_test(image, metas, rescale=True, return_logit=True)[0])
        return probabilities.argmax(0), probabilities


def scene(height: int, width: int, seed: int) -> np.ndarray:
    """A synthetic RGB image: smooth colour regions (a 6x8 random field, bicubic) with noise."""
    rng = np.random.default_rng(seed)
    field = torch.from_numpy(rng.uniform(0, 255, (1, 3, 6, 8)).astype(np.float32))
    image = F.interpolate(field, size=(height, width), mode="bicubic", align_corners=False)[0].permute(1, 2, 0)
    image = image.numpy() + rng.normal(0, 8, (height, width, 3))
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def check_maskclip(repo: Path, mmcv: Path, model_name: str) -> None:
    """The maskclip profile vs MaskCLIP's own pipeline on the same random weights, end to end:
    mask agreement at the image size for VOC's 20 classes, per setting that differs."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    base_name = model_name[:-len("-quickgelu")] if model_name.endswith("-quickgelu") else model_name
    gelu = open_clip.create_model(base_name, pretrained=None).eval()  # MaskCLIP's ViT runs GELU
    state_dict = {key: value.contiguous() for key, value in gelu.state_dict().items()}
    quick = open_clip.create_model(base_name + "-quickgelu", pretrained=None).eval()
    quick.load_state_dict(state_dict)
    with tempfile.TemporaryDirectory() as folder:
        weights = str(Path(folder) / "random_clip.safetensors")
        save_file(state_dict, weights)
        # MaskCLIP as it runs: its mmseg ViT (GELU, LayerNorm eps 1e-6 from its config), OpenAI's
        # text tower as clip.load builds it (QuickGELU)
        reference = MaskClipReference(repo, mmcv, state_dict, gelu.visual)
        names, text_quick = reference.text_embeddings(quick, base_name)
        # clip.load() on CUDA keeps OpenAI's model in fp16 (LayerNorm in fp32), as open_clip's fp16 precision
        half = open_clip.create_model(base_name + "-quickgelu", pretrained=None, precision="fp16").eval()
        half.load_state_dict(state_dict)
        _, text_half = reference.text_embeddings(half, base_name)
        shipped_names = load_class_names("maskclip/voc20")
        print(f"lseg_ros maskclip/voc20 class names equal prompt_engineering.py's voc_classes: "
              f"{shipped_names == names}")

        def ours(**dense_clip):
            return Segmenter(SegmenterConfig.for_profile("maskclip", model=base_name + "-quickgelu", pretrained=weights,
                                                         device="cpu", labels=shipped_names, dense_clip=dense_clip))

        profile = ours()
        report("MaskCLIP text embeddings (prompt_engineering.py) vs the maskclip profile's",
               profile.label_set.label_embeddings, text_quick)
        settings = profile.config.dense_clip
        print(f"maskclip profile: model {profile.config.model}, dense_clip.partial_patches={settings.partial_patches}, "
              f"normalization={settings.normalization}, image_tower={settings.image_tower}, "
              f"positional_resize={settings.positional_resize}")
        variants = {
            "profile": profile,
            "partial_patches crop (before)": ours(partial_patches="crop"),
            "normalization clip (before)": ours(normalization="clip"),
            "image_tower clip (before: as trained)": ours(image_tower="clip"),
            "all three (before)": ours(partial_patches="crop", normalization="clip", image_tower="clip"),
        }
        for size in MASKCLIP_SIZES:
            image = scene(*size, seed=size[1])
            model_size = profile.model_input([image]).shape[-2:]
            resized = to_model_input([image], tuple(model_size), (0.0,) * 3, (1 / 255,) * 3, torch.device("cpu"),
                                     torch.float32, antialias=False, eight_bit=True)[0].permute(1, 2, 0)
            resized = resized.round().clamp(0, 255).to(torch.uint8).numpy()  # lseg_ros's resize of the image
            shared_resize, shared_probabilities = reference.segment(image, text_quick, resized)
            as_run, _ = reference.segment(image, text_quick)
            text_in_half, _ = reference.segment(image, text_half.float())
            label = f"MaskCLIP {size[0]}x{size[1]} (model input {model_size[0]}x{model_size[1]})"
            for name, segmenter in variants.items():
                result = segmenter.segment(image)
                mask = torch.from_numpy(result.mask.astype(np.int64))
                rows = [("same resized image", shared_resize)]
                if name == "profile":
                    report(f"{label}, profile vs MaskCLIP [same resized image]: probabilities",
                           torch.from_numpy(result.confidences), shared_probabilities)
                    rows += [("its OpenCV resize (mmcv)", as_run),
                             ("its OpenCV resize, text embeddings in fp16 as clip.load on CUDA", text_in_half)]
                for what, expected in rows:
                    agreement = float((mask == expected).float().mean())
                    print(f"{label}, {name} vs MaskCLIP as it runs [{what}]: pixel agreement {100 * agreement:.3f} %")


@contextlib.contextmanager
def _patched_module(name: str, module):
    """``import name`` gives ``module`` inside the block."""
    previous = sys.modules.get(name)
    sys.modules[name] = module
    try:
        yield
    finally:
        if previous is None:
            del sys.modules[name]
        else:
            sys.modules[name] = previous


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
    for name in ("lang-seg", "naclip", "sclip", "clearclip", "maskclip", "mmcv"):
        parser.add_argument(f"--{name}", type=Path, help=f"checkout of the {name} repository")
    parser.add_argument("--maskclip-model", default="ViT-B-16",
                        help="open_clip model (random weights) of the MaskCLIP comparison, e.g. lseg-test-tiny-ViT")
    args = parser.parse_args()
    if args.maskclip:
        if not args.mmcv:
            parser.error("--maskclip needs --mmcv (a checkout of open-mmlab/mmcv with the tag v1.4.0)")
        check_maskclip(args.maskclip, args.mmcv, args.maskclip_model)
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
