"""Specification of the dense_clip backend, on a tiny random-weight open_clip ViT.

References for the four last-block modes are written here with plain matmuls from the
last block's own weights, independently of the backend's code. No network is used.
"""
import math
import warnings

import pytest
import torch
import torch.nn.functional as F

import open_clip

from lseg_ros.config import DenseClipConfig, SegmenterConfig
from lseg_ros.models.dense_clip import DENSE_CLIP_MODES, DenseClipBackend, build_dense_clip
from lseg_ros.weights import WeightsError

from helpers import TEST_DEVICE

TINY = "lseg-test-tiny-ViT"  # patch 16, width 64, 2 layers, 2 heads, embed_dim 32, native 224
EMBED_DIM = 32


def make_backend(mode="naclip", pretrained="random", seed=0, **dense_clip):
    torch.manual_seed(seed)
    config = SegmenterConfig(model=TINY, pretrained=pretrained,
                             dense_clip=DenseClipConfig(mode=mode, **dense_clip))
    return build_dense_clip(config)


def images(height, width, batch=1, seed=1):
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- references
def trunk_tokens(visual, x):
    """Tokens [B, N, C] entering the last block, through the model's own modules (native grid)."""
    x = visual.conv1(x).flatten(2).transpose(1, 2)
    cls = visual.class_embedding.expand(x.shape[0], 1, -1)
    x = visual.ln_pre(torch.cat([cls, x], dim=1) + visual.positional_embedding)
    for block in visual.transformer.resblocks[:-1]:
        x = block(x)
    return x


def reference_last_block(block, x, mode, grid, std):
    C = x.shape[-1]
    heads = block.attn.num_heads
    d = C // heads
    y = block.ln_1(x)
    Wq, Wk, Wv = block.attn.in_proj_weight.split(C)
    bq, bk, bv = block.attn.in_proj_bias.split(C)
    q, k, v = y @ Wq.T + bq, y @ Wk.T + bk, y @ Wv.T + bv  # [B, N, C]

    def out_proj(z):
        return z @ block.attn.out_proj.weight.T + block.attn.out_proj.bias

    def ffn(z):
        return z + block.mlp(block.ln_2(z))

    if mode == "maskclip":
        return ffn(x + out_proj(v))
    if mode == "catseg":  # CAT-Seg's forward_dense: v = out_proj(v) + x[:1] (the class token)
        return ffn(x[:, :1] + out_proj(v))
    per_head = []
    for h in range(heads):
        qh, kh, vh = (t[..., h * d:(h + 1) * d] for t in (q, k, v))
        qq = qh @ qh.transpose(1, 2) / math.sqrt(d)
        kk = kh @ kh.transpose(1, 2) / math.sqrt(d)
        if mode == "sclip":
            weights = qq.softmax(-1) + kk.softmax(-1)
        elif mode == "clearclip":
            weights = qq.softmax(-1)
        else:
            n = grid[0] * grid[1]
            prior = torch.zeros(n + 1, n + 1)
            for i in range(n):
                for j in range(n):
                    dy, dx = i // grid[1] - j // grid[1], i % grid[1] - j % grid[1]
                    prior[i + 1, j + 1] = math.exp(-(dy * dy + dx * dx) / (2 * std * std))
            weights = (kk + prior).softmax(-1)
        per_head.append(weights @ vh)
    attended = out_proj(torch.cat(per_head, dim=-1))
    return ffn(x + attended) if mode == "sclip" else attended


def reference_embeddings(backend, x, mode, std=5.0):
    visual = backend.clip.visual
    grid = (x.shape[2] // 16, x.shape[3] // 16)
    tokens = reference_last_block(visual.transformer.resblocks[-1], trunk_tokens(visual, x), mode, grid, std)
    patches = visual.ln_post(tokens[:, 1:]) @ visual.proj  # [B, h*w, D]
    return patches.transpose(1, 2).reshape(x.shape[0], -1, *grid)


# --------------------------------------------------------------------- shapes
@pytest.mark.parametrize("height,width", [(224, 224), (160, 288), (64, 32)])
def test_pixel_embeddings_have_one_vector_per_patch(height, width):
    backend = make_backend()
    with torch.inference_mode():
        embeddings = backend(images(height, width, batch=2))
    assert embeddings.shape == (2, EMBED_DIM, height // 16, width // 16)


def test_backend_describes_itself_from_the_open_clip_model():
    backend = make_backend(mode="sclip")
    assert isinstance(backend, DenseClipBackend)
    assert backend.backend_name == "dense_clip"
    assert backend.input_multiple == 16
    assert backend.image_mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    assert backend.default_logit_scale == 100.0
    assert backend.description == f"dense_clip/sclip {TINY} (random)"
    assert backend.text_model_id != make_backend().text_model_id  # two random inits differ
    assert not any(p.requires_grad for p in backend.parameters())


def test_a_last_partial_patch_is_dropped_as_clips_patch_convolution_drops_it():
    backend = make_backend()
    x = images(100, 103)
    with torch.inference_mode():
        embeddings = backend(x)
        cropped = backend(x[..., :96, :96])
    assert embeddings.shape == (1, EMBED_DIM, 6, 6)
    torch.testing.assert_close(embeddings, cropped, rtol=0, atol=0)
    with pytest.raises(ValueError, match="smaller than the patch size 16"):
        backend(images(100, 15))


def test_padding_partial_patches_gives_maskclips_grid_where_cropping_drops_a_column():
    """mmseg's AdaptivePadding(padding='corner'): ceil(H / 16) x ceil(W / 16) patches; a
    512x683 input (a VOC image resized by MaskCLIP's pipeline) has 43 patch columns, not 42."""
    x = images(32, 683)
    with torch.inference_mode():
        padded = make_backend("maskclip", partial_patches="pad")(x)
        cropped = make_backend("maskclip", partial_patches="crop")(x)
    assert padded.shape == (1, EMBED_DIM, 2, 43)
    assert cropped.shape == (1, EMBED_DIM, 2, 42)


def test_padded_pixels_are_zeros_before_the_patch_embedding():
    backend = make_backend("maskclip", partial_patches="pad")
    x = images(40, 50)
    seen = []
    backend.clip.visual.conv1.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    with torch.inference_mode():
        embeddings = backend(x)
        explicit = backend(F.pad(x, (0, 14, 0, 8)))  # zeros to 48 x 64 by hand
    (patch_input,) = seen[:1]
    assert patch_input.shape == (1, 3, 48, 64)
    torch.testing.assert_close(patch_input[..., :40, :50], x, rtol=0, atol=0)
    assert not patch_input[..., 40:, :].any() and not patch_input[..., 50:].any()
    torch.testing.assert_close(embeddings, explicit, rtol=0, atol=0)
    assert embeddings.shape == (1, EMBED_DIM, 3, 4)


def test_padded_input_takes_the_positional_embedding_resized_to_the_padded_grid():
    backend = make_backend("maskclip", partial_patches="pad")
    with torch.inference_mode():
        backend(images(40, 50))
    assert list(backend._positional_cache) == [(3, 4)]


def test_padding_with_averaged_windows_tiles_the_padded_grid():
    backend = make_backend(partial_patches="pad", window=32, stride=16, window_merge="embeddings")
    x = images(40, 50)
    with torch.inference_mode():
        embeddings = backend(x)
        padded = backend(F.pad(x, (0, 14, 0, 8)))
    assert embeddings.shape == (1, EMBED_DIM, 3, 4)
    torch.testing.assert_close(embeddings, padded, rtol=0, atol=0)


def test_imagenet_normalization_is_mmsegs_img_norm_cfg():
    """MaskCLIP's configs: Normalize(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])
    on 0-255 RGB; the default stays CLIP's own mean and std."""
    import numpy as np

    from lseg_ros.preprocess import to_model_input

    imagenet = make_backend("maskclip", normalization="imagenet")
    assert imagenet.image_mean == pytest.approx((0.485, 0.456, 0.406))
    assert imagenet.image_std == pytest.approx((0.229, 0.224, 0.225))
    assert make_backend("maskclip").image_mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    image = np.random.default_rng(0).integers(0, 256, (8, 9, 3), dtype=np.uint8)
    x = to_model_input([image], (8, 9), imagenet.image_mean, imagenet.image_std, torch.device("cpu"), torch.float32)
    expected = (image.astype(np.float32) - [123.675, 116.28, 103.53]) / [58.395, 57.12, 57.375]
    np.testing.assert_allclose(x[0].permute(1, 2, 0).numpy(), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("field, value, accepted", [("partial_patches", "wrap", "crop, pad"),
                                                    ("normalization", "openai", "clip, imagenet"),
                                                    ("image_tower", "timm", "clip, mmseg")])
def test_unknown_partial_patches_or_normalization_names_the_accepted_values(field, value, accepted):
    with pytest.raises(ValueError, match=f"dense_clip.{field} '{value}'; accepted: {accepted}"):
        make_backend(**{field: value})


def test_mmseg_image_tower_runs_gelu_and_layer_norm_eps_1e_6_in_the_image_tower_only():
    """MaskCLIP's mmseg ViT (act_cfg GELU, norm_cfg LN eps 1e-6) on QuickGELU weights: the image
    tower changes, the text tower (clip.load's, QuickGELU, eps 1e-5) does not."""
    from open_clip.transformer import QuickGELU

    torch.manual_seed(0)
    backend = build_dense_clip(SegmenterConfig(model=TINY + "-quickgelu", pretrained="random",
                                               dense_clip=DenseClipConfig(mode="maskclip", image_tower="mmseg")))
    visual_norms = [m for m in backend.clip.visual.modules() if isinstance(m, torch.nn.LayerNorm)]
    text_norms = [m for name, m in backend.clip.named_modules()
                  if isinstance(m, torch.nn.LayerNorm) and not name.startswith("visual.")]
    assert visual_norms and {m.eps for m in visual_norms} == {1e-6}
    assert text_norms and {m.eps for m in text_norms} == {1e-5}
    activations = [block.mlp.gelu for block in backend.clip.visual.transformer.resblocks]
    assert all(type(a) is torch.nn.GELU and a.approximate == "none" for a in activations)
    assert all(isinstance(block.mlp.gelu, QuickGELU) for block in backend.clip.transformer.resblocks)
    assert "GELU, LayerNorm eps 1e-6" in backend.description


def test_mmseg_image_tower_equals_the_gelu_model_with_eps_1e_6_on_the_same_weights():
    """The QuickGELU model run as mmseg's ViT gives the embeddings of the GELU model with the
    same weights and its image LayerNorms set to eps 1e-6 by hand."""
    torch.manual_seed(0)
    mmseg = build_dense_clip(SegmenterConfig(model=TINY + "-quickgelu", pretrained="random",
                                             dense_clip=DenseClipConfig(mode="maskclip", image_tower="mmseg")))
    gelu = make_backend("maskclip")
    gelu.clip.load_state_dict(mmseg.clip.state_dict())
    for module in gelu.clip.visual.modules():
        if isinstance(module, torch.nn.LayerNorm):
            module.eps = 1e-6
    as_trained = build_dense_clip(SegmenterConfig(model=TINY + "-quickgelu", pretrained="random",
                                                  dense_clip=DenseClipConfig(mode="maskclip")))
    as_trained.clip.load_state_dict(mmseg.clip.state_dict())
    x = images(48, 64)
    with torch.inference_mode():
        torch.testing.assert_close(mmseg(x), gelu(x), rtol=0, atol=0)
        assert not torch.allclose(mmseg(x), as_trained(x), atol=1e-4)


# ---------------------------------------------------------------------- modes
def test_guidance_layers_are_the_patch_tokens_after_those_blocks():
    """dense_features(x, layers): CAT-Seg's forward hooks on resblocks[l] (the block's output,
    class token dropped), here against the trunk run block by block."""
    backend = make_backend(mode="catseg")
    visual = backend.clip.visual
    x = images(64, 80, batch=2)
    with torch.inference_mode():
        embeddings, (first,) = backend.dense_features(x, layers=(0,))
        tokens = visual.ln_pre(torch.cat([visual.class_embedding.expand(2, 1, -1),
                                          visual.conv1(x).flatten(2).transpose(1, 2)], 1)
                               + backend.positional_embedding((4, 5)))
        after = []
        for block in visual.transformer.resblocks[:-1]:
            tokens = block(tokens)
            after.append(tokens[:, 1:].transpose(1, 2).reshape(2, -1, 4, 5))
    torch.testing.assert_close(first, after[0], rtol=0, atol=0)
    torch.testing.assert_close(embeddings, backend.dense_embeddings(x), rtol=0, atol=0)
    last = len(visual.transformer.resblocks) - 1
    with pytest.raises(ValueError, match=f"must be blocks 0..{last - 1}"):
        backend.dense_features(x, layers=(last,))


@pytest.mark.parametrize("mode", DENSE_CLIP_MODES)
def test_each_mode_equals_its_published_last_block(mode):
    backend = make_backend(mode=mode, gaussian_std=2.0)
    x = images(224, 224, batch=2)
    with torch.inference_mode():
        expected = reference_embeddings(backend, x, mode, std=2.0)
        actual = backend(x)
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)


def test_modes_produce_different_embeddings():
    x = images(224, 224)
    with torch.inference_mode():
        outputs = [make_backend(mode=mode)(x) for mode in DENSE_CLIP_MODES]
    for i in range(len(outputs)):
        for j in range(i + 1, len(outputs)):
            assert not torch.allclose(outputs[i], outputs[j])


def test_unknown_mode_names_the_accepted_modes():
    with pytest.raises(ValueError, match="maskclip, sclip, clearclip, naclip"):
        make_backend(mode="gem")


# -------------------------------------------------------- positional embedding
def test_positional_embedding_at_the_native_grid_is_the_models_own():
    backend = make_backend()
    table = backend.clip.visual.positional_embedding
    assert backend.positional_embedding((14, 14)) is table


def bicubic_1d(values, out_size, scale):
    """Resize ``values`` [..., n] along the last axis with cubic convolution (a = -0.75,
    borders replicated); output i reads source position (i + 0.5) / scale - 0.5."""
    def cubic(t):
        t = abs(t)
        a = -0.75
        if t <= 1:
            return (a + 2) * t ** 3 - (a + 3) * t ** 2 + 1
        return a * t ** 3 - 5 * a * t ** 2 + 8 * a * t - 4 * a if t < 2 else 0.0
    n = values.shape[-1]
    columns = []
    for i in range(out_size):
        x = (i + 0.5) / scale - 0.5
        x0 = math.floor(x)
        column = 0
        for tap in range(-1, 3):
            column = column + cubic(x - (x0 + tap)) * values[..., min(max(x0 + tap, 0), n - 1)]
        columns.append(column)
    return torch.stack(columns, dim=-1)


def written_out_resize(table, grid, out_grid, scales):
    patches = table[1:].reshape(*grid, -1).permute(2, 0, 1).double()  # [C, g0, g1]
    patches = bicubic_1d(patches, out_grid[1], scales[1])  # along the width
    patches = bicubic_1d(patches.transpose(1, 2), out_grid[0], scales[0]).transpose(1, 2)  # along the height
    return torch.cat([table[:1].double(), patches.permute(1, 2, 0).reshape(-1, table.shape[1])])


@pytest.mark.parametrize("mode, rule", [("naclip", "auto"), ("sclip", "auto"), ("clearclip", "auto"),
                                        ("naclip", "scale_factor"), ("maskclip", "auto"), ("naclip", "size")])
def test_positional_embedding_is_resized_as_each_papers_code_does(mode, rule):
    backend = make_backend(mode, positional_resize=rule)
    table = backend.clip.visual.positional_embedding.detach()  # [197, 64], pretraining grid 14 x 14
    by_size = rule == "size" or (rule == "auto" and mode == "maskclip")
    scales = (9 / 14, 21 / 14) if by_size else ((9 + 0.1) / 14, (21 + 0.1) / 14)
    expected = written_out_resize(table, (14, 14), (9, 21), scales).float()
    actual = backend.positional_embedding((9, 21))
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-5)
    assert backend.positional_embedding((9, 21)) is actual  # cached per grid
    other = written_out_resize(table, (14, 14), (9, 21), (9.1 / 14, 21.1 / 14) if by_size else (9 / 14, 21 / 14))
    assert float((other.float() - actual).abs().max()) > 1e-3  # the two rules differ


def test_dense_embeddings_use_the_resized_positional_embedding():
    backend = make_backend(mode="clearclip")
    x = images(96, 160)
    visual = backend.clip.visual
    with torch.inference_mode():
        tokens = visual.conv1(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([visual.class_embedding.expand(1, 1, -1), tokens], dim=1)
        tokens = visual.ln_pre(tokens + backend.positional_embedding((6, 10)))
        for block in visual.transformer.resblocks[:-1]:
            tokens = block(tokens)
        tokens = reference_last_block(visual.transformer.resblocks[-1], tokens, "clearclip", (6, 10), 5.0)
        expected = (visual.ln_post(tokens[:, 1:]) @ visual.proj).transpose(1, 2).reshape(1, -1, 6, 10)
        torch.testing.assert_close(backend(x), expected, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------- sliding window
def test_sliding_window_over_one_window_equals_the_plain_forward():
    plain = make_backend(window=0)
    windowed = make_backend(window=224, stride=112)
    x = images(224, 224)
    with torch.inference_mode():
        torch.testing.assert_close(windowed(x), plain(x))


def test_sliding_window_averages_overlapping_windows_into_the_full_map():
    backend = make_backend(window=64, stride=32)
    x = images(64, 128)
    with torch.inference_mode():
        embeddings = backend(x)
        left, middle, right = (backend.dense_embeddings(x[..., s:s + 64]) for s in (0, 32, 64))
    assert embeddings.shape == (1, EMBED_DIM, 4, 8)
    torch.testing.assert_close(embeddings[..., :2], left[..., :2])
    torch.testing.assert_close(embeddings[..., 2:4], (left[..., 2:] + middle[..., :2]) / 2)
    torch.testing.assert_close(embeddings[..., 6:], right[..., 2:])


def test_window_not_a_multiple_of_the_patch_size_is_rejected():
    with pytest.raises(ValueError, match="multiples of the patch size 16"):
        make_backend(window=100, stride=50)


# -------------------------------------------------------------------- weights
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_local_weights_file_reproduces_the_source_model(tmp_path, suffix):
    source = make_backend(seed=3)
    state_dict = {k: v.contiguous() for k, v in source.clip.state_dict().items()}
    path = tmp_path / f"tiny{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file
        save_file(state_dict, str(path))
    else:
        torch.save({"state_dict": state_dict, "epoch": 7}, path)
    loaded = make_backend(pretrained=str(path), seed=4)
    x = images(224, 224)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(x), source(x), rtol=0, atol=0)
        tokens = loaded.tokenize(["a chair"])
        torch.testing.assert_close(loaded.encode_text(tokens), source.encode_text(tokens), rtol=0, atol=0)
    assert loaded.description == f"dense_clip/naclip {TINY} (tiny{suffix}, GELU)"


def _save_tiny(path):
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in make_backend(seed=5).clip.state_dict().items()}, str(path))
    return str(path)


OPENAI_HUB_FILE = "models--timm--vit_base_patch16_clip_224.openai/snapshots/0123abc/open_clip_model.safetensors"
LAION_HUB_FILE = "models--laion--CLIP-ViT-B-16-laion2B-s34B-b88K/snapshots/0123abc/open_clip_model.safetensors"


@pytest.mark.parametrize("relative, model, wanted", [
    (OPENAI_HUB_FILE, TINY, "lseg-test-tiny-ViT-quickgelu"),  # open_clip's download for ViT-B-16/openai
    ("weights/clip-openai-b16.safetensors", TINY, "lseg-test-tiny-ViT-quickgelu"),  # the path names OpenAI
    (LAION_HUB_FILE, TINY + "-quickgelu", r"lseg-test-tiny-ViT\."),  # trained with GELU, run with QuickGELU
])
def test_local_file_trained_with_another_activation_is_refused_naming_the_model_to_use(tmp_path, relative,
                                                                                       model, wanted):
    path = _save_tiny(tmp_path / relative)
    with pytest.raises(WeightsError, match=f"model:={wanted}"):
        build_dense_clip(SegmenterConfig(model=model, pretrained=path))


@pytest.mark.parametrize("relative, model, activation", [
    (OPENAI_HUB_FILE, TINY + "-quickgelu", "QuickGELU"),
    (LAION_HUB_FILE, TINY, "GELU"),
    ("weights/my_clip.safetensors", TINY, "GELU"),  # origin unknown: as the model name says
])
def test_local_file_with_the_matching_activation_loads_and_the_description_names_it(tmp_path, relative, model,
                                                                                    activation):
    path = _save_tiny(tmp_path / relative)
    backend = build_dense_clip(SegmenterConfig(model=model, pretrained=path))
    assert backend.description.endswith(f", {activation})")
    blocks = backend.clip.visual.transformer.resblocks
    assert (type(blocks[0].mlp.gelu).__name__ == "QuickGELU") == (activation == "QuickGELU")


def test_the_activation_changes_the_features_of_the_same_weights(tmp_path):
    path = _save_tiny(tmp_path / "weights" / "same.safetensors")
    gelu = build_dense_clip(SegmenterConfig(model=TINY, pretrained=path))
    quick = build_dense_clip(SegmenterConfig(model=TINY + "-quickgelu", pretrained=path))
    x = images(224, 224)
    with torch.inference_mode():
        assert float((gelu(x) - quick(x)).abs().max()) > 1e-3


def test_torchscript_archive_is_refused_with_how_to_convert(tmp_path):
    path = tmp_path / "ViT-B-16.pt"
    with warnings.catch_warnings():  # newer torch deprecates TorchScript (FutureWarning)
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.trace(torch.nn.Linear(2, 2), torch.zeros(1, 2)), str(path))
    with pytest.raises(WeightsError, match="TorchScript archives.*not loaded.*ViT-B-16-quickgelu"):
        make_backend(pretrained=str(path))


def test_weights_file_with_a_missing_key_names_that_key(tmp_path):
    from safetensors.torch import save_file

    state_dict = {k: v.contiguous() for k, v in make_backend().clip.state_dict().items()}
    del state_dict["visual.ln_post.weight"]
    path = tmp_path / "broken.safetensors"
    save_file(state_dict, str(path))
    with pytest.raises(WeightsError, match="visual.ln_post.weight"):
        make_backend(pretrained=str(path))


def test_missing_weights_file_is_a_weights_error(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        make_backend(pretrained=str(tmp_path / "absent.safetensors"))


def test_unknown_pretrained_tag_names_the_valid_tags():
    config = SegmenterConfig(model="ViT-B-16", pretrained="nope")
    with pytest.raises(WeightsError, match="'nope'.*openai.*laion2b_s34b_b88k"):
        build_dense_clip(config)


def test_unknown_model_name_is_a_value_error_listing_models():
    config = SegmenterConfig(model="ViT-Z-99", pretrained="random")
    with pytest.raises(ValueError, match="unknown open_clip model 'ViT-Z-99'.*ViT-B-16"):
        build_dense_clip(config)


# ----------------------------------------------------------------------- text
def test_encode_text_gives_one_embedding_per_prompt():
    backend = make_backend()
    tokens = backend.tokenize(["a photo of a door", "a chair", "floor"])
    assert tokens.shape == (3, 77)
    with torch.inference_mode():
        assert backend.encode_text(tokens).shape == (3, EMBED_DIM)


def test_trimmed_text_encoding_equals_the_full_77_token_forward():
    from lseg_ros.models.clip_text import encode_text_trimmed
    torch.manual_seed(0)
    clip = open_clip.create_model("lseg-test-tiny-ViT", pretrained=None).eval()
    tokens = open_clip.get_tokenizer("lseg-test-tiny-ViT")(["door", "a photo of a wooden door with a brass handle.", ""])
    with torch.no_grad():
        full = clip.encode_text(tokens)
        trimmed = encode_text_trimmed(clip, tokens)
    torch.testing.assert_close(trimmed, full, atol=1e-5, rtol=1e-5)


# ------------------------------------------------- sliding window in the segmenter
def _forward_slide_reference(backend, img, text, stride, crop):
    """NACLIP/SCLIP/ClearCLIP ``forward_slide`` written out: per-crop cosine logits resized to
    the crop (bilinear), padded into place, summed, divided by the count."""
    _, _, h_img, w_img = img.shape
    h_grids = max(h_img - crop + stride - 1, 0) // stride + 1
    w_grids = max(w_img - crop + stride - 1, 0) // stride + 1
    preds = img.new_zeros((1, text.shape[0], h_img, w_img))
    count = img.new_zeros((1, 1, h_img, w_img))
    for h_idx in range(h_grids):
        for w_idx in range(w_grids):
            y1, x1 = h_idx * stride, w_idx * stride
            y2, x2 = min(y1 + crop, h_img), min(x1 + crop, w_img)
            y1, x1 = max(y2 - crop, 0), max(x2 - crop, 0)
            crop_img = img[:, :, y1:y2, x1:x2]
            features = F.normalize(backend.dense_embeddings(crop_img), dim=1)
            logits = torch.einsum("bdhw,nd->bnhw", features, text)
            logits = F.interpolate(logits, size=crop_img.shape[-2:], mode="bilinear", align_corners=False)
            preds += F.pad(logits, (x1, w_img - x2, y1, h_img - y2))
            count[:, :, y1:y2, x1:x2] += 1
    return preds / count


@pytest.mark.parametrize("size", [(64, 128), (80, 112)])
def test_segmenter_sliding_window_averages_per_window_logits_as_the_references(size):
    import numpy as np

    from lseg_ros.preprocess import to_model_input
    from lseg_ros.segmenter import Segmenter

    torch.manual_seed(0)
    config = SegmenterConfig(model=TINY, pretrained="random", device=TEST_DEVICE, short_side=min(size),
                             max_long_side=max(size), labels=["floor", "wall", "door"],
                             dense_clip=DenseClipConfig(mode="naclip", window=48, stride=32))
    segmenter = Segmenter(config)
    image = np.random.default_rng(1).integers(0, 256, (*size, 3), dtype=np.uint8)
    x = to_model_input([image], size, segmenter.backend.image_mean, segmenter.backend.image_std,
                       torch.device(TEST_DEVICE), torch.float32)
    with torch.inference_mode():
        cosine = _forward_slide_reference(segmenter.backend, x, segmenter.label_set.label_embeddings, 32, 48)
        result = segmenter.segment(image)
        embeddings_merged = segmenter.classify(segmenter.backend(x), segmenter.label_set.label_embeddings)
    expected = (cosine[0] * segmenter.logit_scale).softmax(0)
    np.testing.assert_allclose(result.confidences, expected.numpy(), atol=1e-5)
    # averaging embeddings on the patch grid (window_merge "embeddings") gives other maps
    other = F.interpolate(embeddings_merged, size=size, mode="bilinear", align_corners=False)[0].softmax(0)
    assert float((other - expected).abs().max()) > 1e-3


def test_positional_embedding_is_not_cached_while_the_table_trains():
    backend = make_backend("maskclip").train()
    backend.clip.visual.requires_grad_(True)  # as lmseg's trainer does with lmseg.freeze_clip false
    table = backend.clip.visual.positional_embedding
    resized = backend.positional_embedding((9, 21))
    assert resized.requires_grad and len(backend._positional_cache) == 0
    resized.sum().backward()
    assert table.grad is not None and table.grad.abs().sum() > 0
    with torch.no_grad():
        frozen = backend.positional_embedding((9, 21))
    assert torch.allclose(frozen, resized.detach()) and len(backend._positional_cache) == 1
