"""The vilseg backend (ViL-Seg): network pieces against plain reference computations,
cluster inference, strict weights, and training from captions with lseg-train."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from lseg_ros.config import SegmenterConfig, VilSegConfig
from lseg_ros.data.scenes import SCENE_CLASSES, write_caption_dataset, write_generic_dataset
from lseg_ros.models.vilseg import PRESETS, VilSegNet, cluster_means
from lseg_ros.vilseg_objective import VilSegObjective, iic_loss, info_nce, pooled
from lseg_ros.segmenter import Segmenter
from lseg_ros.train import TrainConfig, Trainer, main
from lseg_ros.weights import WeightsError

from helpers import TEST_DEVICE


def tiny_segmenter(**fields) -> Segmenter:
    return Segmenter(SegmenterConfig(backend="vilseg", model="vilseg_tiny", pretrained="random",
                                     device=TEST_DEVICE, short_side=48, max_long_side=64, labels=SCENE_CLASSES,
                                     **fields))


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return VilSegNet(PRESETS["vilseg_tiny"], clusters=6).eval()


def test_cluster_means_equal_a_loop_over_clusters():
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn(2, 5, 3, 4, generator=generator)
    assignment = torch.randint(0, 4, (2, 3, 4), generator=generator)
    expected = torch.empty_like(embeddings)
    for b in range(2):
        for k in range(4):
            where = assignment[b] == k
            if where.any():
                expected[b][:, where] = embeddings[b][:, where].mean(dim=1, keepdim=True)
    assert torch.allclose(cluster_means(embeddings, assignment, 4), expected, atol=1e-6)


def test_iic_loss_is_minus_the_mutual_information_of_the_joint_distribution():
    generator = torch.Generator().manual_seed(1)
    logits_a, logits_b = torch.randn(2, 3, 4, 5, generator=generator), torch.randn(2, 3, 4, 5, generator=generator)
    p_a = logits_a.softmax(1).permute(0, 2, 3, 1).reshape(-1, 3).double().numpy()
    p_b = logits_b.softmax(1).permute(0, 2, 3, 1).reshape(-1, 3).double().numpy()
    joint = p_a.T @ p_b / len(p_a)
    joint = (joint + joint.T) / 2
    mi = sum(joint[i, j] * math.log(joint[i, j] / (joint[i].sum() * joint[:, j].sum()))
             for i in range(3) for j in range(3))
    assert iic_loss(logits_a, logits_b).item() == pytest.approx(-mi, abs=1e-5)
    # lambda: each marginal's log weighted more
    entropy = -sum(joint[i].sum() * math.log(joint[i].sum()) for i in range(3))
    assert iic_loss(logits_a, logits_b, 2.0).item() == pytest.approx(-mi - 2 * entropy, abs=1e-5)


def test_iic_loss_is_lowest_for_confident_consistent_balanced_clusters():
    # two views agree on 4 equally used clusters: the mutual information is log 4
    assignment = torch.arange(4).repeat(8).view(2, 4, 4)
    logits = 50 * F.one_hot(assignment, 4).permute(0, 3, 1, 2).float()
    assert iic_loss(logits, logits).item() == pytest.approx(-math.log(4), abs=1e-4)
    collapsed = torch.zeros_like(logits)
    collapsed[:, 0] = 50
    assert iic_loss(collapsed, collapsed).item() == pytest.approx(0.0, abs=1e-4)


def test_info_nce_matches_cross_entropy_written_out():
    generator = torch.Generator().manual_seed(2)
    a = F.normalize(torch.randn(4, 8, generator=generator), dim=-1)
    b = F.normalize(torch.randn(4, 8, generator=generator), dim=-1)
    logits = (10 * a @ b.t()).double()
    forward = -torch.log_softmax(logits, dim=1).diagonal().mean()
    backward = -torch.log_softmax(logits, dim=0).diagonal().mean()
    assert info_nce(a, b, 10.0).item() == pytest.approx(0.5 * (forward + backward).item(), abs=1e-5)


def test_trimmed_text_encoding_equals_the_text_towers_full_forward(net):
    segmenter_tokens = tiny_segmenter().backend.tokenize(["red disk", "a photo of a blue square on the floor"])
    with torch.no_grad():
        assert torch.allclose(net.encode_text(segmenter_tokens), net.text(segmenter_tokens), atol=1e-5)


def test_pooled_embedding_is_the_normalized_mean_of_normalized_patches(net):
    embeddings = torch.randn(2, 64, 3, 4)
    expected = F.normalize(F.normalize(embeddings, dim=1).flatten(2).mean(-1), dim=-1)
    assert torch.allclose(pooled(embeddings), expected, atol=1e-6)


def test_cluster_inference_gives_each_cluster_one_embedding_and_one_label(net):
    images = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        per_patch = net(images, cluster=False)  # [1, D, 6, 8]
        clustered = net(images)
        assignment = net.cluster_logits(net.patch_embeddings(images)).argmax(1)[0]
    assert torch.allclose(per_patch, F.normalize(net.patch_embeddings(images), dim=1), atol=1e-6)
    for k in assignment.unique():
        members = clustered[0][:, assignment == k]
        assert torch.allclose(members, per_patch[0][:, assignment == k].mean(1, keepdim=True).expand_as(members),
                              atol=1e-5)


def test_segmenter_masks_through_the_registry_with_and_without_clusters():
    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    clustered = tiny_segmenter()
    result = clustered.segment(image)
    assert result.mask.shape == (48, 64) and result.mask.max() < len(SCENE_CLASSES)
    assert "16 clusters" in clustered.description
    per_patch = tiny_segmenter(vilseg=VilSegConfig(clusters=16, cluster_inference=False))
    per_patch.backend.net.load_state_dict(clustered.backend.net.state_dict())
    assert "per patch" in per_patch.description
    assert per_patch.segment(image).mask.shape == (48, 64)


def test_weights_round_trip_strictly_and_mismatches_are_named(tmp_path):
    source = tiny_segmenter()
    path = tmp_path / "vilseg.safetensors"
    save_file({k: v.contiguous() for k, v in source.backend.net_state_dict().items()}, str(path))
    loaded = Segmenter(SegmenterConfig(backend="vilseg", model="vilseg_tiny", pretrained=str(path),
                                       device=TEST_DEVICE, short_side=48, max_long_side=64, labels=SCENE_CLASSES))
    image = np.random.default_rng(1).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    assert np.array_equal(source.segment(image).mask, loaded.segment(image).mask)
    assert "vilseg.safetensors" in loaded.description
    # confidences use the temperature the cross-modal contrast learned
    assert loaded.logit_scale == pytest.approx(float(source.backend.net.logit_scale.exp()))
    with pytest.raises(WeightsError, match="8 clusters|vilseg.clusters 16"):
        Segmenter(SegmenterConfig(backend="vilseg", model="vilseg_tiny", pretrained=str(path), device="cpu",
                                  vilseg=VilSegConfig(clusters=8)))
    tensors = dict(source.backend.net_state_dict())
    tensors["extra.weight"] = torch.zeros(1)
    bad = tmp_path / "bad.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(bad))
    with pytest.raises(WeightsError, match="extra.weight"):
        Segmenter(SegmenterConfig(backend="vilseg", model="vilseg_tiny", pretrained=str(bad), device="cpu"))
    with pytest.raises(WeightsError, match="no downloadable"):
        Segmenter(SegmenterConfig(backend="vilseg", model="vilseg_tiny", pretrained="openai", device="cpu"))


def test_unknown_preset_and_bad_cluster_count_are_named():
    with pytest.raises(ValueError, match="vilseg_huge.*vilseg_tiny"):
        Segmenter(SegmenterConfig(backend="vilseg", model="vilseg_huge", pretrained="random", device="cpu"))
    with pytest.raises(ValueError, match="vilseg.clusters"):
        SegmenterConfig(backend="vilseg", vilseg=VilSegConfig(clusters=1)).validate()


def test_objective_terms_are_the_weighted_sum_and_each_trains_its_part(net):
    torch.manual_seed(3)
    objective = VilSegObjective(net, (0.5,) * 3, (0.5,) * 3, cross_modal_weight=1.0, vision_weight=0.5,
                                cluster_weight=2.0)
    images = torch.rand(4, 3, 48, 64)
    tokens = tiny_segmenter().backend.tokenize(["a red disk", "a wall", "a floor", "a blue square"])
    net.train()
    total, terms = objective(images, tokens)
    assert set(terms) == {"cross_modal", "vision", "cluster"}
    assert total.item() == pytest.approx(terms["cross_modal"] + 0.5 * terms["vision"] + 2.0 * terms["cluster"],
                                         rel=1e-5)
    net.zero_grad()
    total.backward()
    for module in (net.vit, net.patch_head, net.cluster_head, net.text):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    assert net.logit_scale.grad is not None
    net.zero_grad()
    net.eval()
    # without the cross-modal term the text tower gets no gradient
    only_vision = VilSegObjective(net, (0.5,) * 3, (0.5,) * 3, cross_modal_weight=0.0, cluster_weight=0.0)
    total, terms = only_vision(images, tokens)
    assert set(terms) == {"vision"}
    total.backward()
    assert all(p.grad is None for p in net.text.parameters())
    net.zero_grad()


def test_local_crops_are_half_size_patch_multiples(net):
    objective = VilSegObjective(net, (0.5,) * 3, (0.5,) * 3, local_crops=3)
    crops = [crop for crop, _ in objective.crops(torch.rand(2, 3, 48, 64))]
    assert len(crops) == 3 and all(crop.shape == (2, 3, 24, 32) for crop in crops)


# --------------------------------------------------------------- training
@pytest.fixture(scope="module")
def caption_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("vilseg")
    captions = write_caption_dataset(root / "captions", 16, seed=0, size=(48, 64))
    labelled = write_generic_dataset(root / "labelled", 8, seed=1, size=(48, 64), val_fraction=0.5)
    return captions, labelled


def vilseg_config(caption_data, out, **overrides) -> TrainConfig:
    captions, labelled = caption_data
    config = TrainConfig(out=str(out), objective="vilseg", data_root=str(captions), val_data_root=str(labelled),
                         batch_size=4, epochs=2, device=TEST_DEVICE, progress=False, backbone_lr=2e-3,
                         decoder_lr=2e-3, text_lr=2e-3)
    config.vilseg.image_size = [48, 64]
    config.model.backend, config.model.model = "vilseg", "vilseg_tiny"
    config.model.short_side, config.model.max_long_side = 48, 64
    for name, value in overrides.items():
        setattr(config, name, value)
    return config


@pytest.mark.slow
def test_vilseg_training_lowers_its_loss_trains_the_text_tower_and_validates_on_masks(caption_data, tmp_path):
    torch.manual_seed(0)
    trainer = Trainer(vilseg_config(caption_data, tmp_path, epochs=6))
    text_before = trainer.backend.net.text.token_embedding.weight.detach().clone()
    samples = [trainer.train_set[i] for i in range(8)]
    images = torch.stack([s["image"] for s in samples])
    tokens = trainer.backend.tokenize([s["captions"][0] for s in samples])

    def cross_modal():
        trainer.backend.eval()
        with torch.no_grad():
            text = F.normalize(trainer.backend.net.encode_text(tokens), dim=-1)
            image = pooled(trainer.backend.net.patch_embeddings(trainer.objective.normalize(images)))
            return info_nce(image, text, 10.0).item()

    before = cross_modal()
    rows = trainer.fit()
    assert cross_modal() < before
    assert trainer.step == 24 and len(rows) == 6
    assert not torch.equal(trainer.backend.net.text.token_embedding.weight, text_before)
    assert {"loss_cross_modal", "loss_vision", "loss_cluster", "lr_text"} <= set(rows[-1])
    assert 0 <= rows[-1]["val_miou"] <= 1 and trainer.class_names == SCENE_CLASSES
    # the checkpoint holds the whole network (text tower included) and model.yaml loads it
    engine = Segmenter(SegmenterConfig.from_yaml(tmp_path / "model.yaml", extra={"device": TEST_DEVICE}))
    assert engine.config.backend == "vilseg" and engine.labels == SCENE_CLASSES
    for key, value in engine.backend.net.state_dict().items():
        assert torch.equal(value.cpu(), trainer.backend.net.state_dict()[key].cpu()), key


def test_vilseg_validation_uses_the_current_text_tower_not_a_stale_cache(caption_data, tmp_path):
    trainer = Trainer(vilseg_config(caption_data, tmp_path, max_steps=1))
    trainer.validate()
    stale = trainer.segmenter.label_encoder.encode(["red disk"]).clone()
    with torch.no_grad():
        trainer.backend.net.text.token_embedding.weight.add_(1.0)
    trainer.validate()
    assert not torch.allclose(trainer.segmenter.label_encoder.encode(["red disk"]), stale)


@pytest.mark.slow
def test_vilseg_resume_continues_with_identical_losses(caption_data, tmp_path):
    torch.manual_seed(0)
    full = Trainer(vilseg_config(caption_data, tmp_path / "a", epochs=2, val_split=""))
    full.fit()
    resumed = Trainer(vilseg_config(caption_data, tmp_path / "b", epochs=2, val_split=""),
                      resume=str(tmp_path / "a" / "epoch_001"))
    assert resumed.step == 4 and resumed.epoch == 2
    resumed.fit()
    np.testing.assert_allclose(resumed.step_losses, full.step_losses[4:], rtol=1e-5)


def test_vilseg_objective_needs_the_vilseg_backend(caption_data, tmp_path, capsys):
    captions, _ = caption_data
    code = main(["--objective", "vilseg", "--data_root", str(captions), "--out", str(tmp_path),
                 "--model.backend", "lseg"])
    assert code == 2 and "objective vilseg with model.backend vilseg" in capsys.readouterr().err


def test_vilseg_image_size_must_be_a_patch_multiple(caption_data, tmp_path):
    config = vilseg_config(caption_data, tmp_path)
    config.vilseg.image_size = [50, 64]
    with pytest.raises(ValueError, match="vilseg.image_size.*patch size 8"):
        Trainer(config)


def test_region_pooling_averages_the_patches_whose_centres_lie_in_the_box():
    embeddings = torch.randn(2, 5, 4, 6)
    boxes = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.25, 0.5, 1.0, 1.0]])
    from lseg_ros.vilseg_objective import region_pooled
    normalized = F.normalize(embeddings, dim=1)
    expected = torch.stack([normalized[0, :, 0:2, 0:3].mean((1, 2)), normalized[1, :, 1:4, 3:6].mean((1, 2))])
    assert torch.allclose(region_pooled(embeddings, boxes), F.normalize(expected, dim=-1), atol=1e-6)


def test_cluster_pooling_weighs_clusters_not_patches():
    from lseg_ros.vilseg_objective import cluster_pooled
    # 1 image, 10 patches: 9 of direction a (cluster 0), 1 of direction b (cluster 1), hard assignments
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    embeddings = torch.stack([a] * 9 + [b], dim=1).view(1, 2, 1, 10)
    logits = torch.full((1, 3, 1, 10), -1e4)
    logits[0, 0, 0, :9] = 0
    logits[0, 1, 0, 9] = 0
    shares = torch.tensor([0.9, 0.1])
    weights = shares / (shares + 0.02)  # the empty third cluster weighs nothing
    expected = F.normalize(weights[0] * a + weights[1] * b, dim=0)
    assert torch.allclose(cluster_pooled(embeddings, logits)[0], expected, atol=1e-5)
    # the plain mean is dominated by the large cluster
    assert pooled(embeddings)[0, 1] < 0.2 < cluster_pooled(embeddings, logits)[0, 1]
