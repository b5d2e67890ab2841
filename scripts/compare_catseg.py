"""Compare lseg_ros's CostAggregator with CAT-Seg's own Aggregator, stage by stage, on the same
random weights and inputs.

    pip install --target /tmp/refs/pylib einops      # CAT-Seg's model.py needs einops; not the venv
    python scripts/compare_catseg.py --catseg PATH [--pylib /tmp/refs/pylib] \
        [--write-reference test/data/catseg_reference.safetensors]

PATH is a checkout of KU-CVLAB/CAT-Seg (a work tree, or a git directory: files are then read from
HEAD). Not part of the test suite (the reference cannot be fetched there): run it when
lseg_ros/models/cost_aggregation.py changes. CAT-Seg's ``cat_seg/modeling/transformer/model.py``
is executed from the checkout as it is (it needs only einops and timm; none of detectron2);
nothing of it is imported into lseg_ros.

Two configurations: ``tiny`` (hidden 16, 8x8 grid, window 4, pad_len 4; once with 3 classes, the
padding path, and once with 6, the top-k class selection) and CAT-Seg's ViT-B/16 config
(configs/vitb_384.yaml: 2 layers, 24x24 grid, window 12, pooling 2x2, pad_len 256; 8 classes).
Every parameter is set to random values (LayerNorms and padding tokens too), loaded into ours
strictly in CAT-Seg's key layout. Prints one line per stage: the largest absolute difference;
then, for both released configs (vitb_384, vitl_336), whether our state_dict keys and shapes are
CAT-Seg's.

``--write-reference`` writes the tiny configuration's weights (CAT-Seg's keys, prefix ``w.``),
inputs (``in.``; text features also for 6 classes) and CAT-Seg's outputs (``out.T3.*`` every stage,
``out.T6.logits``) plus, in the metadata, the tiny config
and the key shapes of CAT-Seg's ViT-B/16 checkpoint parts; test/test_cost_aggregation.py checks
against it.
"""
from __future__ import annotations

import argparse
import inspect
import json
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

from lseg_ros.models.cost_aggregation import CATSEG_CONFIGS, CostAggregator

TINY = dict(text_guidance_dim=32, text_guidance_proj_dim=8, appearance_guidance_dim=32,
            appearance_guidance_proj_dim=8, decoder_dims=(16, 16), decoder_guidance_dims=(8, 4),
            decoder_guidance_proj_dims=(4, 4), num_layers=2, nheads=4, hidden_dim=16, pooling_size=(2, 2),
            feature_resolution=(8, 8), window_size=4, prompt_channel=2, pad_len=4)


def read(repo: Path, path: str, revision: str = "HEAD") -> str:
    if (repo / path).is_file():
        return (repo / path).read_text()
    return subprocess.run(["git", "-C", str(repo), "show", f"{revision}:{path}"], check=True, capture_output=True,
                          text=True).stdout


def catseg_namespace(repo: Path) -> dict:
    """CAT-Seg's model.py executed as it is (its Aggregator and blocks)."""
    namespace = {"__name__": "catseg_model"}
    exec(compile(read(repo, "cat_seg/modeling/transformer/model.py"), "cat_seg/model.py", "exec"), namespace)
    return namespace


#: a small OpenAI-layout CLIP for the dense-feature comparison: 3 blocks of width 128 (2 heads of
#: 64, as CAT-Seg's CLIP derives heads = width // 64), patch 16, native grid 8x8, run at 12x12
CLIP_TINY = dict(embed_dim=32, image_resolution=128, vision_layers=3, vision_width=128, vision_patch_size=16,
                 context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=1,
                 transformer_layers=1)
CLIP_INPUT = 192
CLIP_LAYERS = (0, 1)  # guidance layers (CAT-Seg: 3, 7 of ViT-B/16's 12 blocks)


def catseg_clip_namespace(repo: Path) -> dict:
    """CAT-Seg's third_party/model_vpt.py executed as it is (its CLIP with ``dense=True``)."""
    namespace = {"__name__": "catseg_model_vpt"}
    exec(compile(read(repo, "cat_seg/third_party/model_vpt.py"), "cat_seg/model_vpt.py", "exec"), namespace)
    return namespace


def randomize_clip(module: nn.Module, seed: int) -> None:
    """Every CLIP parameter random: LayerNorm weights around 1, the rest scaled by fan-in; each
    value a float16 number (the reference file stores the weights in float16, exactly)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            fan_in = p[0].numel() if p.dim() > 1 else p.shape[-1] if "embedding" in name else 1
            around = 1.0 if (".ln_" in name or name.startswith("ln_")) and name.endswith("weight") else 0.0
            value = around + torch.randn(p.shape, generator=generator) / fan_in ** 0.5 * (0.2 if around else 1.0)
            p.copy_(value.half().float())


def open_clip_tiny(state: dict) -> nn.Module:
    """open_clip's CLIP of CLIP_TINY's shape (QuickGELU, as OpenAI's) with ``state`` loaded strictly."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    c = CLIP_TINY
    model = CLIP(c["embed_dim"], CLIPVisionCfg(layers=c["vision_layers"], width=c["vision_width"], head_width=64,
                                               patch_size=c["vision_patch_size"], image_size=c["image_resolution"]),
                 CLIPTextCfg(context_length=c["context_length"], vocab_size=c["vocab_size"],
                             width=c["transformer_width"], heads=c["transformer_heads"], layers=c["transformer_layers"]),
                 quick_gelu=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


def compare_clip(repo: Path, seed: int = 3) -> tuple:
    """CAT-Seg's CLIP (model_vpt.py: q/k/v weights apart, ``encode_image(dense=True)``, hooks on
    the guidance blocks) against open_clip's with the same weights through
    ``catseg_clip_to_openai`` and DenseClipBackend(mode="catseg").dense_features. Returns
    (CAT-Seg's visual state dict, input, CAT-Seg's outputs)."""
    from lseg_ros.models.cost_aggregation import catseg_clip_to_openai
    from lseg_ros.models.dense_clip import DenseClipBackend

    namespace = catseg_clip_namespace(repo)
    theirs = namespace["CLIP"](**CLIP_TINY).eval()
    randomize_clip(theirs, seed)
    state = {k: v for k, v in theirs.state_dict().items()}
    ours = DenseClipBackend(open_clip_tiny(catseg_clip_to_openai(state)), "ViT-B-16", mode="catseg")
    x = torch.randn(2, 3, CLIP_INPUT, CLIP_INPUT, generator=torch.Generator().manual_seed(seed)).half().float()
    grid = CLIP_INPUT // CLIP_TINY["vision_patch_size"]
    layers = []
    hooks = [theirs.visual.transformer.resblocks[i].register_forward_hook(lambda m, _, o: layers.append(o))
             for i in CLIP_LAYERS]
    tokens = torch.randint(1, 49407, (3, 77), generator=torch.Generator().manual_seed(seed))
    tokens[:, 9] = 49407  # the end-of-text token (the highest id) ends each prompt
    with torch.no_grad():
        dense = theirs.encode_image(x, dense=True)  # [B, 1 + h*w, D]
        expected = {"embeddings": dense[:, 1:].transpose(1, 2).reshape(2, -1, grid, grid)}
        for i, out in zip(CLIP_LAYERS, layers):  # LND, class token first
            expected[f"layer{i}"] = out[1:].permute(1, 2, 0).reshape(2, -1, grid, grid)
        expected["text"] = theirs.encode_text(tokens)
        embeddings, got_layers = ours.dense_features(x, CLIP_LAYERS)
        got = {"embeddings": embeddings, **{f"layer{i}": g for i, g in zip(CLIP_LAYERS, got_layers)},
               "text": ours.encode_text(tokens)}
    for hook in hooks:
        hook.remove()
    worst = 0.0
    for stage in expected:
        difference = float((got[stage] - expected[stage]).abs().max())
        worst = max(worst, difference)
        print(f"clip {stage}: max |difference| {difference:.3g} (max |value| {float(expected[stage].abs().max()):.3g})")
    print(f"clip: worst {worst:.3g}")
    visual = {k: v for k, v in state.items() if k.startswith("visual.")}
    return visual, x, expected


def randomize(module: nn.Module, seed: int) -> None:
    """Every parameter to random values (scaled by fan-in), buffers kept."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 1
            scale = 1.0 if name.endswith(("norm1.weight", "norm2.weight", "guidance_norm.weight")) else 0.0
            p.copy_(scale + torch.randn(p.shape, generator=generator) / fan_in ** 0.5 * (0.2 if scale else 1.0))


def aggregator_args(config: dict) -> dict:
    """CostAggregator's arguments -> CAT-Seg Aggregator's (which also takes attention_type)."""
    return dict(config, attention_type="linear")


def make_inputs(config: dict, classes: int, seed: int) -> dict:
    """Random CLIP image features [1, C, H, W] and guidance (from ``seed``), text features
    [1, T, P, C] (from ``seed + T``)."""
    generator = torch.Generator().manual_seed(seed)
    h, w = config["feature_resolution"]
    randn = lambda *shape: torch.randn(*shape, generator=generator)  # noqa: E731
    text = torch.randn(1, classes, config["prompt_channel"], config["text_guidance_dim"],
                       generator=torch.Generator().manual_seed(seed + classes))
    return {
        "img": randn(1, config["appearance_guidance_dim"], h, w),
        "text": text,
        "guidance0": randn(1, config["appearance_guidance_dim"], h, w),
        "guidance1": randn(1, config["decoder_guidance_dims"][0], 2 * h, 2 * w),
        "guidance2": randn(1, config["decoder_guidance_dims"][1], 4 * h, 4 * w),
    }


def reference_stages(ref: nn.Module, inputs: dict) -> dict:
    """CAT-Seg's stage outputs, each from its own code (its methods and layers' submodules)."""
    guidance = [inputs["guidance0"], inputs["guidance1"], inputs["guidance2"]]
    out = {"corr": ref.correlation(inputs["img"], inputs["text"])}
    x = out["embed"] = ref.corr_embed(out["corr"])
    appearance = ref.guidance_projection(guidance[0])
    decoder = [proj(g) for proj, g in zip(ref.decoder_guidance_projection, guidance[1:])]
    text = inputs["text"].mean(dim=-2)
    text = ref.text_guidance_projection(text / text.norm(dim=-1, keepdim=True))
    out.update({"appearance": appearance, "text_guidance": text, "decoder_guidance0": decoder[0],
                "decoder_guidance1": decoder[1]})
    for i, layer in enumerate(ref.layers):
        x = out[f"spatial{i}"] = layer.swin_block(x, appearance)
        x = out[f"class{i}"] = layer.attention(x, text)
    out["decoder"] = ref.conv_decoder(x, decoder)
    out["logits"] = ref(inputs["img"], inputs["text"], guidance)
    return out


def our_stages(ours: CostAggregator, inputs: dict) -> dict:
    """The same stages from lseg_ros's CostAggregator, chained on its own outputs."""
    guidance = [inputs["guidance0"], inputs["guidance1"], inputs["guidance2"]]
    out = {"corr": ours.correlation(inputs["img"], inputs["text"])}
    x = out["embed"] = ours.embed(out["corr"])
    appearance, text, decoder = ours.project_guidance(guidance, inputs["text"])
    out.update({"appearance": appearance, "text_guidance": text, "decoder_guidance0": decoder[0],
                "decoder_guidance1": decoder[1]})
    for i in range(len(ours.layers)):
        x = out[f"spatial{i}"] = ours.spatial_aggregation(x, i, appearance)
        x = out[f"class{i}"] = ours.class_aggregation(x, i, text)
    out["decoder"] = ours.decode(x, decoder)
    out["logits"] = ours(inputs["img"], inputs["text"], guidance)
    return out


def compare(name: str, namespace: dict, config: dict, class_counts, seed: int) -> tuple:
    """Build both on the same random weights; print each stage's max |difference|."""
    torch.manual_seed(seed)
    ref = namespace["Aggregator"](**aggregator_args(config)).eval()
    randomize(ref, seed)
    ours = CostAggregator(**config).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    results = {}
    with torch.no_grad():
        for classes in class_counts:
            inputs = make_inputs(config, classes, seed)
            expected, got = reference_stages(ref, inputs), our_stages(ours, inputs)
            worst = 0.0
            for stage in expected:
                difference = float((got[stage] - expected[stage]).abs().max())
                worst = max(worst, difference)
                print(f"{name} T={classes} {stage}: max |difference| {difference:.3g} "
                      f"(max |value| {float(expected[stage].abs().max()):.3g})")
            print(f"{name} T={classes}: worst {worst:.3g}")
            results[classes] = (inputs, expected)
    return ref, results


def check_keys(namespace: dict, name: str) -> None:
    """Our state_dict keys and shapes against CAT-Seg's Aggregator for one released config."""
    theirs = namespace["Aggregator"](**CATSEG_CONFIGS[name], attention_type="linear").state_dict()
    ours = CostAggregator(**CATSEG_CONFIGS[name]).state_dict()
    missing, unexpected = sorted(set(theirs) - set(ours)), sorted(set(ours) - set(theirs))
    shapes = sorted(k for k in set(ours) & set(theirs) if ours[k].shape != theirs[k].shape)
    verdict = f"; ours lacks {missing}, has extra {unexpected}, shapes differ {shapes}" \
        if missing or unexpected or shapes else ", same names and shapes"
    print(f"{name} keys: {len(theirs)} in CAT-Seg's, {len(ours)} in ours{verdict}")


#: CAT-Seg's config keys (MODEL.SEM_SEG_HEAD.*, MODEL.PROMPT_ENSEMBLE_TYPE) -> CostAggregator arguments
YAML_KEYS = {"TEXT_GUIDANCE_DIM": "text_guidance_dim", "APPEARANCE_GUIDANCE_DIM": "appearance_guidance_dim",
             "NUM_LAYERS": "num_layers", "POOLING_SIZES": "pooling_size"}
#: prompts per class of each PROMPT_ENSEMBLE_TYPE (cat_seg_predictor.py: single = one template)
PROMPTS = {"single": 1, "imagenet_select": None, "imagenet": 80}


def check_config(repo: Path, name: str) -> bool:
    """CATSEG_CONFIGS[name] against the checkout's configs/<name>.yaml over its _BASE_."""
    import yaml

    merged: dict = {}
    for path in ("configs/config.yaml", f"configs/{name}.yaml"):  # base first, then the override
        data = yaml.safe_load(read(repo, path))
        head = data.get("MODEL", {}).get("SEM_SEG_HEAD", {})
        merged.update({arg: head[key] for key, arg in YAML_KEYS.items() if key in head})
        if "PROMPT_ENSEMBLE_TYPE" in data.get("MODEL", {}):
            merged["prompt_channel"] = PROMPTS[data["MODEL"]["PROMPT_ENSEMBLE_TYPE"]]
    merged["pooling_size"] = tuple(merged["pooling_size"])
    ours = {k: CATSEG_CONFIGS[name][k] for k in merged}
    same = ours == merged
    print(f"{name} config: {'same as' if same else 'DIFFERS from'} configs/{name}.yaml"
          f"{'' if same else f' (ours {ours}, theirs {merged})'}")
    return same


def checkpoint_key_shapes(namespace: dict) -> dict:
    """Key shapes of CAT-Seg's ViT-B/16 checkpoint parts that lseg_ros loads (aggregator as its
    predictor builds it, upsample1/2 as cat_seg_model.py builds them)."""
    ref = namespace["Aggregator"](**CATSEG_CONFIGS["vitb_384"], attention_type="linear")
    shapes = {f"sem_seg_head.predictor.transformer.{k}": list(v.shape) for k, v in ref.state_dict().items()}
    for name, k in (("upsample1", 2), ("upsample2", 4)):
        conv = nn.ConvTranspose2d(768, 256 if k == 2 else 128, kernel_size=k, stride=k)
        shapes.update({f"{name}.{p}": list(v.shape) for p, v in conv.state_dict().items()})
    return shapes


def write_reference(path: Path, ref: nn.Module, results: dict, namespace: dict) -> None:
    from safetensors.torch import save_file
    tensors = {f"w.{k}": v.contiguous() for k, v in ref.state_dict().items()}
    (first, (inputs, expected)), *others = results.items()  # every stage for the first class count
    tensors.update({f"in.{k}": v.contiguous() for k, v in inputs.items()})
    tensors.update({f"out.T{first}.{k}": v.contiguous() for k, v in expected.items()})
    for classes, (inputs, expected) in others:  # the same image, more classes: the final logits
        tensors[f"in.text.T{classes}"] = inputs["text"].contiguous()
        tensors[f"out.T{classes}.logits"] = expected["logits"].contiguous()
    metadata = {"config": json.dumps(TINY), "vitb_384_keys": json.dumps(checkpoint_key_shapes(namespace)),
                "source": "KU-CVLAB/CAT-Seg cat_seg/modeling/transformer/model.py (scripts/compare_catseg.py)"}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    print(f"wrote {path} ({path.stat().st_size} bytes, {len(tensors)} tensors)")


def write_clip_reference(path: Path, visual: dict, x: torch.Tensor, expected: dict) -> None:
    """CAT-Seg's tiny CLIP image tower (its own key layout, ``visual.*``; the text tower is left
    out: its token table alone is 12 MB), the input and its dense outputs."""
    from safetensors.torch import save_file
    tensors = {f"w.{k}": v.half().contiguous() for k, v in visual.items()}  # exact: see randomize_clip
    tensors["in.images"] = x.half().contiguous()  # float16 values too
    tensors.update({f"out.{k}": v.contiguous() for k, v in expected.items() if k != "text"})
    metadata = {"config": json.dumps(CLIP_TINY), "layers": json.dumps(CLIP_LAYERS),
                "source": "KU-CVLAB/CAT-Seg cat_seg/third_party/model_vpt.py (scripts/compare_catseg.py)"}
    save_file(tensors, str(path), metadata=metadata)
    print(f"wrote {path} ({path.stat().st_size} bytes, {len(tensors)} tensors)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--catseg", type=Path, required=True, help="checkout of KU-CVLAB/CAT-Seg")
    parser.add_argument("--pylib", type=Path, default=Path("/tmp/refs/pylib"),
                        help="folder with einops (pip install --target FOLDER einops)")
    parser.add_argument("--write-reference", type=Path, help="write the tiny reference file here")
    args = parser.parse_args()
    sys.path.append(str(args.pylib))
    torch.set_num_threads(1)
    namespace = catseg_namespace(args.catseg)
    ref, results = compare("tiny", namespace, TINY, (3, 6), seed=0)
    defaults = {k: p.default for k, p in inspect.signature(CostAggregator).parameters.items()}
    vitb = dict(defaults, **CATSEG_CONFIGS["vitb_384"])
    compare("vitb_384", namespace, vitb, (8,), seed=1)
    clip_reference = compare_clip(args.catseg)
    configs_agree = True
    for name in CATSEG_CONFIGS:
        configs_agree &= check_config(args.catseg, name)
        check_keys(namespace, name)
    if args.write_reference:
        write_reference(args.write_reference, ref, results, namespace)
        write_clip_reference(args.write_reference.with_name("catseg_clip_reference.safetensors"), *clip_reference)
    return 0 if configs_agree else 1


if __name__ == "__main__":
    sys.exit(main())
