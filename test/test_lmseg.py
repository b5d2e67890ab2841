"""The lmseg backend: official SAM weights, the fusion weight, checkpoints, and the engine's
tools (Segmenter, CLI, evaluation, node, training) running it through the registry."""
from __future__ import annotations


import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from lseg_ros.config import LMSegConfig, SegmenterConfig
from lseg_ros.data.scenes import write_generic_dataset
from lseg_ros.models.base import available_backends, build_backend
from lseg_ros.models.dense_clip import DenseClipBackend
from lseg_ros.models.lmseg import PRESETS, SAM_MEAN, SAM_STD, build_sam
from lseg_ros.segmenter import Segmenter
from lseg_ros.train import Trainer
from lseg_ros.weights import WeightsError

from helpers import TEST_DEVICE, domain_id, fixed_batch
from helpers import tiny_train_config as tiny_config

TINY = PRESETS["lmseg_tiny"]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


#: lmseg's heads: LMSeg's cost aggregation (test_lmseg_cost.py has its own tests) and the cosine decoder
HEADS = ("aggregation", "cosine")


def tiny_config_for(head: str = "cosine", **fields) -> SegmenterConfig:
    values = dict(backend="lmseg", model="lmseg_tiny", pretrained="random", device="cpu", short_side=64,
                  max_long_side=96, labels=["floor", "wall", "red disk"], lmseg=LMSegConfig(head=head))
    values.update(fields)
    return SegmenterConfig(**values)


def random_sam(seed: int = 0) -> torch.nn.Module:
    """The tiny preset's samvit with every tensor random (timm zero-initializes pos_embed and rel_pos)."""
    torch.manual_seed(seed)
    sam = build_sam(TINY.sam_model, **TINY.sam_kwargs).eval()
    with torch.no_grad():
        for parameter in sam.parameters():
            parameter.normal_(0, 0.1)
    return sam


def official_layout(sam: torch.nn.Module) -> dict:
    """segment-anything's key layout: image_encoder.*, mlp.lin1/lin2, plus the other two parts."""
    tensors = {"image_encoder." + key.replace("mlp.fc", "mlp.lin"): value.clone()
               for key, value in sam.state_dict().items()}
    tensors["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"] = torch.randn(2, 128)
    tensors["prompt_encoder.no_mask_embed.weight"] = torch.randn(1, 256)
    tensors["mask_decoder.iou_token.weight"] = torch.randn(1, 256)
    return tensors


def images(batch=2, height=64, width=80, seed=0):
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


def test_lmseg_is_registered():
    assert "lmseg" in available_backends()


def test_official_sam_checkpoint_loads_key_for_key_and_gives_the_modules_features(tmp_path):
    sam = random_sam()
    assert any(".mlp.fc1." in key for key in sam.state_dict())
    path = tmp_path / "sam_vit_tiny.pth"
    torch.save(official_layout(sam), path)
    backend = build_backend(tiny_config_for(lmseg=LMSegConfig(head="cosine", sam_checkpoint=str(path))))
    assert "sam_vit_tiny.pth" in backend.description
    x = images()
    with torch.no_grad():
        np.testing.assert_array_equal(backend.sam.forward_features(x).numpy(), sam.forward_features(x).numpy())
        # the backend takes CLIP-normalized images and gives SAM its own normalization
        rgb = torch.rand(1, 3, 64, 64)
        clip_input = (rgb - torch.tensor(backend.image_mean).view(1, 3, 1, 1)) / torch.tensor(backend.image_std).view(1, 3, 1, 1)
        sam_input = (rgb - torch.tensor(SAM_MEAN).view(1, 3, 1, 1)) / torch.tensor(SAM_STD).view(1, 3, 1, 1)
        torch.testing.assert_close(backend.sam_features(clip_input), sam.forward_features(sam_input),
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("change, named", [
    ("drop", "blocks.1.mlp.fc2.weight"),
    ("add", "blocks.0.attn.extra_table"),
])
def test_a_sam_file_with_a_missing_or_unexpected_encoder_key_is_refused_naming_it(tmp_path, change, named):
    tensors = official_layout(random_sam())
    if change == "drop":
        del tensors["image_encoder.blocks.1.mlp.lin2.weight"]
    else:
        tensors["image_encoder.blocks.0.attn.extra_table"] = torch.zeros(3)
    path = tmp_path / "sam.pth"
    torch.save(tensors, path)
    with pytest.raises(WeightsError, match=named.replace(".", r"\.")):
        build_backend(tiny_config_for(lmseg=LMSegConfig(head="cosine", sam_checkpoint=str(path))))


def test_missing_sam_file_and_unknown_tags_are_refused_not_replaced_by_random_weights(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        build_backend(tiny_config_for(lmseg=LMSegConfig(head="cosine", sam_checkpoint=str(tmp_path / "sam_vit_b_01ec64.pth"))))
    with pytest.raises(WeightsError, match="no downloadable pretrained tags"):
        build_backend(tiny_config_for(pretrained="openai"))
    with pytest.raises(WeightsError, match="unknown pretrained tag"):
        build_backend(tiny_config_for(lmseg=LMSegConfig(head="cosine", clip_pretrained="openai")))  # the tiny CLIP has none


def test_fusion_weight_one_is_the_clip_path_and_zero_the_sam_path():
    torch.manual_seed(0)
    backend = build_backend(tiny_config_for())
    assert float(backend.fusion_weight.detach()) == pytest.approx(0.5)
    x = images()
    reference_clip = DenseClipBackend(backend.clip, TINY.clip_model, mode="maskclip")  # a plain dense_clip
    with torch.no_grad():
        backend.fusion_logit.fill_(float("inf"))  # w = 1
        assert float(backend.fusion_weight) == 1.0  # (under no_grad)
        clip_only = backend(x)
        expected = backend.decoder(backend.clip_proj(reference_clip(x)))
        torch.testing.assert_close(clip_only, expected, rtol=0, atol=1e-6)
        assert clip_only.shape == (2, 32, 16, 20)  # D = CLIP's embedding width, 4x the patch grid
        for parameter in backend.sam.parameters():  # SAM no longer matters
            parameter.add_(0.5)
        torch.testing.assert_close(backend(x), clip_only, rtol=0, atol=0)

        backend.fusion_logit.fill_(float("-inf"))  # w = 0
        sam_only = backend(x)
        expected = backend.decoder(backend.sam_proj(backend.sam_features(x)))
        torch.testing.assert_close(sam_only, expected, rtol=0, atol=1e-6)
        backend.clip.visual.proj.add_(1.0)  # CLIP no longer matters
        torch.testing.assert_close(backend(x), sam_only, rtol=0, atol=0)

        backend.fusion_logit.fill_(0.0)  # w = 0.5: the mean of both projections
        fused = backend.fuse(backend.clip_features(x), backend.sam_features(x))
        both = 0.5 * backend.clip_proj(backend.clip_features(x)) + 0.5 * backend.sam_proj(backend.sam_features(x))
        torch.testing.assert_close(fused, both)


def test_checkpoint_round_trip_is_strict_and_gives_the_same_outputs(tmp_path):
    torch.manual_seed(1)
    first = Segmenter(tiny_config_for())
    path = tmp_path / "lmseg_tiny.safetensors"
    save_file({k: v.contiguous() for k, v in first.backend.net_state_dict().items()}, str(path))
    second = Segmenter(tiny_config_for(pretrained=str(path)))
    assert "lmseg_tiny.safetensors" in second.description
    x = images()
    with torch.no_grad():
        torch.testing.assert_close(second.backend(x), first.backend(x), rtol=0, atol=0)
    rgb = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    np.testing.assert_array_equal(second.segment(rgb).mask, first.segment(rgb).mask)

    tensors = dict(first.backend.net_state_dict())
    del tensors["decoder.0.weight"]
    tensors["decoder.extra"] = torch.zeros(1)
    broken = tmp_path / "broken.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(broken))
    with pytest.raises(WeightsError, match=r"missing key\(s\) 'decoder\.0\.weight'.*unexpected key\(s\) 'decoder\.extra'"):
        build_backend(tiny_config_for(pretrained=str(broken)))


@pytest.mark.parametrize("head", HEADS)
def test_segmenter_segments_with_lmseg(head):
    segmenter = Segmenter(tiny_config_for(head, device=TEST_DEVICE))
    result = segmenter.segment(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8),
                               return_confidences=True)
    assert result.mask.shape == (48, 64) and result.mask.max() < 3
    # the cosine decoder's temperature is LSeg's; the aggregator's logits are used as they are
    assert segmenter.backend.backend_name == "lmseg"
    assert segmenter.logit_scale == pytest.approx(1 / 0.07 if head == "cosine" else 1.0)


@pytest.mark.parametrize("head", HEADS)
def test_cli_and_lseg_eval_run_lmseg(tmp_path, head):
    from lseg_ros.cli import main as segment_main
    from lseg_ros.evaluate import main as eval_main

    image = tmp_path / "scene.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(image)
    tiny = ["--backend", "lmseg", "--model", "lmseg_tiny", "--pretrained", "random", "--device", TEST_DEVICE,
            "--short_side", "64", "--lmseg.head", head]
    assert segment_main([str(image), "--labels", "door, floor", "--out", str(tmp_path / "out"), *tiny]) == 0
    assert np.asarray(Image.open(tmp_path / "out" / "scene_mask.png")).shape == (40, 56)
    root = write_generic_dataset(tmp_path / "scenes", 3, seed=1, size=(48, 64), val_fraction=0)
    assert eval_main(["--dataset", "generic", "--root", str(root), "--split", "all", "--out",
                      str(tmp_path / "eval"), *tiny, "--max_long_side", "96"]) == 0
    assert (tmp_path / "eval" / "metrics.json").is_file()


@pytest.mark.ros
@pytest.mark.parametrize("head", HEADS)
def test_node_publishes_the_engines_lmseg_mask(head):
    pytest.importorskip("rclpy")
    pytest.importorskip("lseg_ros.msg", reason="ROS interfaces not built (run scripts/setup_env.sh)")
    from lseg_ros.ros.conversions import image_msg_to_array
    from lseg_ros.ros.node import LsegNode
    from lseg_ros.ros.params import parameter_overrides
    from helpers import NODE_PARAMETERS
    from ros_helpers import Probe, spinning

    values = dict(NODE_PARAMETERS, backend="lmseg", model="lmseg_tiny", **{"lmseg.head": head})

    def make_nodes():
        node = LsegNode("lseg_node", namespace="lmseg_camera", parameter_overrides=parameter_overrides(values))
        return node, Probe("lmseg_camera")

    with spinning(domain_id(), make_nodes) as (node, probe):
        assert node.segmenter.backend.backend_name == "lmseg"
        probe.wait_label_info()
        rgb = np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8)
        _, mask_msg = probe.send_frame(rgb)
        np.testing.assert_array_equal(image_msg_to_array(mask_msg), node.segmenter.segment(rgb).mask)


# ------------------------------------------------------------------- training
def lmseg_train_config(root, out, head="cosine", **overrides):
    config = tiny_config(root, out, **overrides)
    config.model.backend, config.model.model = "lmseg", "lmseg_tiny"
    config.model.lmseg.head = head
    config.model.lmseg.freeze_clip = config.model.lmseg.freeze_sam = False
    return config


@pytest.mark.slow
@pytest.mark.parametrize("head", HEADS)
def test_a_few_lmseg_training_steps_lower_the_loss_and_keep_the_text_tower(train_scenes, tmp_path, head):
    trainer = Trainer(lmseg_train_config(train_scenes, tmp_path, head, epochs=3, val_split=""))
    backend = trainer.backend
    text_before = {id(p): p.detach().clone() for p in backend.text_parameters()}
    sam_before = backend.sam.patch_embed.proj.weight.detach().clone()
    batch = fixed_batch(trainer)
    backend.eval()
    with torch.no_grad():
        before = trainer.loss(batch).item()
    trainer.fit()
    backend.eval()
    with torch.no_grad():
        after = trainer.loss(batch).item()
    assert trainer.step == 9 and after < 0.8 * before
    for parameter in backend.text_parameters():
        assert torch.equal(parameter, text_before[id(parameter)])
    assert not torch.equal(backend.sam.patch_embed.proj.weight, sam_before)  # freeze_sam false: trained
    # the checkpoint it wrote is what the backend loads
    engine = Segmenter(tiny_config_for(head, pretrained=str(tmp_path / "epoch_003.safetensors"), device=TEST_DEVICE))
    x = images(1, 48, 64)
    with torch.no_grad():
        torch.testing.assert_close(engine.backend(x.to(engine.device)).cpu(), backend(x.to(trainer.device)).cpu())


@pytest.mark.slow
def test_frozen_encoders_stay_unchanged(train_scenes, tmp_path):
    config = lmseg_train_config(train_scenes, tmp_path, max_steps=2, val_split="")
    config.model.lmseg.freeze_clip = config.model.lmseg.freeze_sam = True
    trainer = Trainer(config)
    backend = trainer.backend
    frozen = {name: value.clone() for name, value in backend.state_dict().items()
              if name.startswith(("sam.", "dense_clip."))}
    decoder_before = backend.decoder[0].weight.detach().clone()
    trainer.fit()
    for name, value in backend.state_dict().items():
        if name in frozen:
            assert torch.equal(value, frozen[name]), name
    assert not torch.equal(backend.decoder[0].weight, decoder_before)


@pytest.mark.slow
@pytest.mark.parametrize("head", HEADS)
def test_lseg_train_command_line_trains_lmseg(train_scenes, tmp_path, head):
    from lseg_ros.train import main

    out = tmp_path / "run"
    args = ["--data_root", str(train_scenes), "--out", str(out), "--crop_size", "32", "--batch_size", "4",
            "--max_steps", "3", "--device", TEST_DEVICE, "--progress", "false", "--val_split", "",
            "--model.backend", "lmseg", "--model.model", "lmseg_tiny", "--model.lmseg.freeze_clip", "false",
            "--model.lmseg.freeze_sam", "false", "--model.short_side", "48", "--model.max_long_side", "64",
            "--threads", "1", "--model.lmseg.head", head]
    assert main(args) == 0
    inference = SegmenterConfig.from_yaml(out / "model.yaml")
    assert inference.backend == "lmseg" and inference.pretrained.endswith("epoch_001.safetensors")
    assert Segmenter(inference).backend.backend_name == "lmseg"
